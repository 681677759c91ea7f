"""The one place sparsenb.beyond touches sparsenb.stats (the statistics of the paper's findings): a
rename there is one edit here.

    evidence.test(d, "greater")        # d: one row per pair (dataset, diff) -> estimate, interval, verdict
    evidence.interval(values)          # mean and 95% t-interval of independent values
"""

from __future__ import annotations

import pandas as pd

from .. import stats


def test(d: pd.DataFrame, direction: str, shift: float = 0.0) -> dict:
    """Mean over tasks of the paired differences `d.diff` (columns dataset, diff) with its 95%
    hierarchical-bootstrap interval, and the verdict on `diff - shift` in `direction` (greater, less;
    `shift`: a non-inferiority margin); estimate and interval in the units of `diff`, unshifted."""
    d = d.assign(diff=d["diff"] - shift) if len(d) else pd.DataFrame(columns=["dataset", "diff"])
    e = stats.estimate(d)
    mean, low, high = e.mean + shift, e.low + shift, e.high + shift
    return {
        "verdict": stats.verdict(e, direction),
        "mean": mean,
        "low": low,
        "high": high,
        "tasks": e.tasks,
        "pairs": e.pairs,
        "text": stats.Estimate(mean, low, high, e.tasks, e.pairs).text(),
    }


def interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval of independent values (NaN bounds below 2)."""
    return stats.t_interval(values)
