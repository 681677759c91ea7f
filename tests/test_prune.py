"""Each upstream method on a tiny problem: exact target sparsity, the mask fixed where the method
says so, and a property that tells the method apart."""

import itertools

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from sparsenb import config, masks, models, prune, schema, train, upstream
from sparsenb.prune import base as methods
from sparsenb.prune import rigl as rigl_mod
from sparsenb.prune import woodfisher as wf_mod


def _task(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.3
    for c in range(4):  # each class a bright quadrant
        r, col = divmod(c, 2)
        x[y == c, :, r * 8 : (r + 1) * 8, col * 8 : (col + 1) * 8] += 1.0
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))


def _model(seed=0):
    torch.manual_seed(seed)
    return models.build("mini_resnet_s", 4)


def _zero_sets(model):
    return {n: (m.weight == 0).clone() for n, m in prune.targets(model).items()}


def _opt(lr=0.05):
    return {"lr": lr, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}


def _fit(model, method, epochs=3, lr=0.05):
    return train.fit(model, method, _task(), epochs, _opt(lr), device="cpu")


def test_magnitude_exact_and_uniform():
    m = _model()
    prune.magnitude(m, 0.9)
    assert prune.target_sparsity(m) == pytest.approx(0.9, abs=1e-4)
    assert masks.sparsity(m.conv1.weight) == 0.0  # the stem stays dense
    m2 = prune.magnitude(_model(), 0.8, scope="uniform")
    for layer in prune.targets(m2).values():
        assert masks.sparsity(layer.weight) == pytest.approx(0.8, abs=1 / layer.weight.numel())
    with pytest.raises(ValueError, match="global, uniform"):
        prune.magnitude(_model(), 0.5, scope="layerwise")


def test_cubic_schedule():
    s = [methods.cubic_schedule(t, 10, 110, 0.9) for t in (0, 10, 60, 110, 200)]
    assert s[0] == s[1] == 0.0 and s[3] == s[4] == 0.9
    assert s[2] == pytest.approx(0.9 * (1 - 0.5**3))


