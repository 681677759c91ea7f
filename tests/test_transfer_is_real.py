"""The mini suite's sanity property: features of the dense upstream model transfer. A linear probe
on them beats the same probe on a randomly initialised model of the same architecture on every
downstream task, by more than the test set's sampling noise (two standard errors of the difference
of the two accuracies, and at least 2 points). Uses the shipped dense reference model when the
manifest vouches for it; until the reference set exists, a stand-in trained here for STAND_IN_D
epochs (~2 min on 2 cores) with the study's recipe.

The probe is the study's linear finetuning, made fair in one respect: each model's features are
centred and divided by one number, their overall RMS on the train split. A random network's pooled
features are ~50x smaller than a trained one's, and an SGD probe with the study's learning rate on
the raw values would lose for that reason alone. (Whitening every feature dimension instead is a
different probe: with it the dense model still wins clearly on five tasks, but on fine_colors24 and
digits only by 2-5 points, within the noise of one training run; see issue 4's closing note.)"""

import math

import pytest
import torch

from sparsenb import checkpoints, config, data, features, models, train, upstream

pytestmark = pytest.mark.slow  # trains upstream and downstream models: minutes

MIN_MARGIN = 0.02
STAND_IN_D = 14


def _dense():
    shipped = config.load("mini", {"checkpoint_root": str(config.ROOT / "outputs" / "upstream" / "mini")})
    if checkpoints.verify(shipped, "dense", 0.0, 0) == "ok":
        return upstream.get("dense", 0.0, shipped), shipped
    cfg = config.load("mini", {"upstream.D": STAND_IN_D})  # checkpoints under the tests' outputs root
    return upstream.get("dense", 0.0, cfg), cfg


@pytest.fixture(scope="module")
def probes():
    (dense, info), cfg = _dense()
    torch.manual_seed(0)
    random = models.build(cfg.arch, cfg.mini_data["upstream"]["classes"])
    mean, std = upstream.norm_stats(cfg)
    tf = data.transforms.evaluation(cfg.image_size, mean, std)
    out = {"upstream_top1": info["top1"]}
    for task in cfg.datasets:
        meta = data.info(task)
        tr, va, te = (data.get(task, cfg.data_root, s, cfg=cfg) for s in ("train", "val", "test"))
        acc = {"n_test": len(te)}
        for name, model in (("dense", dense), ("random", random)):
            (xtr, ytr), (xva, yva), (xte, yte) = (
                features.extract_features(model, d, tf, cfg.feature_cache) for d in (tr, va, te)
            )
            mu = xtr.mean(0)
            rms = (xtr - mu).pow(2).mean().sqrt() + 1e-12
            # the study's convention: test accuracy at the epoch chosen on validation
            acc[name] = train.linear_finetune(
                (xtr - mu) / rms,
                ytr,
                (xte - mu) / rms,
                yte,
                meta.num_classes,
                dict(cfg.linear),
                meta.metric,
                seed=0,
                val=((xva - mu) / rms, yva),
            )["reported"]
        out[task] = acc
    return out


def test_upstream_is_learned_but_not_solved(probes):
    assert 0.3 < probes["upstream_top1"] < 0.99


@pytest.mark.parametrize("task", config.load("mini").datasets)
def test_dense_features_beat_random_features(probes, task):
    acc = probes[task]
    d, r, n = acc["dense"], acc["random"], acc["n_test"]
    two_se = 2 * math.sqrt((d * (1 - d) + r * (1 - r)) / n)
    assert d - r > max(MIN_MARGIN, two_se), (
        f"{task}: dense {d:.3f} vs random {r:.3f} (needs > {max(MIN_MARGIN, two_se):.3f})"
    )
