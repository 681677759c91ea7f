"""Paired comparisons with uncertainty: what every finding and decision of 07_summary rests on.

    d = stats.paired(tidy, a={"method": ["acdc", "str"]}, b={"method": ["gmp"]}, finetune="linear")
    est = stats.estimate(d)                       # mean over tasks, 95% interval, n
    stats.verdict(est, "greater")                 # "agrees" | "contradicts" | "inconclusive"

A comparison pairs like with like: the two sides are matched on task and seed (and sparsity,
upstream seed where present), so that task difficulty and seed noise cancel; a side that is a set of
methods (a family) is their mean on that task and seed -- never the best member. The estimate is the
mean over tasks of the mean over seeds of the paired difference; its interval comes from a
hierarchical bootstrap (tasks resampled, then seeds within each task), so both sources of noise are
in it. A verdict needs the interval to exclude zero (or, for "equivalent", to lie inside the margin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PAIR_KEYS = ("arch", "dataset", "seed", "upstream_seed", "sparsity")
MIN_TASKS = 3  # fewer tasks than this: no interval is trusted, the verdict is inconclusive


@dataclass(frozen=True)
class Estimate:
    mean: float  # mean over tasks of the paired difference (same unit as the input)
    low: float  # 95% bootstrap interval
    high: float
    tasks: int
    pairs: int
    paired_on: tuple = ()

    def text(self, unit: str = " points", scale: float = 100.0) -> str:
        if not self.tasks:
            return "no paired results"
        on = f" paired on {'+'.join(self.paired_on)}" if self.paired_on else ""
        return (
            f"{scale * self.mean:+.2f}{unit} [95% CI {scale * self.low:+.2f}, {scale * self.high:+.2f}], "
            f"{self.tasks} tasks, {self.pairs} pairs{on}"
        )


def _side(df: pd.DataFrame, sel: dict, keys: list[str]) -> pd.Series:
    """Mean accuracy of the rows matching `sel` ({column: value or list}) per pairing key; a key
    counts only where every method of the side has a result (a family mean is of all its members)."""
    m = pd.Series(True, index=df.index)
    for col, val in sel.items():
        m &= df[col].isin(val if isinstance(val, (list, tuple, set)) else [val])
    rows = df[m]
    if "method" not in rows or rows.empty:
        return rows.groupby(keys)["accuracy"].mean() if len(rows) else pd.Series(dtype=float)
    g = rows.groupby(keys)
    complete = g["method"].nunique() == rows["method"].nunique()
    return g["accuracy"].mean()[complete]


def paired(df: pd.DataFrame, a: dict, b: dict, keys=PAIR_KEYS, value=None, **where) -> pd.DataFrame:
    """Per pairing key (task, seed, ... -- the columns of `keys` present in `df`), side a minus side b.
    `where` filters both sides first (e.g. finetune="linear", sparsity=[0.8, 0.9]); a side's
    selector may fix a column the other leaves free (dense has sparsity 0: pass
    keys without sparsity, or give the dense side its own filter). `value`: a function
    (a_accuracy, b_accuracy) -> difference; default a - b. Returns columns keys..., a, b, diff."""
    sub = df
    for col, val in where.items():
        sub = sub[sub[col].isin(val if isinstance(val, (list, tuple, set)) else [val])]
    keys = [k for k in keys if k in sub.columns and k not in set(a) | set(b) and sub[k].notna().any()]
    sa, sb = _side(sub, a, keys), _side(sub, b, keys)
    both = pd.concat({"a": sa, "b": sb}, axis=1).dropna()
    if "seed" in keys:
        # where the seeds of the two sides are different runs (the paper's released full finetuning
        # results give each method its own seed numbers), seed-level pairs miss tasks: then pair
        # per task on each side's mean over its seeds
        coarse = [k for k in keys if k not in ("seed", "upstream_seed")]
        ta, tb = _side(sub, a, coarse), _side(sub, b, coarse)
        task_level = pd.concat({"a": ta, "b": tb}, axis=1).dropna()
        n_tasks = lambda x: x.reset_index()["dataset"].nunique() if len(x) else 0  # noqa: E731
        if n_tasks(both) < n_tasks(task_level):
            keys, both = coarse, task_level
    both["diff"] = value(both["a"], both["b"]) if value else both["a"] - both["b"]
    out = both.reset_index()
    out.attrs["paired_on"] = keys
    return out


def estimate(d: pd.DataFrame, level: float = 0.95, n_boot: int = 4000, seed: int = 0) -> Estimate:
    """Mean over tasks (dataset) of the mean paired difference, with a hierarchical bootstrap
    interval: resample tasks with replacement, then the pairs within each drawn task."""
    if d.empty:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    groups = [g["diff"].to_numpy(float) for _, g in d.groupby("dataset")]
    point = float(np.mean([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    n = len(groups)
    boot = np.empty(n_boot)
    for i in range(n_boot):
        pick = rng.integers(0, n, n)
        boot[i] = np.mean([groups[j][rng.integers(0, len(groups[j]), len(groups[j]))].mean() for j in pick])
    lo, hi = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Estimate(point, float(lo), float(hi), n, int(len(d)), tuple(d.attrs.get("paired_on", ())))


def verdict(e: Estimate, claim: str, margin: float = 0.0) -> str:
    """Whether the interval supports the claim about the difference (a - b):
    "greater" (> 0), "less" (< 0), or "equivalent" (inside +-margin on both sides; contradicted when
    the interval lies wholly outside the margin). Fewer than MIN_TASKS tasks: "inconclusive"."""
    if e.tasks < MIN_TASKS or not np.isfinite(e.low):
        return "inconclusive"
    if claim == "greater":
        return "agrees" if e.low > 0 else "contradicts" if e.high < 0 else "inconclusive"
    if claim == "less":
        return "agrees" if e.high < 0 else "contradicts" if e.low > 0 else "inconclusive"
    if claim == "equivalent":
        if -margin <= e.low and e.high <= margin:
            return "agrees"
        return "contradicts" if e.low > margin or e.high < -margin else "inconclusive"
    raise ValueError(f"unknown claim {claim!r}; valid: greater, less, equivalent")


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of independent values (e.g. one alpha per task)."""
    from scipy import stats as st

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        m = float(v.mean()) if len(v) else float("nan")
        return m, float("nan"), float("nan")
    se = v.std(ddof=1) / np.sqrt(len(v))
    h = float(st.t.ppf(0.5 + level / 2, len(v) - 1) * se)
    return float(v.mean()), float(v.mean() - h), float(v.mean() + h)
