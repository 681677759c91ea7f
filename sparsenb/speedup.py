"""Sec. 3.6: training speed-up of linear finetuning with a sparse backbone on a sparsity-aware CPU
engine (DeepSparse), in the online setting (augmented samples go through the backbone every step).

    df = speedup.run(cfg, "shapes10", ["dense", "gmp", "acdc"], 0.9)    # one row per (method, engine)
    plots.speedup(df)                                                   # Figure 4
"""

from __future__ import annotations

import pandas as pd

from . import checkpoints, data, prune, upstream
from .config import Config
from .engine import Engine


def run(
    cfg, dataset: str, methods, sparsity: float, seed: int = 0, batch_size: int = 64, sparse_engine: str = "deepsparse"
) -> pd.DataFrame:
    """Online linear finetuning of every method's backbone: dense in PyTorch and in `sparse_engine`,
    every sparse model in `sparse_engine`. Columns: dataset, method, sparsity, engine, epoch_seconds,
    reported (test accuracy at the epoch chosen on validation: mini tasks; the last epoch where the
    task has no validation split), best, final, metric, speedup (vs the fastest dense baseline),
    accuracy_gap (reported minus dense's, in points; the engine is irrelevant: features are equal
    up to 1e-4)."""
    from .train import online_linear_finetune

    meta = data.info(dataset)
    mean, std = upstream.norm_stats(cfg)
    tr, te = (data.get(dataset, cfg["data_root"], s, cfg=cfg) for s in ("train", "test"))
    va = data.get(dataset, cfg["data_root"], "val", cfg=cfg) if meta.profile == "mini" else None
    hp = dict(cfg["speedup"], **{k: v for k, v in cfg["linear"].items() if k not in cfg["speedup"]})
    size = cfg["image_size"]
    rows = []
    for method in methods:
        s = float(sparsity) if prune.is_sparse(method) else 0.0
        model, _ = upstream.load(method, s, cfg, 0)
        checkpoints.check_sparsity(model, cfg, method, s, 0)
        for kind in [sparse_engine] if prune.is_sparse(method) else ["torch", sparse_engine]:
            eng = Engine(model, size, batch_size, kind)
            train_loader = data.loader(
                tr,
                "train",
                size,
                mean,
                std,
                batch_size,
                shuffle=True,
                seed=seed,
                scale=cfg["full"]["random_resized_crop_scale"],
            )
            test_loader, val_loader = (
                data.loader(d, "eval", size, mean, std, batch_size, order=cfg["eval_transform"])
                if d is not None
                else None
                for d in (te, va)
            )
            res = online_linear_finetune(
                eng,
                train_loader,
                test_loader,
                model.fc.in_features,
                meta.num_classes,
                hp,
                meta.metric,
                seed,
                val_loader=val_loader,
            )
            rows.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "sparsity": s,
                    "engine": kind,
                    "epoch_seconds": res["epoch_seconds"],
                    "reported": res["reported"],
                    "reported_epoch": res["reported_epoch"],
                    "best": res["best"],
                    "final": res["final"],
                    "metric": meta.metric,
                    **eng.info(),
                }
            )
    df = pd.DataFrame(rows)
    fastest_dense = df[df.method == "dense"].epoch_seconds.min()
    dense_acc = df[df.method == "dense"].reported.mean()
    df["speedup"] = fastest_dense / df.epoch_seconds
    df["accuracy_gap"] = 100 * (df.reported - dense_acc)
    return df


def run_config(cfg: Config, row: dict, dataset: str, seed: int) -> dict:
    """What identifies one row of `run` as a 05_speedup record (its hash is the run id)."""
    return {
        "profile": cfg["profile"],
        "arch": cfg["arch"],
        "method": row["method"],
        "sparsity": row["sparsity"],
        "dataset": dataset,
        "seed": int(seed),
        "engine": row["engine"],
        "hp": dict(cfg["speedup"]),
    }
