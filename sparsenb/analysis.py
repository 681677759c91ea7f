"""Analyses of upstream models beside the study's summary: Table 3 over upstream seeds, fully pruned
filters per layer (Sec. 3.5, App. E), structured against unstructured models (App. J).

    analysis.table3(rows)                       # rows: 01_upstream records
    analysis.structure_table(cfg)               # every available upstream model, layer by layer
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import checkpoints, masks, upstream, weights
from .config import Config

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
    out["kind"] = out.method.map(
        lambda m: "structured" if m == "structured" else "dense" if m == "dense" else "unstructured"
    )
    return out.sort_values(["kind", "upstream_top1"])
