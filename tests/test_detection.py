"""Transfer to detection (issue 35): the generated detection scenes, the CenterNet-style detector's
targets and decoding (a perfect prediction scores mAP 1), and finetuning with the backbone's zero
set fixed."""

import numpy as np
import pytest
import torch

from sparsenb import detection, models, prune
from sparsenb.data import detection as ddet

SIZES = {"train_images": 24, "val_images": 8, "test_images": 8}


@pytest.mark.parametrize("task", list(ddet.TASKS))
def test_scenes_are_deterministic_with_boxes_inside_and_only_task_classes_labelled(task):
    x, t, names = ddet.generate(task, "train", SIZES, seed=0)
    x2, t2, _ = ddet.generate(task, "train", SIZES, seed=0)
    assert x.shape == (24, 64, 64, 3) and x.dtype == np.uint8 and np.array_equal(x, x2)
    assert all(np.array_equal(a["boxes"], b["boxes"]) for a, b in zip(t, t2))
    assert len(names) == ddet.TASKS[task].num_classes
    counts = [len(d["labels"]) for d in t]
    assert max(counts) <= 4 and sum(counts) >= len(t)  # 1-4 objects, distractors never labelled
    boxes = np.concatenate([d["boxes"] for d in t])
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    assert all(((d["labels"] >= 0) & (d["labels"] < len(names))).all() for d in t)
    other, _, _ = ddet.generate(task, "test", SIZES, seed=0)
    assert not np.array_equal(x[:8], other)  # each split its own images


def _perfect(targets, num_classes, size=64):
    """The detector's output that encodes the targets exactly (heat as logits of the Gaussian peaks)."""
    enc = detection.encode(targets, num_classes, size)
    m = size // detection.STRIDE
    reg = torch.zeros(len(targets), 4, m * m)
    reg.scatter_(2, enc["ind"][:, None, :].expand(-1, 4, -1), enc["reg"].permute(0, 2, 1) * enc["on"][:, None, :])
    heat = torch.logit(enc["heat"].clamp(1e-6, 1 - 1e-6))
    return {"heat": heat, "wh": reg[:, :2].view(-1, 2, m, m), "offset": reg[:, 2:].view(-1, 2, m, m)}, enc


def test_decoding_the_encoded_targets_gives_the_boxes_back():
    _, t, names = ddet.generate("det_shapes10", "val", SIZES, seed=0)
    out, enc = _perfect(t, len(names))
    assert float(detection.loss(out, enc)) < 0.05  # the encoded targets are (nearly) the loss's minimum
    for pred, gt in zip(detection.decode(out), t):
        top = pred["scores"] > 0.5
        assert top.sum() == len(gt["labels"])
        got = sorted(zip(pred["labels"][top].tolist(), pred["boxes"][top].tolist()))
        want = sorted(zip(gt["labels"].tolist(), gt["boxes"].tolist()))
        for (gl, gb), (wl, wb) in zip(got, want):
            assert gl == wl and np.allclose(gb, wb, atol=1e-4)


def test_a_perfect_detector_scores_map_one(monkeypatch):
    imgs, t, names = ddet.generate("det_flowers12", "val", SIZES, seed=0)
    monkeypatch.setattr(detection.CenterNet, "forward", lambda self, x: _perfect(self._t[: len(x)], len(names))[0])
    net = detection.CenterNet(models.build("mini_resnet_x", 32), len(names))
    net._t = t
    m = detection.evaluate(net, imgs, t, (0.5,) * 3, (0.25,) * 3, batch=len(imgs))
    assert m["map50"] == pytest.approx(1.0) and m["map50_95"] == pytest.approx(1.0)
    assert set(m["ap50_per_class"]) <= set(range(len(names))) and all(v == 1.0 for v in m["ap50_per_class"].values())


