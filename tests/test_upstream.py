"""The mini upstream reference set: recipes as budgets of D, a manifest that vouches for every
checkpoint (sha256 + recipe), compact storage, and a rebuild that matches its entry."""

import math

import pandas as pd
import pytest
import torch

from sparsenb import calibration, checkpoints, config, models, prune, train, upstream, weights


def _tiny(tmp_path, **extra):
    over = {
        "data_root": str(tmp_path / "data"),
        "checkpoint_root": str(tmp_path / "ckpt"),
        "mini_data.upstream.train_per_class": 2,
        "mini_data.upstream.val_per_class": 1,
        "mini_data.upstream.test_per_class": 1,
        "upstream.D": 0.5,
        "upstream.optimizer.batch_size": 64,
        "upstream.seeds": [0, 1],
        "upstream.methods.lth_t.round_budget": 0.5,
        "sparsities": [0.8, 0.9],
    }
    over.update(extra)
    return config.load("mini", over)


def test_budgets_are_the_papers_ratios():
    cfg = config.load("mini", {"upstream.D": 10})
    assert upstream.budget("dense", cfg) == (10, 10)
    assert upstream.budget("dense_5x", cfg) == (50, 50)
    for m in ("acdc", "str", "rigl_erk_1x"):
        assert upstream.budget(m, cfg) == (10, 10)  # D from scratch
    for m in ("gmp", "woodfisher", "structured"):
        assert upstream.budget(m, cfg) == (10, 20)  # D more from the dense model
    assert upstream.budget("rigl_erk_5x", cfg) == (50, 50)
    assert upstream.budget("lth_t", cfg)[0] == 0  # masks on dense weights, no retraining


def test_one_optimizer_for_every_method():
    """No method carries its own learning rate, momentum or schedule: the recipe is shared."""
    cfg = config.load("mini")
    for m, hp in cfg.upstream["methods"].items():
        assert not {"lr", "momentum", "weight_decay", "nesterov", "batch_size", "epochs"} & set(hp), m


def test_registry_families():
    cfg = config.load("mini")
    assert prune.names("progressive") == ["gmp", "woodfisher"]
    assert prune.names("regularization") == ["acdc", "str", "rigl_erk_1x", "rigl_erk_5x"]
    assert prune.family("lth_t") == "lottery_ticket" and prune.family("dense_5x") == "control"
    assert {m for m, _, _ in upstream.reference_set(cfg)} == set(cfg.upstream.methods) <= set(prune.METHODS)


def test_choose_D_smallest_within_tolerance():
    conv = pd.DataFrame(
        {
            "epochs": [14, 28, 56, 14, 28, 56],
            "seed": [0, 0, 0, 1, 1, 1],
            "grad_clip": 2.0,
            "val_top1": [0.70, 0.775, 0.78, 0.71, 0.775, 0.785],
        }
    )
    assert calibration.choose_D(conv, 0.01) == 28
    assert calibration.choose_D(conv, 0.001) == 56


def test_choose_s_init_interpolates_on_achieved_sparsity():
    calib = pd.DataFrame({"s_init": [-6.0, -4.0, -2.0], "achieved_sparsity": [0.5, 0.8, 0.95]})
    assert calibration.choose_s_init(calib, 0.8) == pytest.approx(-4.0)
    assert -4.0 < calibration.choose_s_init(calib, 0.9) < -2.0


