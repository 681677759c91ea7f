"""Findings as tests with a verdict, checked on synthetic per-seed results whose truth is known:
intervals that cover (crossed task x upstream-model noise, 3-12 tasks), families as the mean of
their members, claims one-sided and per method as the paper states them, budget-matched contrasts,
and a decision guide that reports on results it did not choose on."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sparsenb import stats, verdicts
from sparsenb.errors import UserError

TASKS = [f"task{i}" for i in range(7)]
SPARSE = ["gmp", "woodfisher", "acdc", "str", "rigl_erk_1x", "rigl_erk_5x", "lth_t"]
CONTROLS = {"dense": 0.0, "dense_2x": 0.02, "dense_5x": 0.04}  # what a longer budget gives dense
REG = ("acdc", "str", "rigl_erk_1x")


def tidy_from(offset, methods, tasks=TASKS, upstream=(0, 1, 2), seeds=(21,), sparsities=(0.8, 0.9, 0.95), **kw):
    """Per-seed results: accuracy = task level (per mode) + offset(finetune, method, sparsity, task
    index) + the upstream model's noise (one draw per method x sparsity x upstream seed, shared by
    every task and both modes: crossed) + run noise. 95%: the first upstream seed only (the mini
    design). Controls and dense at sparsity 0."""
    rng = np.random.default_rng(kw.get("seed", 0))
    model_sd, run_sd, seeds_of = kw.get("model_sd", 0.002), kw.get("run_sd", 0.002), kw.get("seeds_of", {})
    rows = []
    for m in methods:
        for s in (0.0,) if m in CONTROLS else sparsities:
            for u in upstream if s < 0.95 else upstream[:1]:
                model = rng.normal(0, model_sd)
                for ft, level, step in (("linear", 0.5, 0.02), ("full", 0.7, 0.04)):
                    for i, t in enumerate(tasks):
                        for seed in seeds_of.get(m, seeds):
                            acc = level + step * i + offset(ft, m, s, i) + model + rng.normal(0, run_sd)
                            rows.append((ft, "mini_resnet", t, m, s, seed, u, acc))
    cols = ["finetune", "arch", "dataset", "method", "sparsity", "seed", "upstream_seed", "accuracy"]
    return pd.DataFrame(rows, columns=cols)


def paper_effects(k: float):
    """k = 1: the paper's claims hold, each against its matched control; 0: no effect anywhere
    (controls included); -1: every claim reversed."""
    budget = {m: abs(k) * v for m, v in CONTROLS.items()}

    def offset(ft, m, s, i):
        if m in budget:
            return budget[m]
        base = budget["dense_2x" if m in ("gmp", "woodfisher") else "dense_5x" if m == "rigl_erk_5x" else "dense"]
        drop = {0.8: 0.0, 0.9: 0.005, 0.95: 0.01}[s]
        if ft == "linear":
            gap = {"gmp": -0.02, "woodfisher": -0.02, "lth_t": -0.1}.get(m, 0.01) * k - drop
            gap += 0.015 * k * (i - 3) / 3 if m in REG else 0.0  # regularization gains with difficulty
            return base + gap - (0.05 if k < 0 else 0.0)
        gap = -drop - 0.02 * k * {0.8: 0, 0.9: 1, 0.95: 2}[s]  # sparsity costs 2 points more per step
        gap += {"acdc": -0.02, "rigl_erk_1x": -0.02, "str": -0.035}.get(m, 0.0) * k
        if m == "rigl_erk_5x" and k < 0:
            gap -= 0.08
        if m == "lth_t" and k > 0 and s >= 0.9:
            gap -= 0.06  # competitive at 80%, drops from 90%
        if m == "lth_t" and k < 0:
            gap += -0.05 + (0.06 if s >= 0.9 else 0.0)  # behind at 80%, catching up from 90%
        return base + gap

    return offset


def mini(k: float, **kw) -> pd.DataFrame:
    return tidy_from(paper_effects(k), SPARSE + list(CONTROLS), **kw)


def primary(f: pd.DataFrame) -> pd.Series:
    return f[~f.key.str.contains("/")].set_index("key")


# ---------------------------------------------------------------- intervals over crossed factors


def test_coverage_over_tasks_and_upstream_models():
    """Nominal 95% covers >= 93% at 3, 7 and 12 tasks with 1 and 3 upstream seeds (task sd 1,
    upstream-model sd 1 -- the noise that made a two-level bootstrap call 72% of null draws -- run
    sd 0.5); with one upstream model the interval is for that model (truth: mean + its effect).
    With no effect, a one-sided claim is not inconclusive in <= 7% of draws."""
    rng = np.random.default_rng(7)
    for n_t in (3, 7, 12):
        for n_u in (1, 3):
            cover = called = 0
            n = 1000
            for _ in range(n):
                up = rng.normal(0, 1, (1, n_u))
                d = rng.normal(0, 1, (n_t, 1)) + up + rng.normal(0, 0.5, (n_t, n_u))
                e = stats.two_way(d)
                truth = float(up.mean()) if n_u == 1 else 0.0
                cover += e.low <= truth <= e.high
                called += not (e.low <= 0 <= e.high) if n_u == 3 else 0
            assert cover / n >= 0.93, (n_t, n_u, cover / n)
            assert called / n <= 0.07, (n_t, n_u, called / n)


def test_null_rate_on_results_with_crossed_upstream_noise():
    """The issue's case: no true effect, 3 upstream models per method with 1-point model noise, 7
    tasks: acdc vs gmp is called different in <= 7% of draws (it was 72%)."""
    called = 0
    for rep in range(60):
        df = tidy_from(lambda *a: 0.0, ["acdc", "gmp"], sparsities=(0.8,), model_sd=0.01, run_sd=0.004, seed=rep)
        t = stats.means(df, {"a": ("linear", ["acdc"], 0.8), "b": ("linear", ["gmp"], 0.8)}).frame
        e = stats.crossed(t.a - t.b)
        assert e.upstream == 3 and e.tasks == 7
        called += stats.verdict(e, "greater") != "inconclusive"
    assert called / 60 <= 0.07


def test_upstream_noise_widens_the_interval_and_one_model_says_so():
    quiet = tidy_from(lambda *a: 0.0, ["acdc", "gmp"], sparsities=(0.8,), model_sd=0.0, run_sd=0.003)
    noisy = tidy_from(lambda *a: 0.0, ["acdc", "gmp"], sparsities=(0.8,), model_sd=0.02, run_sd=0.003)
    terms = {"a": ("linear", ["acdc"], 0.8), "b": ("linear", ["gmp"], 0.8)}
    eq, en = (stats.crossed(t.frame.a - t.frame.b) for t in (stats.means(quiet, terms), stats.means(noisy, terms)))
    assert en.high - en.low > 3 * (eq.high - eq.low)
    one = stats.crossed((lambda t: t.a - t.b)(stats.means(noisy[noisy.upstream_seed == 0], terms).frame))
    assert one.upstream == 1 and "not in the interval" in one.caveat and not one.reason
    two = stats.crossed((lambda t: t.a - t.b)(stats.means(noisy[noisy.upstream_seed < 2], terms).frame))
    assert (
        two.upstream == 2 and "upstream models (< 3)" in two.reason and stats.verdict(two, "greater") == "inconclusive"
    )
    few = stats.two_way(np.array([[5.0, 5.1, 5.2], [5.1, 5.2, 5.0]]))
    assert "2 tasks" in few.reason and stats.verdict(few, "greater") == "inconclusive"


def test_a_missing_cell_drops_the_row_or_column_with_most_gaps():
    idx = pd.MultiIndex.from_product([TASKS, [0, 1, 2]], names=stats.UNIT)
    v = pd.Series(np.arange(21.0), index=idx)
    v[("task3", 1)] = np.nan
    e = stats.crossed(v)
    assert (e.tasks, e.upstream) == (6, 3) and e.dropped == "task task3"
    v[[(t, 2) for t in TASKS[:4]]] = np.nan  # upstream seed 2 misses 4 of 7 tasks
    e = stats.crossed(v)
    assert (e.tasks, e.upstream) == (6, 2) and "upstream seed 2" in e.dropped


def test_p_value_matches_the_interval_and_holm():
    e = stats.two_way(np.random.default_rng(3).normal(0.6, 1, (7, 3)))
    p = stats.p_value(e, "greater")
    assert (p < 0.05) == (e.low > 0 or e.high < 0)
    assert stats.Estimate(e.mean, e.terms, 7, 3).half_width(1 - p) == pytest.approx(abs(e.mean), rel=1e-6)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(stats.holm([0.01, np.nan])[1])
    with pytest.raises(ValueError, match="greater, less, noninferior"):
        stats.verdict(e, "bigger")


# ---------------------------------------------------------------- families


def test_family_is_the_mean_of_its_members_whatever_their_seed_counts():
    """gmp (3 seeds, +1.5) and woodfisher (1 seed, -1.5) against a regularization family at 0:
    no difference (weighting by rows called it -1 point and 'contradicts')."""
    off = {"gmp": 0.015, "woodfisher": -0.015}
    df = tidy_from(
        lambda ft, m, s, i: off.get(m, 0.0),
        ["gmp", "woodfisher", *REG, "dense"],
        seeds=(21, 51, 81),
        seeds_of={"woodfisher": (21,)},
        sparsities=(0.8, 0.9),
    )
    f = primary(verdicts.findings(df))
    assert abs(f.loc["progressive_best_full", "estimate"]) <= 0.2
    assert f.loc["progressive_best_full", "verdict"] == "inconclusive"


def test_a_requested_member_without_results_is_an_error_naming_it():
    df = tidy_from(lambda *a: 0.0, ["gmp", "acdc"], sparsities=(0.8,))
    with pytest.raises(UserError, match="'woodfisher'"):
        stats.means(df, {"p": ("linear", ["gmp", "woodfisher"], 0.8)})
    with pytest.raises(UserError, match="'gmp' at sparsity 0.9"):
        stats.means(df, {"p": ("linear", ["gmp"], 0.9)})


def test_means_counts_the_runs_that_entered_and_says_whether_seeds_pair():
    df = tidy_from(lambda *a: 0.0, ["gmp", "woodfisher", "dense"], seeds=(21, 51), sparsities=(0.8,))
    terms = {
        "p": ("linear", ["gmp", "woodfisher"], 0.8),
        "d": ("linear", ["dense"], None),
        "g": ("linear", ["gmp"], 0.8),
    }
    m = stats.means(df, terms)
    assert list(m.frame.columns) == list(terms) and m.frame.index.names == stats.UNIT
    # 3 methods x 7 tasks x 3 upstream x 2 seeds; gmp's rows in two terms count once
    assert (m.runs, m.paired) == (3 * 7 * 3 * 2, True)
    m = stats.means(df[(df.method != "woodfisher") | (df.seed == 21)], terms)
    assert (m.runs, m.paired) == ((2 * 2 + 1) * 7 * 3, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.runs = 0


def test_one_excellent_member_cannot_carry_its_family():
    df = tidy_from(lambda ft, m, s, i: 0.03 if m == "acdc" else 0.0, ["gmp", "woodfisher", *REG], sparsities=(0.8,))
    t = stats.means(df, {"r": ("linear", list(REG), 0.8), "p": ("linear", ["gmp", "woodfisher"], 0.8)}).frame
    assert stats.crossed(t.r - t.p).mean == pytest.approx(0.01, abs=0.002)


# ---------------------------------------------------------------- the claims as the paper states them


def test_the_papers_effects_agree_raw_and_after_holm():
    f = primary(verdicts.findings(mini(1.0)))
    assert set(f.index) == set(verdicts.FINDINGS)
    assert (f.verdict == "agrees").all(), f[["verdict", "estimate", "ci_low", "ci_high", "evidence"]]
    assert (f.verdict_holm == "agrees").all(), f[["verdict_holm", "p_holm"]]


def test_no_effect_is_inconclusive_except_where_the_claim_is_a_match():
    f = primary(verdicts.findings(mini(0.0)))
    match = ["match_or_outperform_linear", "rigl_5x_near_woodfisher"]  # equal is "on par": those agree
    assert (f.loc[match, "verdict"] == "agrees").all(), f.loc[match]
    assert (f.drop(index=match).verdict == "inconclusive").all(), f[["verdict", "estimate", "ci_low", "ci_high"]]


def test_reversed_effects_contradict():
    f = primary(verdicts.findings(mini(-1.0)))
    assert (f.verdict == "contradicts").all(), f[["verdict", "estimate", "ci_low", "ci_high", "evidence"]]


def _linear_methods(gaps: dict) -> pd.DataFrame:
    return tidy_from(lambda ft, m, s, i: gaps.get(m, 0.0), ["dense", *gaps], sparsities=(0.8, 0.9), upstream=(0,))


def test_match_or_outperform_is_one_sided_per_method():
    """Every method 2 points above dense: agrees (a two-sided equivalence said 'contradicts');
    +2, +2, -3, -3: agrees on the +2 methods, not on a mean of -0.5; all at -3: contradicts."""
    key = "match_or_outperform_linear"
    f = primary(verdicts.findings(_linear_methods({m: 0.02 for m in ("acdc", "str", "gmp", "woodfisher")})))
    assert f.loc[key, "verdict"] == "agrees" and f.loc[key, "estimate"] == pytest.approx(2.0, abs=0.3)
    f = primary(verdicts.findings(_linear_methods({"acdc": 0.02, "str": 0.02, "gmp": -0.03, "woodfisher": -0.03})))
    assert f.loc[key, "verdict"] == "agrees" and f.loc[key, "estimate"] > 1.5
    assert "shown inferior: gmp 80/90%, woodfisher 80/90%" in f.loc[key, "evidence"]
    f = primary(verdicts.findings(_linear_methods({m: -0.03 for m in ("acdc", "str", "gmp", "woodfisher")})))
    assert f.loc[key, "verdict"] == "contradicts"


def test_one_sided_claims_go_one_way():
    """STR better than the other regularization methods contradicts "STR worse"; RigL 5x above
    WoodFisher is "on par or better": agrees."""
    off = {"str": 0.02, "rigl_erk_5x": 0.03}
    df = tidy_from(lambda ft, m, s, i: off.get(m, 0.0), ["dense", *SPARSE], sparsities=(0.8, 0.9), upstream=(0,))
    f = primary(verdicts.findings(df))
    assert f.loc["str_worse_full", "verdict"] == "contradicts"
    assert f.loc["rigl_5x_near_woodfisher", "verdict"] == "agrees"


def test_lth_t_must_be_competitive_at_80_and_drop_at_every_sparsity_from_90():
    def lth(drop90, drop95, at80=0.0):
        off = {0.8: at80, 0.9: drop90, 0.95: drop95}
        df = tidy_from(
            lambda ft, m, s, i: off[s] if m == "lth_t" else 0.0, ["dense", *SPARSE], upstream=(0,), model_sd=0
        )
        return primary(verdicts.findings(df)).loc["lth_t_drops_at_high_sparsity"]

    assert lth(-0.05, -0.08).verdict == "agrees"
    only95 = lth(0.0, -0.08)  # no drop at 90%: the claim is not shown
    assert only95.verdict == "inconclusive" and "row: drop at 90%" in only95.evidence
    assert lth(0.03, -0.08).verdict == "contradicts"  # better at 90%
    assert lth(-0.05, -0.08, at80=-0.05).verdict == "contradicts"  # not competitive at 80%


def test_difficulty_trend_needs_regularization_to_gain_with_difficulty():
    def trend(slope_reg, slope_prog):
        def off(ft, m, s, i):
            if ft != "linear" or m == "dense":
                return 0.0
            return (slope_reg if m in REG else slope_prog if m in ("gmp", "woodfisher") else 0.0) * (i - 3)

        df = tidy_from(off, ["dense", *SPARSE], sparsities=(0.8, 0.9), upstream=(0,))
        return primary(verdicts.findings(df)).loc["difficulty_trend"]

    assert trend(0.005, 0.0).verdict == "agrees"  # harder tasks (higher i): regularization gains
    assert trend(0.005, 0.005).verdict == "inconclusive"  # progressive shows it too
    assert trend(-0.005, 0.0).verdict == "contradicts"
    assert trend(0.005, 0.0).unit.startswith("alpha")


# ---------------------------------------------------------------- budget-matched contrasts


def test_matched_controls_are_the_primary_contrast_and_the_literal_one_names_the_budget():
    """Progressive methods exactly as good as their control dense_2x, regularization ones as dense:
    the matched contrast finds no difference; the paper's literal one (vs dense at D) finds the
    budget's +2 points and says which controls differ."""
    df = tidy_from(
        lambda ft, m, s, i: 0.02 if m in ("gmp", "woodfisher", "dense_2x") else 0.0, ["dense", "dense_2x", *SPARSE]
    )
    f = verdicts.findings(df).set_index("key")
    assert f.loc["progressive_best_full", "verdict"] == "inconclusive"
    assert f.loc["progressive_best_full", "contrast"] == "matched controls"
    lit = f.loc["progressive_best_full/literal"]
    assert lit.verdict == "agrees" and lit.estimate == pytest.approx(2.0, abs=0.3)
    assert "dense_2x (2D)" in f.loc["progressive_best_full", "evidence"]
    assert "str_worse_full/literal" not in f.index  # the same control on both sides: nothing to add
    assert "rigl_5x_over_1x/matched" not in f.index  # no dense_5x in these results


