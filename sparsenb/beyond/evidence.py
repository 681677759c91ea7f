"""The one place sparsenb.beyond touches sparsenb.stats (the statistics of the paper's findings): a
rename there is one edit here.

    evidence.test(d, "greater")        # d: one row per pair (dataset, diff) -> estimate, interval, verdict
    evidence.interval(values)          # mean and 95% t-interval of independent values
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats

POOLED = "each value pools the upstream models: the interval is over tasks, not over upstream draws"


def test(d: pd.DataFrame, direction: str, shift: float = 0.0, pooled: bool = False) -> dict:
    """Mean of the paired differences `d.diff` (columns dataset, diff, upstream_seed if the design
    has several) over tasks x upstream models with its 95% interval (`stats.crossed`: one value per
    unit, each the mean of its pairs), and the verdict on `diff - shift` in `direction` (greater,
    less; `shift`: a non-inferiority margin); estimate and interval in the units of `diff`, unshifted.
    `pooled`: each diff already pools the upstream models (a modal label over them), so the
    interval is over tasks only, and the text says that instead of `stats`' one-model caveat."""
    if len(d):
        d = d.assign(diff=d["diff"] - shift, upstream_seed=d["upstream_seed"] if "upstream_seed" in d else 0)
        e = stats.crossed(d.groupby(stats.UNIT)["diff"].mean(), runs=len(d))
    else:
        e = stats.Estimate(float("nan"))
    mean, low, high = e.mean + shift, e.low + shift, e.high + shift
    text = "no paired results" if not e.tasks else f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
    caveat = POOLED if pooled and e.caveat else e.caveat
    notes = "; ".join(x for x in (e.reason, caveat) if x)
    return {
        "verdict": stats.verdict(e, direction),
        "p": stats.p_value(e, direction) if e.tasks else float("nan"),
        "mean": mean,
        "low": low,
        "high": high,
        "tasks": e.tasks,
        "pairs": e.runs,
        "text": text + (f" ({notes})" if notes and e.tasks else ""),
    }


def interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval of independent values (NaN bounds below 2)."""
    v = np.asarray(pd.Series(values).dropna(), float)
    if not len(v):
        return float("nan"), float("nan"), float("nan")
    e = stats.two_way(v[:, None])
    return e.mean, e.low, e.high
