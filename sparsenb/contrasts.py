"""What each sparse method is compared with: its budget-matched control where the results have
one (the mini study), else dense -- and the terms of a family's mean *gap* for sparsenb.stats.

    D = contrasts.Data(contrasts.one_arch(tidy))  # one architecture's per-seed results
    D.base("full", "gmp")                         # "dense_2x" (mini) | "dense" (released results)
    terms, gap = contrasts.gap_terms(D, "p", "full", ["gmp", "woodfisher"], (0.8, 0.9))
    stats.crossed(gap(stats.means(tidy, terms).frame))  # the family's mean gap over tasks x upstream models

Controls (family "control", target sparsity 0): `dense` (D epochs from random weights: the control
of acdc, str, rigl_erk_1x, gmp_scratch, lth_t), `dense_2x` (dense + a further D on GMP's schedule
without pruning: gmp, woodfisher, structured), `dense_5x` (5D: rigl_erk_5x), `dense_2x_scratch`
(2D from random weights: a reference curve only). A gap is paired on task, upstream seed and
finetuning seed; a family's gap is the mean of its members' gaps, each member weighted equally.
The paper's literal contrast (everything against dense at D) is `literal=True`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
import pandas as pd

from . import metrics, prune, stats
from .errors import UserError
from .prune import DENSE

SPARSITIES = (0.8, 0.9)  # the paper's main sparsities (Figs. 2-3, Table 1): pooled claims use both
CONTROL_NAMES = tuple(m for m in prune.METHODS if not prune.is_sparse(m))  # dense and the controls


@cache  # the params file is read once, not once per method of every findings row
def budget(control: str) -> str:
    """A control's upstream budget (epochs from random weights) in multiples of D ("2D"), as the
    profile that makes controls (mini) has it."""
    from . import config, profiles, upstream

    cfg = config.load(profiles.default().name)
    k = upstream.budget(control, cfg)[1] / float(cfg["upstream"]["D"])
    return "D" if k == 1 else f"{k:g}D"


def control_of(method: str) -> str | None:
    """The budget-matched control of a method (None for dense, the controls and methods only the
    released results have, such as M-FAC)."""
    return prune.control_of(method) if method in prune.METHODS else None


@dataclass
class Data:
    """The results of one architecture, and how contrasts are formed on them."""

    d: pd.DataFrame
    margin: float = 0.01  # non-inferiority margin (accuracy)

    @cached_property
    def matched(self) -> bool:
        """Budget-matched controls beyond dense are in the results (the mini study)."""
        return bool(self.d.method.isin([c for c in CONTROL_NAMES if c != DENSE]).any())

    def has(self, finetune: str, method: str, sparsity=None) -> bool:
        m = (self.d.finetune == finetune) & (self.d.method == method)
        if sparsity is not None:
            m &= np.isclose(self.d.sparsity, sparsity)
        return bool(m.any())

    def present(self, finetune: str, methods, sparsities=SPARSITIES) -> tuple[list[str], list[str]]:
        """The methods with `finetune` results at every one of `sparsities`, and the others."""
        ok = [m for m in methods if all(self.has(finetune, m, s) for s in sparsities)]
        return ok, [m for m in methods if m not in ok]

    def base(self, finetune: str, method: str, literal: bool = False) -> str:
        """What a method's gap is taken against: its own control (matched), else dense."""
        c = control_of(method) or DENSE
        return c if self.matched and not literal and self.has(finetune, c) else DENSE


def gap_terms(D: Data, name: str, finetune: str, members, sparsities, literal: bool = False):
    """Terms for stats.means and the function (unit table -> the family's mean gap over
    `sparsities`): the mean over members of (accuracy - accuracy of the member's base)."""
    terms = {f"{name}@{s:g}": (finetune, list(members), s) for s in sparsities}
    bases = pd.Series([D.base(finetune, m, literal) for m in members]).value_counts(normalize=True)
    terms.update({f"{name}~{b}": (finetune, [b], None) for b in bases.index})

    def gap(t: pd.DataFrame) -> pd.Series:
        acc = t[[f"{name}@{s:g}" for s in sparsities]].mean(axis=1, skipna=False)
        return acc - sum(w * t[f"{name}~{b}"] for b, w in bases.items())

    return terms, gap


def bases_text(D: Data, finetune: str, methods, literal: bool) -> str:
    """The controls that are not dense, e.g. "own controls: gmp, woodfisher dense_2x (2D)"; for the
    literal contrast, the budgets it leaves unmatched, e.g. "budgets: gmp, woodfisher 2D, rest D"."""
    if not D.matched:
        return ""
    by: dict[str, list[str]] = {}
    for m in methods:
        b, c = D.base(finetune, m), control_of(m) or DENSE
        if c != DENSE:
            label = f"{budget(c)} (control {c})" if literal else f"{c} ({budget(c)})"
            by.setdefault(label + ("" if b == c else " absent: vs dense"), []).append(m)
    if not by:
        return ""
    text = "; ".join(f"{', '.join(ms)} {b}" for b, ms in by.items())
    rest = any((control_of(m) or DENSE) == DENSE for m in methods)
    rest = ("; rest D" if literal else "; rest dense (D)") if rest else ""
    return f"budgets unmatched: {text}{rest}" if literal else f"own controls: {text}{rest}"


def differs(D: Data, finetune: str, methods) -> bool:
    """Some method's gap is against a control other than dense: the literal contrast differs."""
    return D.matched and any(D.base(finetune, m) != DENSE for m in methods)


def difficulty(D: Data) -> pd.Series:
    """Task difficulty (Sec. 3.3): dense full minus dense linear accuracy, per dataset."""
    acc = D.d[D.d.method == DENSE].groupby(["finetune", "dataset"]).accuracy.mean().unstack("finetune")
    if not {"full", "linear"} <= set(acc.columns):
        raise UserError("task difficulty needs dense results in both full and linear finetuning")
    return (acc["full"] - acc["linear"]).dropna()


def alphas(D: Data, families: dict, literal: bool = False) -> tuple[dict, int]:
    """Per family, per unit: the mean over its members and SPARSITIES of alpha (linear) against each
    member's base; and the runs that entered."""
    members = [m for ms in families.values() for m in ms]
    terms = {f"{m}@{s:g}": ("linear", [m], s) for m in members for s in SPARSITIES}
    terms |= {f"base:{b}": ("linear", [b], None) for b in {D.base("linear", m, literal) for m in members}}
    means = stats.means(D.d, terms)
    t = means.frame

    def alpha(m):
        base = t[f"base:{D.base('linear', m, literal)}"]
        a = sum(metrics.relative_error_increase(t[f"{m}@{s:g}"], base) for s in SPARSITIES) / len(SPARSITIES)
        return pd.Series(a, index=t.index)

    return {f: sum(alpha(m) for m in ms) / len(ms) for f, ms in families.items()}, means.runs


def one_arch(tidy: pd.DataFrame, arch: str | None) -> pd.DataFrame:
    """The rows of one architecture (default: the most common), sparsity and val_accuracy as floats."""
    arch = arch or (tidy.arch.value_counts().index[0] if len(tidy) else None)
    d = tidy[tidy.arch == arch].copy()
    d["sparsity"] = d.sparsity.astype(float)
    if "val_accuracy" in d:
        d["val_accuracy"] = pd.to_numeric(d.val_accuracy, errors="coerce")
    return d