def test_control_mapping_reads_the_registry_or_the_fallback():
    assert verdicts.control_of("gmp") == "dense_2x" and verdicts.control_of("rigl_erk_5x") == "dense_5x"
    assert verdicts.control_of("acdc") == "dense" and verdicts.control_of("dense") is None


def test_findings_contract():
    f = verdicts.findings(mini(1.0))
    assert {"key", "finding", "verdict", "estimate", "ci_low", "ci_high", "evidence", "verdict_holm"} <= set(f.columns)
    assert f.key.is_unique and set(f.verdict) <= {"agrees", "contradicts", "inconclusive"}
    assert (f.estimate.dropna() == f.estimate.dropna().round(1)).all()
    assert f.paper.str.startswith("Sec. 3.").all()


# ---------------------------------------------------------------- decision guide


def test_decision_guide_chooses_on_validation_and_reports_on_test():
    """Validation says acdc, test says str: the guide picks acdc and reports acdc's test alpha."""
    df = tidy_from(lambda ft, m, s, i: {"acdc": 0.0, "str": 0.05}.get(m, 0.0), ["dense", "acdc", "str"])
    df["val_accuracy"] = df.accuracy + np.where(df.method == "acdc", 0.1, 0.0)
    g = verdicts.decision_guide(df).set_index(["finetune", "sparsity"])
    row = g.loc[("linear", 0.8)]
    assert row.method == "acdc" and row.chosen_by == "validation"
    assert abs(row.alpha_pct) < 1.0  # acdc's test alpha (str's would be about -10%)


