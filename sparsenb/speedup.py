"""Sec. 3.6: training speed-up of linear finetuning with a sparse backbone on a sparsity-aware CPU
engine (DeepSparse), in the online setting (augmented samples go through the backbone every step).

    cfg, spec = runs.setup("05_speedup", dataset="shapes10,digits", methods="dense,gmp,acdc", sparsity=0.9)
    df = speedup.run(spec)                  # one row per (task, method, engine): spec.row(dataset, method, engine)
    plots.speedup(df)                       # Figure 4: a panel per task
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import data, prune, upstream
from .engine import Engine
from .finetune import loader, upstream_model
from .specs import SpeedupSpec, splits


def run(spec: SpeedupSpec) -> pd.DataFrame:
    """Online linear finetuning of every method's backbone (upstream seed `spec.upstream_seed`) on
    each task in turn: dense-like ones (`prune.is_sparse` false: dense and the dense controls, at
    sparsity 0) in PyTorch and in the sparse engine, every sparse model in the sparse engine.
    Columns: dataset, method, sparsity, engine, epoch_seconds, reported (test accuracy at the epoch
    chosen on validation: mini tasks; the last epoch where the task has no validation split), best,
    final, metric, speedup (vs the task's fastest dense-like run), accuracy_gap (reported minus the
    task's dense-like runs' mean, in points; the engine is irrelevant: features are equal up to 1e-4)."""
    return pd.concat([_task(spec, d) for d in spec.datasets], ignore_index=True)


def folder(spec: SpeedupSpec) -> Path:
    """Where 05's table and figure go: outputs/speedup/<profile> for the committed configuration,
    else beside the run's own records (overrides, other parameters: `SpeedupSpec.config_overrides`)."""
    from . import config, paths

    root = Path(spec.cfg["results_root"])
    if root == Path(config.load(spec.profile)["results_root"]):
        return paths.output("speedup", spec.profile)
    return paths.output(*root.parent.relative_to(paths.outputs()).parts, "speedup", spec.profile)


def stem(spec: SpeedupSpec) -> str:
    """The name of the run's table and figure: its tasks and sparsity, e.g. "shapes10+digits-0.9", and
    every other parameter that is not the notebook's default (methods, seeds, batch size), e.g.
    "shapes10-0.9-bs7": another run never writes over the committed one's files."""
    from . import runs

    d = runs.defaults("05_speedup")
    extra = [
        f"{tag}{value}"
        for tag, value, default in (
            ("m", "+".join(spec.methods), d["methods"].replace(",", "+")),
            ("seed", spec.seed, d["seed"]),
            ("up", spec.upstream_seed, d["upstream_seed"]),
            ("bs", spec.batch_size, d["batch_size"]),
        )
        if str(value) != str(default)
    ]
    return "-".join([f"{'+'.join(spec.datasets)}-{spec.sparsity:g}", *extra])


def _task(spec: SpeedupSpec, dataset: str) -> pd.DataFrame:
    """One task's rows, its speed-ups and accuracy gaps against its own dense-like runs."""
    rows = [_row(spec, dataset, method, engine) for method in spec.methods for engine in spec.engines(method)]
    df = pd.DataFrame(rows)
    dense = df[~df.method.map(prune.is_sparse)]
    df["speedup"] = dense.epoch_seconds.min() / df.epoch_seconds
    df["accuracy_gap"] = 100 * (df.reported - dense.reported.mean())
    return df


def _row(spec: SpeedupSpec, dataset: str, method: str, engine: str) -> dict:
    """One method's backbone in one engine on one task: its record's metrics."""
    from .train import online_linear_finetune

    row = spec.row(dataset, method, engine)  # its record's spec: the method's sparsity and upstream recipe
    meta = data.info(dataset)
    mean, std = upstream.norm_stats(spec.cfg)
    model, _ = upstream_model(row)
    eng = Engine(model, spec.cfg["image_size"], spec.batch_size, engine)
    train_loader = loader(row, "train", mean, std, spec.batch_size, backend="torch")
    test_loader = loader(row, "test", mean, std, spec.batch_size, backend="torch")
    val_loader = loader(row, "val", mean, std, spec.batch_size, backend="torch") if "val" in splits(spec.cfg) else None
    res = online_linear_finetune(
        eng,
        train_loader,
        test_loader,
        model.fc.in_features,
        meta.num_classes,
        row.hp,
        meta.metric,
        spec.seed,
        val_loader=val_loader,
    )
    return {
        "dataset": dataset,
        "method": method,
        "sparsity": row.sparsity,
        "engine": engine,
        "epoch_seconds": res["epoch_seconds"],
        "reported": res["reported"],
        "reported_epoch": res["reported_epoch"],
        "epoch_rule": "chosen on validation" if val_loader is not None else "last epoch",
        "best": res["best"],
        "final": res["final"],
        "metric": meta.metric,
        **eng.info(),
    }