def test_compact_checkpoint_roundtrip_bit_exact(tmp_path):
    m = models.build("mini_resnet_x", 128)
    prune.magnitude(m, 0.9)
    dense = tmp_path / "dense.pth"
    small = tmp_path / "small.pth"
    weights.save_checkpoint(m, dense, "mini_resnet_x")
    weights.save_checkpoint(m, small, "mini_resnet_x", compact=True)
    assert small.stat().st_size < 0.35 * dense.stat().st_size
    back = weights.load_upstream(small, "mini_resnet_x")
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def test_reference_set_manifest_verify_and_rebuild(tmp_path):
    cfg = _tiny(tmp_path)
    assert ("dense_5x", 0.0, 0) in upstream.reference_set(cfg)
    assert ("gmp", 0.9, 1) in upstream.reference_set(cfg)
    for m, s, seed in [("dense", 0.0, 0), ("gmp", 0.9, 0), ("lth_t", 0.8, 0)]:
        model, info = upstream.get(m, s, cfg, seed, device="cpu")
    man = checkpoints.read_manifest(cfg)
    assert set(man.method) == {"dense", "gmp", "lth_t"} and len(man) == 4  # LTH-T: both sparsities at once
    row = man[man.method == "gmp"].iloc[0]
    assert row.epochs == 1.0 and row.sparsity == 0.9 and abs(row.achieved_sparsity - 0.9) < 1e-3
    assert all(checkpoints.verify(cfg, m, s, seed) == "ok" for m, s, seed in [("dense", 0, 0), ("gmp", 0.9, 0)])
    # a changed file is caught; a changed recipe makes the checkpoint stale
    path = checkpoints.checkpoint_path("gmp", 0.9, cfg, 0)
    saved = path.read_bytes()
    path.write_bytes(saved[:-10] + b"0123456789")
    assert checkpoints.verify(cfg, "gmp", 0.9, 0) == "corrupt"
    with pytest.raises(weights.CheckpointError, match="sha256"):
        upstream.get("gmp", 0.9, cfg, 0, device="cpu")
    path.write_bytes(saved)
    stale = _tiny(tmp_path, **{"upstream.methods.gmp.end": 0.7})
    assert checkpoints.verify(stale, "gmp", 0.9, 0) == "stale"
    # rebuilt from nothing with the same recipe: the same tensors
    again = _tiny(tmp_path / "again")
    a, _ = upstream.get("gmp", 0.9, cfg, 0, device="cpu")
    b, _ = upstream.get("gmp", 0.9, again, 0, device="cpu")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    assert not math.isnan(row.top1)


def test_plan_times_this_machine():
    cfg = config.load("mini", {"upstream.optimizer.batch_size": 16})
    per_epoch = upstream.epoch_seconds(cfg, steps=2, device="cpu")
    assert 0 < per_epoch < 600
    plan = upstream.planned_seconds(config.load("mini", {"upstream.D": 10}), 1.0)
    assert plan[("dense_5x", 0.0, 0)] == 50 and plan[("gmp", 0.9, 1)] == 10  # own epochs x s/epoch


def test_convergence_and_calibration_rows_resume(tmp_path, monkeypatch):
    """Each run is one CSV row; a second call trains nothing (rows kept, claims released)."""
    cfg = _tiny(
        tmp_path,
        **{
            "upstream.convergence.epochs": [0.5, 1],
            "upstream.convergence.seeds": [0],
            "upstream.convergence.all_seeds_up_to": 1,
            "upstream.convergence.search": None,
            "upstream.methods.str.calibration": [-4.5, -4.0],
        },
    )
    conv = calibration.convergence(cfg, tmp_path / "out", device="cpu")
    assert sorted(zip(conv.epochs, conv.grad_clip.isna())) == [(0.5, False), (1, False), (1, True)]
    calib = calibration.str_calibration(cfg, tmp_path / "out", device="cpu")
    assert sorted(calib.s_init) == [-4.5, -4.0] and calib.achieved_sparsity.between(0, 1).all()
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert len(calibration.convergence(cfg, tmp_path / "out")) == 3
    assert len(calibration.str_calibration(cfg, tmp_path / "out")) == 2


def test_published_checkpoint_names_that_are_not_sparsities_are_skipped(tmp_path):
    m = models.build("mini_resnet_x", 10)
    for name in ("gmp/0.9.pth", "gmp/90.pth", "acdc/best.pth", "dense/0.pth"):
        weights.save_checkpoint(m, tmp_path / name, "mini_resnet_x")
    cfg = config.load("paper", {"checkpoint_root": str(tmp_path)})
    assert upstream.available(cfg) == [("dense", 0.0), ("gmp", 0.9)]
