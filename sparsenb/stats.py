"""Contrasts with uncertainty over crossed random factors: what every finding and decision of
07_summary rests on.

    m = stats.means(tidy, {"a": ("linear", ["acdc", "str"], 0.8), "b": ("linear", ["dense"], None)})
    e = stats.crossed(m.frame.a - m.frame.b, m.runs)  # mean over tasks x upstream models, 95% interval
    stats.verdict(e, "greater")                   # "agrees" | "contradicts" | "inconclusive"

A result is one finetuning run: a task (dataset) x an upstream model (method, sparsity, upstream
seed) x a finetuning seed. Tasks and upstream models are *crossed* random factors -- every upstream
model is finetuned on every task -- and finetuning seeds are nested in their cell. `means` reduces
the rows to one value per unit (task, upstream seed) and term; a term is a set of methods (a family)
and its value is the mean of its members' means, each member weighted equally whatever its seed
count (a requested member without results is an error that names it). Within a unit the cells are
paired on finetuning seed where they all have the same seeds. A contrast is any function of the terms
per unit (a - b, a difference of gaps against controls, ...); `crossed` estimates its mean over the
units with an interval that carries the noise of tasks *and* of upstream models:

- one upstream model (the paper's released results): Student t over tasks, df = tasks - 1; the
  interval is for that upstream model, its training noise is not in it (`Estimate.caveat`);
- several: the two-way decomposition of the task x upstream-seed table into mean squares MS_T
  (df T-1), MS_U (df U-1), MS_E (df (T-1)(U-1)); Var(mean) = E[MS_T + MS_U - MS_E] / (T U). Each
  mean square enters with its own t quantile: half-width^2 = max(qT^2 MS_T + qU^2 MS_U - qE^2 MS_E,
  qT^2 MS_T, qU^2 MS_U) / (T U) -- Banerjee's conservative interval for a sum of variance
  components, so that upstream noise measured on 3 seeds never borrows the tasks' degrees of freedom
  (a Satterthwaite t did, and covered 93% at 12 tasks x 3 upstream seeds; this one >= 95%:
  tests/test_stats.py). Cells missing from the table drop the row or column with most gaps first.

Fewer than 3 tasks, or 2 upstream models (fewer than 3 where the design has more than one), is
always "inconclusive". A verdict needs the 95% interval to exclude the claim's boundary; `p_value`
is the level at which it would (two-sided), for Holm's adjustment across claims (`holm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as st

from .errors import UserError

UNIT = ["dataset", "upstream_seed"]
MIN_TASKS = 3  # fewer tasks than this: no interval is trusted, the verdict is inconclusive
MIN_UPSTREAM = 3  # where a contrast has more than one upstream model, fewer than this: inconclusive
LEVEL = 0.95
CLAIMS = ("greater", "less", "noninferior")


@dataclass(frozen=True)
class Estimate:
    """A contrast's mean and the variance components of its interval: `terms` is a tuple of
    (variance of the mean, df, sign); the half-width at `level` is sqrt(max(sum sign q^2 v,
    max of the positive q^2 v)) with q the t quantile of each term's df."""

    mean: float
    terms: tuple = ()
    tasks: int = 0
    upstream: int = 0  # upstream models (seeds) per side crossed with the tasks
    runs: int = 0  # finetuning runs that entered
    dropped: str = ""  # what was left out to make the task x upstream table complete

    def half_width(self, level: float = LEVEL) -> float:
        if not self.terms or not np.isfinite(self.mean):
            return float("nan")
        q2v = [s * st.t.ppf(0.5 + level / 2, df) ** 2 * v for v, df, s in self.terms]
        return float(np.sqrt(max(sum(q2v), *[x for x in q2v if x >= 0])))

    @cached_property
    def _hw(self) -> float:
        return self.half_width()

    @property
    def low(self) -> float:
        return self.mean - self._hw

    @property
    def high(self) -> float:
        return self.mean + self._hw

    @property
    def reason(self) -> str:
        """Why no verdict can be given ("" when one can)."""
        if not self.tasks or not np.isfinite(self.mean):
            return "no paired results"
        if self.tasks < MIN_TASKS:
            return f"{self.tasks} tasks (< {MIN_TASKS})"
        if 1 < self.upstream < MIN_UPSTREAM:
            return f"{self.upstream} upstream models (< {MIN_UPSTREAM})"
        return ""

    @property
    def caveat(self) -> str:
        return "one upstream model per method: its training noise is not in the interval" if self.upstream == 1 else ""

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided: the largest 1 - level whose interval still contains `null`."""
        if self.reason or not self.terms:
            return 1.0
        gap = abs(self.mean - null)
        f = lambda p: self.half_width(1 - p) - gap  # noqa: E731 - decreasing in p
        lo, hi = 1e-15, 1.0 - 1e-12
        if f(hi) >= 0:
            return 1.0
        return 0.0 if f(lo) < 0 else float(optimize.brentq(f, lo, hi, xtol=1e-12))

    def text(self, scale: float = 100.0, unit: str = "") -> str:
        if not self.tasks:
            return "no paired results"
        return f"{scale * self.mean:+.1f}{unit} [{scale * self.low:+.1f}, {scale * self.high:+.1f}]"

    def design(self) -> str:
        """The units behind the interval, in words."""
        if not self.tasks:
            return "no paired results"
        ups = f"{self.upstream} upstream model{'s' if self.upstream != 1 else ''}"
        out = f"{self.tasks} tasks x {ups}, {self.runs} runs"
        return out + (f"; left out: {self.dropped}" if self.dropped else "")


def _select(df: pd.DataFrame, finetune: str, method: str, sparsity) -> pd.DataFrame:
    m = (df.finetune == finetune) & (df.method == method)
    if sparsity is not None:
        m &= np.isclose(df.sparsity.astype(float), float(sparsity))
    return df[m]


@dataclass(frozen=True)
class Means:
    """What `means` returns. `frame`: one row per unit (dataset, upstream_seed), a column per term;
    `runs`: the result rows that entered (a row in two terms counts once); `paired`: every unit's
    cells share their finetuning seeds."""

    frame: pd.DataFrame
    runs: int
    paired: bool


def means(df: pd.DataFrame, terms: dict) -> Means:
    """Per unit (dataset, upstream_seed), the value of each term {name: (finetune, [methods],
    sparsity or None for any)}: the mean over the methods of each method's mean over seeds (a unit
    where a member is missing is NaN). A member without any result is a UserError naming it."""
    df = df.reset_index(drop=True) if "upstream_seed" in df else df.assign(upstream_seed=0).reset_index(drop=True)
    parts = []
    for name, (finetune, members, sparsity) in terms.items():
        for m in members:
            rows = _select(df, finetune, m, sparsity)
            if rows.empty:
                at = "" if sparsity is None else f" at sparsity {sparsity:g}"
                raise UserError(f"no {finetune} finetuning results for {m!r}{at}; drop it from the family or run it")
            parts.append(rows.assign(term=name, member=m, cell=f"{name}|{m}"))
    rows = pd.concat(parts)
    runs = int(rows.index.nunique())  # a row in two terms (dense on both sides) is one run
    rows = rows.reset_index(drop=True)
    # where every cell of a unit has the same seeds, the difference of means is the mean of the
    # seed-paired differences; where they differ (the released full finetuning results give each
    # method its own seeds) each cell's mean is over its own seeds
    seeds = rows.groupby(UNIT + ["cell"]).seed.agg(frozenset)
    member = rows.groupby(UNIT + ["term", "member"]).accuracy.mean()
    n = {name: len(members) for name, (_, members, _) in terms.items()}
    fam = member.groupby(level=UNIT + ["term"]).agg(["mean", "count"])
    complete = fam["count"] == fam.index.get_level_values("term").map(n)
    out = fam["mean"].where(complete).unstack("term").reindex(columns=list(terms))
    return Means(out, runs, bool((seeds.groupby(level=UNIT).nunique() == 1).all()))


def _complete(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The largest complete task x upstream table found by dropping, one at a time, the row or
    column with the largest share of gaps (ties: the one with fewer cells)."""
    dropped = []
    table = table.dropna(how="all").dropna(axis=1, how="all")
    while table.isna().any().any():
        rows, cols = table.isna().mean(axis=1), table.isna().mean(axis=0)
        if rows.max() > cols.max() or (rows.max() == cols.max() and table.shape[1] <= table.shape[0]):
            dropped.append(f"task {rows.idxmax()}")
            table = table.drop(index=rows.idxmax())
        else:
            dropped.append(f"upstream seed {cols.idxmax()}")
            table = table.drop(columns=cols.idxmax())
    return table, dropped


