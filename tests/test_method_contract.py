"""The contract every member of the method registry keeps (as timm tests every model): what it
declares (family, budget ratio, its budget-matched control) and what it does at the test scale
(achieved sparsity within 1.5 points of its target where it prunes to it exactly, the mask it
reports is the model's zero set and stays fixed after `finish()`).
A new `prune/<name>.py` is checked by being registered.
(Resume from a snapshot, bit-exact, is tests/test_prune.py's, over the same registry.)"""

import pytest
import torch
from test_prune import _model, _opt, _recipe, _task, _zero_sets

from sparsenb import checkpoints, config, prune, train, upstream

CFG = config.load("mini")
MEMBERS = [m for m in prune.METHODS if m in CFG["upstream"]["methods"]]


def test_every_member_has_a_params_entry():
    assert MEMBERS == list(prune.METHODS), "a registered method without an upstream.methods entry in params/mini.yaml"


@pytest.mark.parametrize("method", MEMBERS)
def test_every_member_declares_its_family_budget_and_control(method):
    cls = prune.METHODS[method]
    assert cls.family in prune.FAMILIES
    own, total = upstream.budget(method, CFG)
    D = float(CFG["upstream"]["D"])
    assert own >= 0 and total >= own and (total / D).is_integer(), "a budget that is not a multiple of D"
    if not prune.is_sparse(method):
        assert prune.control_of(method) is None
        return
    control = prune.control_of(method)
    assert control in prune.METHODS and not prune.is_sparse(control), "a sparse method without a dense control"
    if not cls.dense_state:  # the same run at target sparsity 0: the same total budget
        assert upstream.budget(control, CFG)[1] == total, f"{method}'s control {control} has another budget"
        assert upstream.optimizer(control, CFG) == upstream.optimizer(method, CFG), "another schedule"


def _sparse_trainable():
    out = []
    for m, cls in prune.METHODS.items():
        if not prune.is_sparse(m) or cls.dense_state:
            continue
        out.append(pytest.param(m, marks=pytest.mark.slow) if cls.needs_gradients else m)
    return out


@pytest.mark.parametrize("method", _sparse_trainable())
def test_every_sparse_member_hits_its_target_and_its_mask_stays_fixed(method):
    cfg_sparsity = upstream.sparsities_of(CFG, method, CFG["upstream"]["seeds"][0])[-1]
    model, recipe = _model(), _recipe(method)
    train.fit(model, recipe, _task(), 3, _opt(), device="cpu")
    cls = prune.METHODS[method]
    if cls.weight_sparsity and cls.exact_target:  # STR lands where its calibrated s_init puts it (checked at scale)
        achieved = prune.target_sparsity(model)
        assert not checkpoints.off_target(method, cfg_sparsity, achieved), f"{achieved:.3f} vs {cfg_sparsity}"
    zeros = _zero_sets(model)
    for name, m in (recipe.masks or {}).items():  # the mask it reports is the model's zero set
        assert torch.equal(~m.bool(), zeros[name]), name
    # after finish(): finetuning with the mask held keeps every zero a zero and no new one appears
    fixed = prune.Method(0.0, masks={n: (m.weight != 0).float() for n, m in prune.targets(model).items()})
    train.fit(model, fixed, _task(seed=3), 1, _opt(), device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(zeros.values(), _zero_sets(model).values()))
