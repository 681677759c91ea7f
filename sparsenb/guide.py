"""The decision guide (Figure 1 from the data): per finetuning mode and sparsity, which sparse
method to pick, chosen without the results it is reported on.

    guide.decision_guide(tidy)      # method, how it was chosen, its alpha (%) with a 95% interval
"""

from __future__ import annotations

import pandas as pd

from . import metrics, prune, stats, summary
from .contrasts import CONTROL_NAMES, one_arch

NOT_CANDIDATES = ("dense", "control", "structured")
COLUMNS = (
    "finetune arch sparsity method family chosen_by alpha_pct alpha_pct_low alpha_pct_high tasks upstream_models "
    "matches_dense evidence"
).split()


def _candidates(d: pd.DataFrame, finetune: str) -> list[str]:
    """The unstructured sparse methods (LTH-T not in linear finetuning, as in Sec. 3.3)."""
    fam = summary.families()
    out = [m for m in sorted(set(d.method)) if m not in CONTROL_NAMES and fam.get(m) not in NOT_CANDIDATES]
    return [m for m in out if prune.reported_in(m, finetune)]


def _alpha_units(d: pd.DataFrame, dense: pd.DataFrame, column: str = "accuracy") -> pd.Series:
    """alpha per unit (dataset, upstream_seed) of the rows `d` against the dense rows."""
    a = d.groupby(stats.UNIT)[column].mean()
    by = stats.UNIT if set(a.index) <= set(dense.groupby(stats.UNIT).groups) else ["dataset"]
    b = dense.groupby(by)[column].mean()  # paired on upstream seed where dense has the same ones
    b = b.reindex(a.index if len(by) == 2 else a.index.get_level_values("dataset"))
    return pd.Series(metrics.relative_error_increase(a, b), index=a.index)


def _split_seeds(g: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per cell, the first half of its seeds (sorted) to choose on, the rest to report on."""
    rank = g.groupby(["dataset", "method", "upstream_seed"]).seed.rank(method="first")
    k = g.groupby(["dataset", "method", "upstream_seed"]).seed.transform("count")
    choose = rank <= k // 2
    return g[choose & (k >= 2)], g[~choose & (k >= 2)]


def _choose(g: pd.DataFrame, dense: pd.DataFrame) -> tuple[str | None, str, pd.DataFrame]:
    """The method with the lowest mean alpha over tasks on results other than those it is reported
    on: validation accuracy where every row has it, else the first half of each cell's seeds."""
    if "val_accuracy" in g and g.val_accuracy.notna().all() and dense.val_accuracy.notna().all():
        score = {m: _alpha_units(r, dense, "val_accuracy").mean() for m, r in g.groupby("method")}
        return (min(score, key=score.get) if score else None), "validation", g
    pick, report = _split_seeds(g)
    score = {m: _alpha_units(r, dense).mean() for m, r in pick.groupby("method")}
    return (min(score, key=score.get) if score else None), "held-out seeds", report


def decision_guide(tidy: pd.DataFrame, threshold: float = 0.05, arch: str | None = None) -> pd.DataFrame:
    """Figure 1 from the data: per finetuning mode and sparsity, the sparse method with the lowest
    mean relative increase in error (alpha) over tasks, chosen on validation accuracy (records that
    have it) or on half of each cell's seeds (the released results), and its alpha (%) with the 95%
    interval over tasks x upstream models from the results not used to choose it (test accuracy;
    the other seeds). matches_dense: "yes" when the interval lies below `threshold`, "no" when above
    it, else "unclear"."""
    d = one_arch(tidy, arch)
    if "upstream_seed" not in d:
        d["upstream_seed"] = 0
    rows = []
    for (ft, sp), g in d[d.sparsity > 0].groupby(["finetune", "sparsity"]):
        g, dense = g[g.method.isin(_candidates(g, ft))], d[(d.finetune == ft) & (d.method == prune.DENSE)]
        if dense.empty or g.empty:
            continue
        best, how, report = _choose(g, dense)
        if best is None:  # one seed per cell and no validation accuracy: nothing left to report on
            how = "not possible: one seed per cell and no validation accuracy"
        rep = report[report.method == best]
        e = stats.crossed(_alpha_units(rep, dense), len(rep)) if len(rep) else stats.Estimate(float("nan"))
        match = "unclear" if e.reason else "yes" if e.high <= threshold else "no" if e.low > threshold else "unclear"
        rows.append(
            {
                "finetune": ft,
                "arch": g.arch.iloc[0],
                "sparsity": sp,
                "method": best,
                "family": summary.families().get(best),
                "chosen_by": how,
                "alpha_pct": round(100 * e.mean, 1),
                "alpha_pct_low": round(100 * e.low, 1),
                "alpha_pct_high": round(100 * e.high, 1),
                "tasks": e.tasks,
                "upstream_models": e.upstream,
                "matches_dense": match,
                "evidence": "; ".join(filter(None, [e.reason, e.design(), e.caveat])),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