def test_decision_guide_reports_on_seeds_it_did_not_choose_on():
    """Without validation accuracy: chosen on the first half of each cell's seeds, reported on the
    rest -- a method lucky on the choosing seeds is reported at its level on the others."""
    df = tidy_from(lambda *a: 0.0, ["dense", "acdc", "str"], seeds=(21, 51, 81, 111), upstream=(0,))
    lucky = (df.method == "acdc") & df.seed.isin([21, 51])
    df.loc[lucky, "accuracy"] += 0.05
    g = verdicts.decision_guide(df).set_index(["finetune", "sparsity"])
    row = g.loc[("linear", 0.8)]
    assert row.method == "acdc" and row.chosen_by == "held-out seeds"
    assert abs(row.alpha_pct) < 1.0  # not the -10% it showed on the seeds it was chosen on
    one = verdicts.decision_guide(df[df.seed == 21])  # one seed, no validation: no choice to report
    assert one.chosen_by.str.startswith("not possible").all() and one.method.isna().all()


def test_power_recovers_variance_components_and_tracks_the_effect():
    from sparsenb import power

    rng = np.random.default_rng(1)
    d = (
        0.02
        + 0.03 * rng.standard_normal((400, 1))
        + 0.01 * rng.standard_normal((1, 60))
        + 0.02 * rng.standard_normal((400, 60))
    )
    c = power.components(d)
    assert c["task"] ** 0.5 == pytest.approx(0.03, rel=0.1) and c["residual"] ** 0.5 == pytest.approx(0.02, rel=0.05)
    comps = {"task": 0.01**2, "upstream": 0.0, "residual": 0.01**2}
    none = power.simulate(0.0, comps, 12, 5, sims=400)["before_holm"]
    big = power.simulate(0.03, comps, 12, 5, sims=400)
    assert none < 0.06 and big["before_holm"] > 0.95 and big["holm_first"] <= big["before_holm"]
