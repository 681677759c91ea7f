"""Analyses of upstream models beside the study's summary: Table 3 over upstream seeds, fully pruned
filters per layer (Sec. 3.5, App. E), structured against unstructured models (App. J).

    analysis.table3(rows)                       # rows: 01_upstream records
    analysis.reference_table(cfg)               # Table 3 of the mini reference set, each model beside its control
    analysis.structure_table(cfg)               # every available upstream model, layer by layer
    analysis.result_row("acdc", 0.9, cfg)        # 01_upstream's record: top-1 (mini) or Table 3's sets (paper)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from . import checkpoints, data, devices, masks, metrics, profiles, prune, train, upstream, weights
from .config import Config
from .progress import log

if TYPE_CHECKING:
    import pandas as pd


def table3(df) -> "pd.DataFrame":
    """The upstream table in Table 3's shape: one row per (sparsity, method); accuracy columns in %
    as the mean over upstream seeds, with its standard error (`<col>_se`, NaN for one seed) and the
    number of seeds `n`."""
    import numpy as np

    cols = [
        c
        for c in (
            "top1",
            "val_top1",
            "imagenet_val",
            "imagenet_real",
            "imagenetv2_mean",
            "achieved_sparsity",
            "pruned_filters",
            "epochs",
        )
        if c in df.columns
    ]
    g = df.groupby(["sparsity", "method"])
    t = g[cols].mean()
    n = g.size()
    for c in cols:
        if c in ("achieved_sparsity", "pruned_filters", "epochs"):
            continue
        se = g[c].std(ddof=1) / np.sqrt(n)
        t[c] = (100 * t[c]).round(1)
        t[f"{c}_se"] = (100 * se).round(1)
    t["n"] = n
    return t.round(3)


def reference_table(cfg: Config) -> "pd.DataFrame":
    """Table 3 of the mini reference set from its manifest: one row per (method, sparsity) with its
    family, budget-matched control, epochs from random weights, achieved sparsity, test / val top-1 in %
    (mean over upstream seeds, SE, n) and `gap_to_control`: top-1 minus its control's, paired by
    upstream seed (mean and SE over seeds, points). A model off its nominal sparsity, or made by
    another recipe (stale), is left out."""
    import numpy as np
    import pandas as pd

    man = checkpoints.read_manifest(cfg)
    if man.empty:
        return pd.DataFrame()
    man = man[man.method.isin(list(prune.METHODS))]  # a model of a method no longer registered: not in the table
    off = [checkpoints.off_target(m, s, a) for m, s, a in zip(man.method, man.sparsity, man.achieved_sparsity)]
    stale = [r != checkpoints.recipe_key(cfg, m) for m, r in zip(man.method, man.recipe)]  # another recipe's
    man = man[~pd.Series(off, index=man.index, dtype=bool) & ~pd.Series(stale, index=man.index, dtype=bool)]
    man = man.assign(family=man.method.map(prune.family), control=man.method.map(lambda m: prune.control_of(m) or ""))
    ctrl = man[["method", "seed", "top1"]].rename(columns={"method": "control", "top1": "control_top1"})
    man = man.merge(ctrl, on=["control", "seed"], how="left")
    man["gap"] = 100 * (man.top1 - man.control_top1)
    g = man.groupby(["method", "sparsity"], sort=False)
    se = lambda x: x.std(ddof=1) / np.sqrt(x.count()) if x.count() > 1 else np.nan  # noqa: E731
    t = g.agg(
        family=("family", "first"),
        control=("control", "first"),
        epochs=("epochs", "first"),
        achieved_sparsity=("achieved_sparsity", "mean"),
        top1=("top1", lambda x: 100 * x.mean()),
        top1_se=("top1", lambda x: 100 * se(x)),
        val_top1=("val_top1", lambda x: 100 * x.mean()),
        gap_to_control=("gap", "mean"),
        gap_se=("gap", se),
        n=("seed", "nunique"),
    )
    rank = {m: i for i, m in enumerate(prune.METHODS)}
    t = t.reset_index().sort_values(["sparsity", "method"], key=lambda c: c.map(rank) if c.name == "method" else c)
    t = t.merge(paper_table3(), on=["method", "sparsity"], how="left")
    return t.round({"achieved_sparsity": 3, "top1": 1, "top1_se": 1, "val_top1": 1, "gap_to_control": 1, "gap_se": 1})


def paper_table3() -> "pd.DataFrame":
    """The paper's Table 3 (ImageNet top-1 of its upstream ResNet50 models) as `paper_gap`: each
    model's top-1 minus the dense model's, points (sparsenb/reference_results/table3_imagenet.csv)."""
    import pandas as pd

    t = pd.read_csv(Path(__file__).parent / "reference_results" / "table3_imagenet.csv")
    dense = float(t.loc[t.method == prune.DENSE, "top1"].iloc[0])
    return t[t.method != prune.DENSE].assign(paper_gap=lambda d: (d.top1 - dense).round(1))[
        ["method", "sparsity", "paper_gap"]
    ]


def structure_table(cfg: Config, seed: int = 0) -> "pd.DataFrame":
    """Fully pruned filters per conv layer of every available upstream model (Sec. 3.5, App. E):
    columns method, sparsity, layer, filters, pruned_filters, fraction (a 'total' row per model)."""
    import pandas as pd

    frames = []
    for method, sparsity in upstream.available(cfg, seed):
        model = weights.load_upstream(checkpoints.checkpoint_path(method, sparsity, cfg, seed), cfg["arch"])
        df = masks.pruned_filters(model).rename(columns={"sparsity": "layer_sparsity"})
        df.insert(0, "sparsity", sparsity)
        df.insert(0, "method", method)
        frames.append(df)
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            columns=["method", "sparsity", "layer", "filters", "pruned_filters", "layer_sparsity", "fraction"]
        )
    )


def structured_vs_unstructured(runs: "pd.DataFrame", upstream_rows: "pd.DataFrame") -> "pd.DataFrame":
    """App. J: per upstream model, its upstream top-1 and its mean full-finetuning accuracy over the
    tasks it was run on -- structured models against unstructured ones."""
    full = runs[runs.finetune == "full"] if "finetune" in runs else runs
    down = full.groupby(["method", "sparsity"]).agg(downstream=("final", "mean"), tasks=("dataset", "nunique"))
    up = upstream_rows.groupby(["method", "sparsity"]).agg(upstream_top1=("top1", "mean"))
    out = up.join(down, how="inner").reset_index()
    out["kind"] = out.method.map(_kind)
    return out.sort_values(["kind", "upstream_top1"])


def _kind(method: str) -> str:
    """structured | dense (the dense model at D) | unstructured (the sparse methods and the controls)."""
    if method in prune.METHODS and prune.family(method) == "structured":
        return "structured"
    return "dense" if method == prune.DENSE else "unstructured"


# --- one upstream model's row of Table 3 (01_upstream) -------------------------------------------


def evaluate_imagenet(model: nn.Module, cfg: Config, bicubic: bool = False, device=None) -> dict:
    """Table 3 for one model: top-1 on the ImageNet validation set, on its ReaL labels and on the
    three ImageNetV2 variants (and their mean). A set missing under data_root gives NaN and a note."""
    device = device or devices.device_of(cfg)
    model = model.to(device).eval()
    tf = data.transforms.evaluation(cfg["image_size"], bicubic=bicubic, order=cfg["eval_transform"])
    out = {}
    for name in data.IMAGENET_SETS:
        if name == "imagenet_real":
            continue
        try:
            ds = data.imagenet_eval(name, cfg["data_root"])
        except data.DataError as e:
            log(f"skipped: {e}")
            out[name] = float("nan")
            continue
        ds.transform = tf
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg["eval_batch_size"], num_workers=cfg["num_workers"])
        y, p = train.predict(model, loader, device)
        out[name] = metrics.top1(y, p)
        if name == "imagenet_val":
            real = Path(cfg["data_root"]) / "imagenet" / "real.json"
            out["imagenet_real"] = (
                metrics.real_accuracy(p, data.real_labels(ds, real)) if real.exists() else float("nan")
            )
    v2 = [out[k] for k in out if k.startswith("imagenetv2")]
    out["imagenetv2_mean"] = float(sum(v2) / len(v2)) if v2 else float("nan")
    return out


def mini_row(method: str, sparsity: float, cfg: Config, seed: int = 0, device=None) -> dict:
    """One upstream result row of the mini profile: top-1 on the upstream validation and test splits,
    sparsity over the prunable layers, fully pruned filters, the training it took."""
    device = device or devices.device_of(cfg)
    model, info = upstream.get(method, sparsity, cfg, seed, device)
    _, evals = upstream.loaders(cfg, seed)
    filt = masks.pruned_filters(model).iloc[-1]
    model.to(device or devices.default_device())
    own, total = upstream.budget(method, cfg)
    return {
        "method": method,
        "sparsity": sparsity if prune.is_sparse(method) else 0.0,
        "seed": seed,
        "family": prune.family(method),
        **{f"{k}_top1" if k != "test" else "top1": train.evaluate(model, v, "top1", device) for k, v in evals.items()},
        "achieved_sparsity": prune.target_sparsity(model),
        "pruned_filters": float(filt["fraction"]),
        "epochs": total,
        "train_seconds": info.get("seconds"),
        "checkpoint": str(checkpoints.checkpoint_path(method, sparsity, cfg, seed)),
    }


def result_row(method: str, sparsity: float, cfg: Config, seed: int = 0, device=None) -> dict:
    """01_upstream's result: mini -> `mini_row`; paper -> the published checkpoint on Table 3's sets."""
    profile = profiles.of(cfg)
    if profile.makes_upstream:
        return mini_row(method, sparsity, cfg, seed, device)
    model, info = upstream.get(method, sparsity, cfg, seed, device)
    checkpoints.check_sparsity(model, cfg, method, sparsity, seed)
    row = {
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "achieved_sparsity": prune.target_sparsity(model),
        "pruned_filters": float(masks.pruned_filters(model).iloc[-1]["fraction"]),
        "checkpoint_format": info["checkpoint_format"],
    }
    row.update(evaluate_imagenet(model, cfg, bicubic=profile.bicubic(method), device=device))
    return row
