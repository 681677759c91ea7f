"""Findings as tests with a verdict: on synthetic per-seed results whose truth is known, the
verdicts come out right -- no effect: inconclusive; the paper's effects: agrees; reversed: contradicts."""

import numpy as np
import pandas as pd
import pytest

from sparsenb import stats, summary, verdicts

TASKS = [f"task{i}" for i in range(7)]
SEEDS = [21, 51, 81]
METHODS = ["gmp", "woodfisher", "acdc", "str", "rigl_erk_1x", "rigl_erk_5x", "lth_t"]


def synthetic(effect: float, noise: float = 0.004, seed: int = 0) -> pd.DataFrame:
    """Per-seed accuracies: a task level, seed noise, and `effect` (1 = the paper's effects, 0 = none,
    -1 = reversed) -- regularization 4 points above progressive in linear (their mean: +0.4 over
    dense), progressive 2 above regularization in full, 90% costs 2 points
    more in full than in linear, LTH-T -6 points at 90% in full, sparse 80% = dense in linear
    (reversed: 5 points below), RigL 5x +1.5 over 1x in full."""
    rng = np.random.default_rng(seed)
    rows = []
    base = {t: 0.55 + 0.05 * i for i, t in enumerate(TASKS)}
    for ft in ("linear", "full"):
        for t in TASKS:
            for s in SEEDS:
                rows.append((ft, t, "dense", 0.0, s, base[t] + rng.normal(0, noise)))
                for sp in (0.8, 0.9):
                    for m in METHODS:
                        fam = summary.families()[m]
                        acc = base[t]
                        if ft == "linear" and fam == "regularization":
                            acc += 0.02 * effect
                        if ft == "linear" and fam == "progressive":
                            acc -= 0.02 * effect
                        if ft == "full" and fam == "progressive":
                            acc += 0.01 * effect
                        if ft == "full" and fam == "regularization":
                            acc -= 0.01 * effect
                        if sp == 0.9:
                            acc -= 0.01 + (0.02 * effect if ft == "full" else 0.0)
                        if m == "lth_t" and ft == "full" and sp == 0.9:
                            acc -= 0.06 * effect
                        if m == "rigl_erk_5x" and ft == "full":
                            acc += 0.015 * effect
                        if ft == "linear" and effect < 0:
                            acc -= 0.05
                        rows.append((ft, t, m, sp, s, acc + rng.normal(0, noise)))
    df = pd.DataFrame(rows, columns=["finetune", "dataset", "method", "sparsity", "seed", "accuracy"])
    df["arch"] = "mini_resnet_x"
    return df


def verdicts_of(df):
    return verdicts.findings(df).set_index("finding")["verdict"]


CLAIMS = [
    "regularization methods transfer best with linear finetuning",
    "progressive methods transfer best with full finetuning",
    "accuracy falls with sparsity (80% -> 90%) more in full finetuning than in linear",
    "LTH-T collapses at >= 90% sparsity (full finetuning)",
    "extended budget: RigL 5x transfers better than RigL 1x (full finetuning)",
]
MATCH = "sparse models match dense in linear transfer"


def test_the_papers_effects_agree():
    v = verdicts_of(synthetic(1.0))
    assert (v[CLAIMS] == "agrees").all(), v
    assert v[MATCH] == "agrees"


def test_no_effect_is_inconclusive():
    v = verdicts_of(synthetic(0.0))
    assert (v[CLAIMS] == "inconclusive").all(), v
    assert v[MATCH] == "agrees"  # no effect: sparse does match dense


def test_reversed_effects_contradict():
    v = verdicts_of(synthetic(-1.0))
    assert (v[CLAIMS] == "contradicts").all(), v
    assert v[MATCH] == "contradicts"


def test_large_noise_or_few_tasks_is_inconclusive():
    v = verdicts_of(synthetic(1.0, noise=0.2))
    assert (v[CLAIMS[:2]] == "inconclusive").all(), v
    few = synthetic(1.0)
    v = verdicts_of(few[few.dataset.isin(TASKS[:2])])
    assert (v == "inconclusive").all(), v


def test_families_enter_as_their_mean_not_their_best_member():
    """One excellent member cannot carry its family: regularization's mean is what is compared."""
    df = synthetic(0.0)
    boost = (df.finetune == "linear") & (df.method == "acdc")
    df.loc[boost, "accuracy"] += 0.03  # one member +3 points, the family mean +1
    e = stats.estimate(
        stats.paired(
            df,
            {"method": ["acdc", "str", "rigl_erk_1x"]},
            {"method": ["gmp", "woodfisher"]},
            finetune="linear",
            sparsity=[0.8, 0.9],
        )
    )
    assert e.mean == pytest.approx(0.01, abs=0.003)


def test_pairs_are_same_task_and_seed():
    df = synthetic(1.0)
    d = stats.paired(df, {"method": "acdc"}, {"method": "gmp"}, finetune="linear", sparsity=0.8)
    assert len(d) == len(TASKS) * len(SEEDS) and "seed" in d.attrs["paired_on"]


def test_verdict_rules():
    e = stats.Estimate(0.02, 0.01, 0.03, 7, 21)
    assert stats.verdict(e, "greater") == "agrees" and stats.verdict(e, "less") == "contradicts"
    assert stats.verdict(stats.Estimate(0.0, -0.004, 0.005, 7, 21), "equivalent", 0.01) == "agrees"
    assert stats.verdict(stats.Estimate(0.0, -0.02, 0.005, 7, 21), "equivalent", 0.01) == "inconclusive"
    assert stats.verdict(stats.Estimate(0.05, 0.03, 0.07, 7, 21), "equivalent", 0.01) == "contradicts"
    assert stats.verdict(stats.Estimate(0.05, 0.03, 0.07, 2, 6), "greater") == "inconclusive"
    with pytest.raises(ValueError, match="greater, less, equivalent"):
        stats.verdict(e, "bigger")
