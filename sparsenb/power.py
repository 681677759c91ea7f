"""Power: could the study's design decide a finding if its true effect were the paper's?

A finding that contrasts two families (`verdicts.FAMILY_CONTRASTS`) has one value per unit (task x
upstream seed). Its spread is split into variance components (two-way random effects, method of
moments, negative estimates set to 0): tasks, upstream models, residual. A simulated study draws
those components afresh at a chosen design (tasks x upstream seeds), adds the paper's effect, and
asks the study's own test (`stats.two_way`, `stats.p_value`): before Holm, p < 0.05 in the claimed
direction; at Holm's first step, p < 0.05 / (the number of primary findings). Written by hand: no
library simulates the power of this crossed interval (it is Banerjee's, not a mixed model's).

    comps = power.components(units)                     # tasks x upstream-seeds array
    power.simulate(0.02, comps, tasks=12, upstream=5)   # {"before_holm": .., "holm_first": ..}
"""

from __future__ import annotations

import numpy as np

from . import stats


def components(d: np.ndarray) -> dict:
    """{"task", "upstream", "residual"} variances of a complete tasks x upstream-seeds array."""
    n_t, n_u = d.shape
    m, r, c = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_t = n_u * ((r - m) ** 2).sum() / (n_t - 1)
    ms_u = n_t * ((c - m) ** 2).sum() / (n_u - 1) if n_u > 1 else 0.0
    ms_e = ((d - r[:, None] - c[None, :] + m) ** 2).sum() / ((n_t - 1) * (n_u - 1)) if n_u > 1 else 0.0
    return {
        "task": max((ms_t - ms_e) / n_u, 0.0),
        "upstream": max((ms_u - ms_e) / n_t, 0.0),
        "residual": float(ms_e) if n_u > 1 else float(ms_t),
    }


def simulate(
    effect: float,
    comps: dict,
    tasks: int,
    upstream: int,
    claim: str = "greater",
    findings: int = 9,
    sims: int = 2000,
    seed: int = 0,
) -> dict:
    """The share of `sims` simulated studies of `tasks` x `upstream` units, true mean `effect`, whose
    test agrees with `claim` before Holm (p < 0.05) and at Holm's first step (p < 0.05 / findings)."""
    rng = np.random.default_rng(seed)
    sd = {k: np.sqrt(v) for k, v in comps.items()}
    hits = np.zeros(2)
    for _ in range(sims):
        d = (
            effect
            + sd["task"] * rng.standard_normal((tasks, 1))
            + sd["upstream"] * rng.standard_normal((1, upstream))
            + sd["residual"] * rng.standard_normal((tasks, upstream))
        )
        e = stats.two_way(d)
        p = stats.p_value(e, claim)
        if stats.direction(e, claim) == "agrees":
            hits += [p < 0.05, p < 0.05 / findings]
    return {"before_holm": hits[0] / sims, "holm_first": hits[1] / sims}
