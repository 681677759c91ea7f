"""Table 4 from 09_detection's records: each model's mAP@0.5 and each sparse model's gap to its
budget-matched control, with the crossed interval over detection tasks x upstream models (the
study's statistics, sparsenb.stats), and the paper's claim about detection as one finding.

    frame = table4.load(cfg)             # one row per record: method, sparsity, dataset (task), seeds, map50
    table4.table(frame)                  # Table 4's shape: mean mAP@0.5 (%), the gap and its interval (points)
    table4.finding(frame, upstream_gaps) # "pruned models transfer to detection slightly worse than dense,
                                         #  in line with their upstream accuracy"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import files, prune, results, stats

NOTEBOOK = "09_detection"
CLAIM = "pruned models transfer to detection slightly worse than dense, in line with their upstream accuracy"


def load(cfg) -> pd.DataFrame:
    """The records of 09 under the profile's results root (only usable ones: a record whose id does
    not name its file is left out), as a frame with accuracy = mAP@0.5."""
    rows = []
    folder = Path(results.root_of(cfg)) / NOTEBOOK
    for path in sorted(p for p in folder.glob("*.json") if not files.unfinished(p)):
        r = results.read(path)
        if r is None or r.get("profile") != cfg["profile"]:
            continue
        rows.append(
            {
                "finetune": "detection",
                "method": r["method"],
                "sparsity": float(r["sparsity"]),
                "dataset": r["dataset"],
                "seed": int(r["seed"]),
                "upstream_seed": int(r["config"]["upstream_seed"]),
                "accuracy": float(r["map50"]),
                "upstream_top1": r.get("upstream_top1"),
            }
        )
    return pd.DataFrame(
        rows,
        columns=["finetune", "method", "sparsity", "dataset", "seed", "upstream_seed", "accuracy", "upstream_top1"],
    )


def gap(frame: pd.DataFrame, method: str, sparsity: float, against: str | None = None) -> stats.Estimate:
    """mAP@0.5 of (method, sparsity) minus its control's (default: the budget-matched one), per task
    and upstream model, with the crossed interval."""
    control = against or prune.control_of(method)
    m = stats.means(frame, {"sparse": ("detection", [method], sparsity), "control": ("detection", [control], 0.0)})
    return stats.crossed(m.frame["sparse"] - m.frame["control"], m.runs)


def table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per model: mean mAP@0.5 (%) over tasks and seeds, runs, and for a sparse model its
    control and the gap with its 95% interval (points), as Table 4 lists dense vs pruned."""
    out = []
    for (method, sparsity), g in frame.groupby(["method", "sparsity"], sort=False):
        row = {"method": method, "sparsity": sparsity, "map50": round(100 * g.accuracy.mean(), 2), "runs": len(g)}
        if prune.is_sparse(method) and (frame.method == prune.control_of(method)).any():
            e = gap(frame, method, sparsity)
            row.update(control=prune.control_of(method), gap=round(100 * e.mean, 2))
            row.update(ci_low=round(100 * e.low, 2), ci_high=round(100 * e.high, 2), design=e.design())
        out.append(row)
    return pd.DataFrame(out)


def finding(frame: pd.DataFrame, upstream_gaps: dict[str, float], sparsity: float = 0.9) -> dict:
    """Table 4's claim as a test: the mean over the sparse methods of their gap to their controls
    (interval crossed over tasks x upstream models; 'less': below 0), and how the methods' detection
    gaps follow their upstream gaps (`upstream_gaps`: method -> upstream top-1 minus its control's,
    points): Pearson's r over the methods, with its p-value."""
    methods = [m for m in frame.method.unique() if prune.is_sparse(m) and m in upstream_gaps]
    per_unit = []
    for m in methods:
        mm = stats.means(frame, {"s": ("detection", [m], sparsity), "c": ("detection", [prune.control_of(m)], 0.0)})
        per_unit.append(mm.frame["s"] - mm.frame["c"])
    mean_gap = pd.concat(per_unit, axis=1).mean(axis=1)
    e = stats.crossed(mean_gap, len(frame))
    det = [100 * gap(frame, m, sparsity).mean for m in methods]
    up = [upstream_gaps[m] for m in methods]
    r, p_r = sps.pearsonr(up, det) if len(methods) >= 3 else (np.nan, np.nan)
    return {
        "key": "detection_slightly_worse",
        "claim": CLAIM,
        "estimate": round(100 * e.mean, 2),
        "ci_low": round(100 * e.low, 2),
        "ci_high": round(100 * e.high, 2),
        "verdict": stats.verdict(e, "less"),
        "p": stats.p_value(e, "less"),
        "methods": len(methods),
        "r_upstream": round(float(r), 3),
        "p_r_upstream": round(float(p_r), 4),
        "design": e.design(),
    }
