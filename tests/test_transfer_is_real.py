"""The mini suite's sanity property: features of the dense upstream model transfer. A linear probe
on them must beat the same probe on a randomly initialised model of the same architecture by a
clear margin, on every downstream task. Uses (and on a clean clone trains once, ~1 min) the cached
dense mini upstream model.

The probe is made fair first: features are standardised with the train split's statistics, since a
random network's pooled features are ~50x smaller than a trained one's and an SGD probe on the raw
values would lose for that reason alone.

Known failures (issue 4 stays open until they pass; strict xfail turns a fix into a failure so that
the mark is removed): on textures16 and fine_shapes30 both probes stay near chance -- the classes
are not resolvable at 32 px (texture angle is confounded with the object's random rotation, lobe
counts of 6-7 at small amplitude vanish); on scenes20 and digits random features win -- the upstream
task teaches invariance to backgrounds and colour statistics that these tasks need."""
import pytest
import torch

from sparsenb import config, data, models, train, upstream

MARGIN = 0.05
KNOWN_FAILURES = {"textures16", "fine_shapes30", "scenes20", "digits"}


@pytest.fixture(scope="module")
def probes():
    cfg = config.load("mini")
    dense, info = upstream.get("dense", 0.0, cfg)
    torch.manual_seed(0)
    random = models.build(cfg.arch, cfg.mini_data["upstream"]["classes"])
    mean, std = upstream.norm_stats(cfg)
    tf = data.transforms.evaluation(cfg.image_size, mean, std)
    out = {"upstream_top1": info["top1"]}
    for task in cfg.datasets:
        meta = data.info(task)
        tr, te = (data.get(task, cfg.data_root, s, cfg=cfg) for s in ("train", "test"))
        acc = {}
        for name, model in (("dense", dense), ("random", random)):
            (xtr, ytr), (xte, yte) = (train.extract_features(model, d, tf, cfg.feature_cache) for d in (tr, te))
            mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
            acc[name] = train.linear_finetune((xtr - mu) / sd, ytr, (xte - mu) / sd, yte, meta.num_classes,
                                              dict(cfg.linear), meta.metric, seed=0)["best"]
        out[task] = acc
    return out


def test_upstream_is_learned_but_not_solved(probes):
    assert 0.4 < probes["upstream_top1"] < 0.99


@pytest.mark.parametrize("task", [pytest.param(t, marks=pytest.mark.xfail(strict=True, reason="known: see module doc"))
                                  if t in KNOWN_FAILURES else t for t in config.load("mini").datasets])
def test_dense_features_beat_random_features(probes, task):
    acc = probes[task]
    assert acc["dense"] > acc["random"] + MARGIN, f"{task}: dense {acc['dense']:.3f} vs random {acc['random']:.3f}"
