"""The mini suite's sanity property: features of the dense upstream model transfer. A linear probe
on them beats the same probe on a randomly initialised model of the same architecture, on every
downstream task. Uses (and on a clean clone, trains once: ~1 min) the cached dense mini upstream."""
import torch

from sparsenb import config, data, models, train, upstream


def test_dense_upstream_features_beat_random_features_on_every_task():
    cfg = config.load("mini")
    dense, info = upstream.get("dense", 0.0, cfg)
    assert 0.4 < info["top1"] < 0.99          # learns the upstream task, which stays hard
    torch.manual_seed(0)
    random = models.build(cfg.arch, cfg.mini_data["upstream"]["classes"])
    mean, std = upstream.norm_stats(cfg)
    tf = data.transforms.evaluation(cfg.image_size, mean, std)
    hp = dict(cfg.linear)
    gaps = {}
    for task in cfg.datasets:
        meta = data.info(task)
        tr, te = (data.get(task, cfg.data_root, s, cfg=cfg) for s in ("train", "test"))
        acc = {}
        for name, model in (("dense", dense), ("random", random)):
            (xtr, ytr), (xte, yte) = (train.extract_features(model, d, tf, cfg.feature_cache) for d in (tr, te))
            acc[name] = train.linear_finetune(xtr, ytr, xte, yte, meta.num_classes, hp, meta.metric, seed=0)["best"]
        gaps[task] = (acc["dense"], acc["random"])
    losers = {t: g for t, g in gaps.items() if g[0] <= g[1]}
    assert not losers, f"dense upstream features did not beat random ones on {losers} (all: {gaps})"