def test_finetuning_keeps_the_backbones_zero_set_and_chooses_the_epoch_on_validation():
    torch.manual_seed(0)
    backbone = models.build("mini_resnet_x", 32)
    prune.magnitude(backbone, 0.9)
    net = detection.CenterNet(backbone, 10)
    zeros = {n: (m.weight == 0).clone() for n, m in prune.targets(backbone).items()}
    splits = {s: ddet.generate("det_shapes10", s, SIZES, seed=0)[:2] for s in ("train", "val", "test")}
    hp = {
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 8,
        "epochs": 2,
        "milestones": [1],
        "gamma": 0.1,
    }
    r = detection.finetune(net, splits, hp, seed=0, log=lambda *_: None)
    assert r["sparsity_before"] == r["sparsity_after"] == pytest.approx(prune.target_sparsity(backbone))
    assert all(torch.equal(zeros[n], m.weight == 0) for n, m in prune.targets(backbone).items())
    chosen = max(r["curve"], key=lambda row: row["val_map50"])
    assert r["reported_epoch"] == chosen["epoch"] and r["reported"] == chosen["test_map50"]
    assert r["reported_metrics"]["map50_95"] == chosen["test_map50_95"] and r["final"] == r["curve"][-1]["test_map50"]
    assert len(r["curve"]) == 2 and all(0 <= row["test_map50"] <= 1 for row in r["curve"])


def _synthetic_records(rng, effect: dict):
    """A detection frame: 3 tasks x 3 upstream seeds, each method's mAP = task + seed + its effect + noise."""
    import pandas as pd

    rows = []
    for t, task in enumerate(["a", "b", "c"]):
        for u in range(3):
            for method, eff in effect.items():
                sp = 0.9 if prune.is_sparse(method) else 0.0
                acc = 0.6 + 0.05 * t + 0.01 * u + eff + rng.normal(0, 0.002)
                rows.append(
                    dict(
                        finetune="detection",
                        method=method,
                        sparsity=sp,
                        dataset=task,
                        seed=21,
                        upstream_seed=u,
                        accuracy=acc,
                    )
                )
    return pd.DataFrame(rows)


def test_table4_gaps_are_taken_against_each_models_matched_control(rng):
    from sparsenb import table4

    eff = {"dense": 0.0, "dense_2x": 0.01, "gmp": -0.01, "acdc": -0.03, "woodfisher": -0.02}
    frame = _synthetic_records(rng, eff)
    t = table4.table(frame).set_index("method")
    assert t.loc["gmp", "control"] == "dense_2x" and t.loc["acdc", "control"] == "dense"
    assert t.loc["gmp", "gap"] == pytest.approx(-2.0, abs=0.3) and t.loc["acdc", "gap"] == pytest.approx(-3.0, abs=0.3)
    assert t.loc["gmp", "ci_low"] < t.loc["gmp", "gap"] < t.loc["gmp", "ci_high"] < 0
    assert np.isnan(t.loc["dense"].get("gap", np.nan)) and t.loc["dense", "runs"] == 9
    f = table4.finding(frame, {"gmp": -1.0, "acdc": -3.0, "woodfisher": -2.9})
    assert f["verdict"] == "agrees" and f["estimate"] == pytest.approx(-8 / 3, abs=0.3) and f["methods"] == 3
    assert f["r_upstream"] > 0.9  # the detection gaps follow the upstream ones here by construction


def test_the_detection_recipe_is_chosen_on_validation_only(tmp_path, monkeypatch):
    """`finetune-recipe --detection`: every (lr, epochs) on every task with the dense model, milestones
    scaled; the table keeps validation mAP only and the choice is the best mean over the tasks."""
    from sparsenb import calibration, config, detection

    cfg = config.load("mini", {"detection_search": {"lr": [0.01, 0.1], "epochs": [6, 12]}})
    seen = []

    def fake(spec, device=None):
        seen.append((spec.hp["lr"], spec.hp["epochs"], spec.hp["milestones"], spec.task, spec.method))
        val = 0.5 + (0.1 if spec.hp["lr"] == 0.1 else 0) + (0.05 if spec.hp["epochs"] == 12 else 0)
        curve = [{"epoch": 1, "val_map50": val, "test_map50": 0.99}]
        return {"curve": curve, "reported_epoch": 1, "seconds": 1.0}

    monkeypatch.setattr(detection, "run", fake)
    table = calibration.detection_recipe(cfg, tmp_path)
    assert len(table) == 2 * 2 * len(cfg["detection"]["tasks"]) and {s[4] for s in seen} == {"dense"}
    assert (6, [4, 6]) in [(e, m) for _, e, m, _, _ in seen]  # milestones [8, 11] of 12, scaled to 6
    assert "test" not in " ".join(table.columns) and (table.val_accuracy < 0.9).all()
    assert calibration.choose_full_recipe(table, list(cfg["detection"]["tasks"])) == (0.1, 12)
    assert len(calibration.detection_recipe(cfg, tmp_path)) == len(table) and len(seen) == len(table)  # resumed