def crossed(values: pd.Series, runs: int | None = None) -> Estimate:
    """Mean over the units of a contrast indexed by (dataset, upstream_seed), with its interval
    over tasks x upstream models (see the module's docstring)."""
    values = values.astype(float)
    if values.notna().sum() == 0:
        return Estimate(float("nan"))
    table, dropped = _complete(values.unstack("upstream_seed"))
    return two_way(table.to_numpy(float), runs, ", ".join(dropped))


def two_way(d: np.ndarray, runs: int | None = None, dropped: str = "") -> Estimate:
    """`crossed` on a complete tasks x upstream-seeds array of unit values."""
    n_t, n_u = d.shape
    runs = int(runs if runs is not None else d.size)
    mean = float(d.mean())
    if n_t < 2:
        return Estimate(mean, (), n_t, n_u, runs, dropped)
    if n_u == 1:
        terms = ((float(d[:, 0].var(ddof=1)) / n_t, n_t - 1, 1),)
    else:
        r, c = d.mean(axis=1), d.mean(axis=0)
        ms_t = n_u * float(((r - mean) ** 2).sum()) / (n_t - 1)
        ms_u = n_t * float(((c - mean) ** 2).sum()) / (n_u - 1)
        df_e = (n_t - 1) * (n_u - 1)
        ms_e = float(((d - r[:, None] - c[None, :] + mean) ** 2).sum()) / df_e
        k = n_t * n_u
        terms = ((ms_t / k, n_t - 1, 1), (ms_u / k, n_u - 1, 1), (ms_e / k, df_e, -1))
    return Estimate(mean, terms, n_t, n_u, runs, dropped)