def test_gmp_gradual_then_fixed():
    m = _model()
    gmp = prune.make("gmp", 0.9, 1, initial=0.05, start=0.0, end=0.5, every=0.1)
    seen = []
    orig = gmp.after_step

    def spy(step):
        orig(step)
        seen.append((step, prune.target_sparsity(m), _zero_sets(m) if step == gmp.total_steps // 2 + 1 else None))

    gmp.after_step = spy
    _fit(m, gmp)
    sparsities = [s for _, s, _ in seen]
    assert sparsities[0] < sparsities[len(sparsities) // 4] < 0.9  # gradual
    assert prune.target_sparsity(m) == pytest.approx(0.9, abs=1e-4)
    fixed_after = next(z for _, _, z in seen if z is not None)
    for n, z in _zero_sets(m).items():  # fixed after the end of pruning
        assert torch.equal(z, fixed_after[n]), n


def test_acdc_alternates_and_ends_compressed():
    m = _model()
    acdc = prune.make("acdc", 0.9, 1, warmup=0.2, phase=0.2, final=0.2)
    phases = []
    orig = acdc.after_step

    def spy(step):
        orig(step)
        phases.append((acdc.phase_at(step + 1), prune.target_sparsity(m)))  # the phase the new weights are in

    acdc.after_step = spy
    _fit(m, acdc, epochs=5)
    kinds = [p for p, _ in phases]
    assert kinds[0] == "dense" and kinds[-1] == "compressed" and "decompressed" in kinds
    decompressed = [s for p, s in phases if p == "decompressed"]
    assert max(decompressed[1:]) < 0.5  # pruned weights regrow in decompressed phases
    assert prune.target_sparsity(m) == pytest.approx(0.9, abs=1e-4)


def test_erk_densities():
    shapes = {"a": torch.Size([16, 3, 3, 3]), "b": torch.Size([64, 64, 3, 3]), "fc": torch.Size([10, 64])}
    d = rigl_mod.erk_densities(shapes, 0.2)
    total = sum(d[n] * torch.Size(s).numel() for n, s in shapes.items())
    assert total == pytest.approx(0.2 * sum(s.numel() for s in shapes.values()), rel=1e-6)
    assert d["a"] > d["b"] and all(0 < v <= 1 for v in d.values())


def test_rigl_changes_mask_and_hits_target():
    m = _model()
    rigl = prune.make("rigl_erk_1x", 0.9, 1, alpha=0.3, every_epochs=0.3, end=0.75, seed=0)
    _fit(m, rigl, epochs=4)
    assert rigl.changed > 0  # drop/grow moved the mask
    assert prune.target_sparsity(m) == pytest.approx(0.9, abs=1e-3)
    layer_sp = {n: masks.sparsity(layer.weight) for n, layer in prune.targets(m).items()}
    assert len(set(round(v, 2) for v in layer_sp.values())) > 1  # ERK: non-uniform per layer


def test_rigl_dropped_weight_may_regrow_and_keeps_its_value():
    """The official grow step excludes only weights still active after the drop: a weight dropped in
    this update whose gradient is large grows back (reinit_when_same=False keeps its value); a weight
    inactive before the update that grows starts at zero."""
    m = _model()
    rigl = prune.make("rigl_erk_1x", 0.5, 1, alpha=0.3, every_epochs=1.0, end=1.0, seed=0)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    rigl.total_steps, rigl.steps_per_epoch = 10, 1
    rigl.prepare(m)
    rigl.start(m, opt)
    name, layer = next(iter(prune.targets(m).items()))
    w, mask = layer.weight.data, rigl.masks[name].clone()
    flat_w, flat_m = w.view(-1), mask.view(-1)
    active = torch.nonzero(flat_m).flatten()
    weakest = active[torch.argmin(flat_w[active].abs())]  # dropped first
    flat_w[weakest] = 1e-6
    grad = torch.zeros_like(w)
    grad.view(-1)[weakest] = 100.0  # and the largest gradient of all
    inactive = torch.nonzero(~flat_m).flatten()[:3]
    grad.view(-1)[inactive] = 50.0
    rigl._update(name, w, grad, 0.3)
    new = rigl.masks[name].view(-1)
    assert new[weakest] and flat_w[weakest] == 1e-6  # regrown, value kept
    assert new[inactive].all() and (flat_w[inactive] == 0).all()  # newly grown: zero
    assert int(new.sum()) == int(flat_m.sum())  # same count


def test_str_thresholds_trained_by_the_run_optimizer_and_land_near_target():
    """STR: the thresholds are parameters of the run's optimizer (no controller, no fold); the
    sparsity is where they put it, reported, not forced onto the target."""
    m = _model()
    s = prune.make("str", 0.8, 1, s_init={0.8: -3.0})
    _fit(m, s, epochs=4, lr=0.1)
    assert len(s.history) > 3
    # the thresholds pruned weights by themselves, and the final mask is what they left
    assert s.history[-1]["sparsity"] > 0.05
    achieved = prune.target_sparsity(m)
    assert achieved == pytest.approx(s.history[-1]["sparsity"])
    assert achieved != pytest.approx(0.8, abs=1e-4)  # not trimmed to the target
    assert not any(torch.nn.utils.parametrize.is_parametrized(layer) for layer in prune.targets(m).values())
    assert not any("parametrizations" in k for k in m.state_dict())  # saves as a plain model


def test_str_threshold_parameters_are_in_the_optimizer():
    m = _model()
    s = prune.make("str", 0.9, 1, s_init={0.9: -4.0})
    s.prepare(m)
    names = [n for n, _ in m.named_parameters()]
    assert sum(n.endswith(".s") for n in names) == len(prune.targets(m))
    with pytest.raises(KeyError, match="s_init"):
        prune.make("str", 0.95, 1, s_init={0.9: -4.0}).prepare(_model())


def test_woodfisher_fisher_pass_leaves_bn_statistics():
    m = _model()
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    x = torch.randn(8, 3, 16, 16)
    with wf_mod.frozen_bn_stats(m):
        m(x).sum().backward()
    after = {k: v for k, v in m.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    m(x)  # outside: statistics move again
    assert any(not torch.equal(before[k], m.state_dict()[k]) for k in before)


def test_gmp_schedule_starts_at_initial_sparsity():
    g = prune.make("gmp", 0.9, 100, initial=0.05, start=0.1, end=0.8, every=0.1)
    assert g.sparsity_at(5) == 0.0 and g.sparsity_at(10) == pytest.approx(0.05)
    assert g.sparsity_at(80) == pytest.approx(0.9) and g.due(10) and g.due(80) and not g.due(15)


def test_woodfisher_beats_magnitude_one_shot():
    """On a least-squares problem with correlated inputs, OBS with the empirical Fisher keeps the
    loss lower than magnitude pruning right after one-shot pruning to the same sparsity."""
    g = torch.Generator().manual_seed(0)
    d, n = 24, 2000
    base = torch.randn(n, d, generator=g)
    mix = torch.eye(d) + 0.8 * torch.randn(d, d, generator=g) / d**0.5
    x = base @ mix * torch.linspace(0.2, 3.0, d)  # correlated, different scales
    w_true = torch.randn(d, generator=g)
    y = x @ w_true + 0.05 * torch.randn(n, generator=g)
    model = nn.Sequential(nn.Linear(d, 1, bias=False))
    model[0].weight.data = torch.linalg.lstsq(x, y[:, None]).solution.T.clone()
    loss = lambda mm: nn.functional.mse_loss(mm(x)[:, 0], y).item()  # noqa: E731
    it = iter(range(10**9))

    def grad_fn(mm):
        i = next(it) % n
        nn.functional.mse_loss(mm(x[i : i + 1])[:, 0], y[i : i + 1]).backward()

    layers = prune.targets(model)
    finv = wf_mod.fisher_inverse_blocks(model, layers, grad_fn, 400, 32, 1e-3)
    wf = nn.Sequential(nn.Linear(d, 1, bias=False))
    wf.load_state_dict(model.state_dict())
    wf_mod.obs_prune(prune.targets(wf), {"0": finv["0"]}, 0.5, 32)
    mag = nn.Sequential(nn.Linear(d, 1, bias=False))
    mag.load_state_dict(model.state_dict())
    prune.magnitude(mag, 0.5)
    assert prune.target_sparsity(wf) == pytest.approx(0.5) == prune.target_sparsity(mag)
    assert loss(wf) < 0.7 * loss(mag), (loss(wf), loss(mag))


def test_woodfisher_method_in_training_loop():
    m = _model()
    loader = _task(seed=1)
    lf = nn.CrossEntropyLoss()
    import itertools

    batches = itertools.cycle(list(loader))

    def grad_fn(mm):
        x, y = next(batches)
        lf(mm(x), y).backward()

    wf = prune.make(
        "woodfisher", 0.8, 1, initial=0.05, start=0.0, end=0.5, every=0.25, fisher_samples=4, block=32, damp=1e-4
    )
    wf.grad_fn = grad_fn
    _fit(m, wf, epochs=2)
    assert prune.target_sparsity(m) == pytest.approx(0.8, abs=1e-4)


def _official_recursion(g: torch.Tensor, damp: float) -> torch.Tensor:
    """WFB L354-373 transcribed: F_0^-1 = I / damp, then one Woodbury update per gradient with the
    denominator N + g^T F^-1 g."""
    n, b = g.shape
    finv = torch.eye(b, dtype=torch.float64) / damp
    for v in g.double():
        fv = finv @ v
        finv = finv - torch.outer(fv, fv) / (n + v @ fv)
    return finv


def test_woodfisher_official_inverse_is_the_official_recursion():
    g = torch.randn(40, 30, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 2.0, 30)
    ref = _official_recursion(g, 1e-3)
    c = wf_mod.ChunkInverse(g, 1e-3)
    assert torch.allclose(c.diag, torch.diagonal(ref), rtol=1e-9)
    v = torch.randn(30, dtype=torch.float64)
    assert torch.allclose(c.matvec(v), ref @ v, rtol=1e-9)
    # and it is the inverse of damp I + (1/N) G^T G
    assert torch.allclose(
        ref, torch.linalg.inv(1e-3 * torch.eye(30, dtype=torch.float64) + g.double().T @ g.double() / 40)
    )


def test_woodfisher_official_update_is_the_sum_of_single_obs_updates():
    """Two layers, chunks of 7: exactly the target sparsity, the old zeros stay zero, and each layer
    moves by -F^-1 sum_q (w_q / [F^-1]_qq) e_q over its newly pruned q (per chunk), then is masked."""
    gen = torch.Generator().manual_seed(1)
    layers = {"a": nn.Linear(5, 4, bias=False), "b": nn.Linear(3, 5, bias=False)}
    old = {n: torch.rand(m.weight.shape, generator=gen) > 0.2 for n, m in layers.items()}
    with torch.no_grad():
        for n, m in layers.items():
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * old[n])
    before = {n: m.weight.detach().flatten().double().clone() for n, m in layers.items()}
    grads = {n: torch.randn(12, m.weight.numel(), generator=gen) * old[n].flatten() for n, m in layers.items()}
    new = wf_mod.official_prune(layers, grads, old, 0.6, 7, 1e-2)
    total = sum(m.weight.numel() for m in layers.values())
    assert sum(int((~k).sum()) for k in new.values()) == round(0.6 * total)
    for n, m in layers.items():
        keep, newly = new[n].flatten(), old[n].flatten() & ~new[n].flatten()
        assert not (keep & ~old[n].flatten()).any()  # nothing pruned comes back
        expect = before[n].clone()
        for s in range(0, len(keep), 7):
            f = _official_recursion(grads[n][:, s : s + 7], 1e-2)
            q = newly[s : s + 7]
            basis = torch.where(q, before[n][s : s + 7] / torch.diagonal(f), 0.0)
            expect[s : s + 7] -= f @ basis
        assert torch.allclose(m.weight.flatten().double(), expect * keep, atol=1e-5)


def test_woodfisher_official_fisher_pass_is_in_eval_mode_and_masked():
    m = _model()
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    seen = []
    x, y = next(iter(_task()))

    def grad_fn(mm):
        seen.append(mm.training)
        nn.functional.cross_entropy(mm(x), y).backward()

    layers = prune.targets(m)
    gen = torch.Generator().manual_seed(2)
    mk = {n: torch.rand(lay.weight.shape, generator=gen) > 0.5 for n, lay in layers.items()}
    grads = wf_mod.fisher_gradients(m, layers, grad_fn, 3, mk)
    assert seen == [False] * 3 and m.training  # eval mode inside, the mode restored
    assert all(torch.equal(before[k], m.state_dict()[k]) for k in before)
    for n, g in grads.items():
        assert g.shape == (3, layers[n].weight.numel()) and not g[:, ~mk[n].flatten()].any()
        assert g[:, mk[n].flatten()].abs().sum() > 0
    assert all(lay.weight.grad is None for lay in layers.values())


def test_woodfisher_official_form_in_training_loop():
    m = _model()
    batches = itertools.cycle(list(_task(seed=1)))

    def grad_fn(mm):
        x, y = next(batches)
        nn.functional.cross_entropy(mm(x), y).backward()

    wf = prune.make(
        "woodfisher",
        0.8,
        1,
        initial=0.05,
        start=0.0,
        end=0.5,
        every=0.25,
        fisher_samples=6,
        block=500,
        damp=1e-5,
        form="official",
    )
    wf.grad_fn = grad_fn
    _fit(m, wf, epochs=2)
    assert prune.target_sparsity(m) == pytest.approx(0.8, abs=1e-4)


def test_woodfisher_form_is_optional_and_checked():
    hp = prune.hyperparameters()
    cfg = dict(config.load("mini"))
    assert "form" not in cfg["upstream"]["methods"]["woodfisher"]  # regime A's models: the pre-fix port
    assert config.load("mini_converged")["upstream"]["methods"]["woodfisher"]["form"] == "official"
    bad = {
        **cfg,
        "upstream": {
            **cfg["upstream"],
            "methods": {"woodfisher": {**cfg["upstream"]["methods"]["woodfisher"], "form": "ofical"}},
        },
    }
    assert any("woodfisher.form: 'ofical' is not one of 'official', 'pre_fix'" in p for p in schema.problems(bad, hp))


def test_lth_masks_on_dense_weights():
    m = _model()
    dense_state = {k: v.clone() for k, v in m.state_dict().items()}
    lth = prune.make("lth_t", 0.0, 1, rate=0.2)
    found = lth.find_masks(m, dense_state, lambda model, fixed, desc: _fit(model, fixed, epochs=0.5), [0.5, 0.7])
    assert list(found) == [0.5, 0.7]
    for sp, mk in found.items():
        ticket = _model(seed=9)
        ticket.load_state_dict(dense_state)
        masks.apply(ticket, mk)
        assert prune.target_sparsity(ticket) == pytest.approx(sp, abs=1e-4)
        for n, layer in prune.targets(ticket).items():
            keep = mk[n]
            assert torch.equal(layer.weight[keep], dense_state[n + ".weight"][keep])  # dense weights on the mask
    # nested: the 70% mask lies inside the 50% one (iterative pruning)
    for n in found[0.5]:
        assert not (found[0.7][n] & ~found[0.5][n]).any()
    assert torch.equal(m.state_dict()["layer1.0.conv1.weight"], dense_state["layer1.0.conv1.weight"])


def test_structured_removes_whole_filters():
    m = _model()
    st = prune.make("structured", 0.5, 1, initial=0.0, start=0.0, end=0.5, every=0.25)
    _fit(m, st, epochs=2)
    for n, layer in prune.targets(m).items():
        if isinstance(layer, nn.Conv2d):
            dead = (layer.weight.flatten(1) == 0).all(1)
            assert dead.sum().item() == round(0.5 * layer.weight.shape[0]), n
    df = masks.pruned_filters(m)
    assert df.iloc[-1]["fraction"] > 0.4


def test_unknown_method_lists_valid():
    from sparsenb.config import ConfigError

    with pytest.raises(ConfigError, match="gmp, woodfisher, acdc"):
        prune.make("snip", 0.9, 1)


class _Killed(Exception):
    pass


class _DiesInEpoch:
    """The training data, except that the run is killed when epoch `n` starts."""

    def __init__(self, loader, n):
        self.loader, self.n, self.epoch = loader, n, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.epoch += 1
        if self.epoch == self.n:
            raise _Killed
        return iter(self.loader)

    @property
    def generator(self):
        return self.loader.generator


def _fixed_batch_grad(model):
    """A gradient function that always reads the same batch (a resumed run must see what the
    uninterrupted one saw)."""
    x, y = next(iter(_task(32, seed=5)))
    nn.functional.cross_entropy(model(x), y).backward()


def _recipe(method: str):
    """What `train.fit` runs for `method` at its last reference sparsity with the mini profile's
    hyperparameters: the method itself, or for one that keeps the dense weights (LTH-T) a round of
    its trajectory, under a fixed mask."""
    cfg = config.load("mini")
    sparsity = upstream.sparsities_of(cfg, method, cfg["upstream"]["seeds"][0])[-1]
    cls = prune.METHODS[method]
    if cls.dense_state:
        return prune.Method(sparsity, masks=prune.magnitude_masks(_model(1), sparsity))
    extra = {"grad_fn": _fixed_batch_grad} if cls.needs_gradients else {}
    return prune.make(method, sparsity, 1, seed=0, **upstream.method_hp(method, cfg), **extra)


@pytest.mark.parametrize(
    "method",
    # pruning from fresh gradients (WoodFisher's Fisher blocks) costs ~1 min at its params' sizes
    [pytest.param(m, marks=pytest.mark.slow) if c.needs_gradients else m for m, c in prune.METHODS.items()],
)
def test_a_killed_upstream_run_resumes_where_it_stopped(tmp_path, method):
    """Killed when its third epoch starts, then run again: the same model as the uninterrupted run
    (every method of the registry, with its params entry)."""
    straight = _model()
    train.fit(straight, _recipe(method), _task(), 4, _opt(), device="cpu")
    resumed = _model()
    snap = tmp_path / "run.partial.pt"
    with pytest.raises(_Killed):
        train.fit(resumed, _recipe(method), _DiesInEpoch(_task(), 3), 4, _opt(), device="cpu", resume=snap)
    assert snap.exists()
    again = _model()  # a new process: fresh weights and data order, the state comes from the file
    info = train.fit(again, _recipe(method), _task(), 4, _opt(), device="cpu", resume=snap)
    assert not snap.exists() and len(info["curve"]) == 4
    for (k, a), b in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), f"{method}: {k} differs from the uninterrupted run"