def slope(y: pd.Series, x: pd.Series, upstream: int = 1, runs: int = 0) -> Estimate:
    """Least-squares slope of y on x over tasks (both indexed by dataset) with its Student t
    interval, df = tasks - 2. With several upstream models pass y averaged over them: their main
    effects shift every task alike and leave the slope."""
    both = pd.concat({"y": y, "x": x}, axis=1).dropna()
    n = len(both)
    if n < 3 or both.x.nunique() < 2:
        return Estimate(float("nan"), (), n, upstream, runs)
    fit = st.linregress(both.x.to_numpy(float), both.y.to_numpy(float))
    return Estimate(float(fit.slope), ((float(fit.stderr) ** 2, n - 2, 1),), n, upstream, runs)


def _boundary(claim: str, margin: float) -> float:
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; valid: {', '.join(CLAIMS)}")
    return -margin if claim == "noninferior" else 0.0


def p_value(e: Estimate, claim: str, margin: float = 0.0) -> float:
    """Two-sided p of the claim's boundary (0; -margin for "noninferior"): below 0.05 exactly when
    the 95% interval excludes it, i.e. when `verdict` is not inconclusive."""
    return e.p_value(_boundary(claim, margin))


def direction(e: Estimate, claim: str, margin: float = 0.0) -> str:
    """Which verdict the estimate leans to: "agrees" or "contradicts"."""
    above = e.mean > _boundary(claim, margin)
    return "agrees" if above == (claim != "less") else "contradicts"


def verdict(e: Estimate, claim: str, margin: float = 0.0, alpha: float = 1 - LEVEL) -> str:
    """Whether the interval supports the claim about the contrast: "greater" (> 0), "less" (< 0)
    or "noninferior" (> -margin); contradicted when it lies wholly on the other side; fewer than
    MIN_TASKS tasks or 2 upstream models: "inconclusive"."""
    p = p_value(e, claim, margin)
    return direction(e, claim, margin) if p < alpha else "inconclusive"


def all_parts(parts: list[tuple]) -> tuple[float, str, tuple]:
    """A claim made of parts [(label, estimate, claim, margin)]: it agrees when every part agrees
    (intersection-union: p = the largest), contradicts when one part does (Bonferroni over the
    parts). Returns p, verdict and the deciding part (label, estimate, claim, margin, direction, p)."""
    ps = [(lab, e, c, m, direction(e, c, m), p_value(e, c, m)) for lab, e, c, m in parts]
    if all(x[4] == "agrees" for x in ps):
        worst = max(ps, key=lambda x: x[5])
        return worst[5], ("agrees" if worst[5] < 0.05 else "inconclusive"), worst
    contra = min((x for x in ps if x[4] == "contradicts"), key=lambda x: x[5])
    p = min(1.0, len(ps) * contra[5])
    return p, ("contradicts" if p < 0.05 else "inconclusive"), contra


def holm(p) -> np.ndarray:
    """Holm's step-down adjustment of p-values (NaN stays NaN)."""
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out
