"""The paper's findings as tests: each claim of Sec. 3.3-3.4 as the paper states it, its sentence
quoted, a contrast with a 95% interval over tasks x upstream models (sparsenb.stats) and a verdict
(agrees / contradicts / inconclusive), raw and Holm-adjusted across the findings; and the decision
guide (sparsenb.guide, re-exported here).

    verdicts.findings(summary.load_published())      # one row per claim, stable `key`
    verdicts.decision_guide(tidy)

Contrasts (sparsenb.contrasts). Where the results have budget-matched controls (the mini study:
`dense`, `dense_2x`, `dense_5x`), the primary contrast of a sparse method is against its own
control (`control_of`): its *gap*, paired on task, upstream seed and finetuning seed; claims about
families compare the families' mean gaps, each member weighted equally. The paper's literal contrast (against dense at
D, or method against method across budgets) is then a secondary row, key `<key>/literal`, that
names the budget difference. Without controls (the paper's released results) the contrast is
against dense. Families are the methods the paper names (present in the data; the absent ones are
named in the evidence). Verdicts need the interval to exclude the claim's boundary; Holm adjusts
the p-values across the primary rows (and, apart, across the secondary ones).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import stats
from .contrasts import SPARSITIES, Data, alphas, bases_text, control_of, differs, difficulty, gap_terms, one_arch
from .errors import UserError
from .guide import decision_guide

__all__ = ["FINDINGS", "control_of", "decision_guide", "findings"]

MARGIN = 0.01  # "match", "competitive", "on par": within 1 accuracy point (non-inferiority margin)
PROGRESSIVE = ("gmp", "woodfisher")  # Sec. 3.4: "progressive sparsification methods (GMP and WoodFisher)"
REGULARIZATION = ("acdc", "str", "rigl_erk_1x")  # "regularization-based methods (AC/DC, STR, and RigL)"
STANDARD = PROGRESSIVE + REGULARIZATION  # trained at the standard budget (LTH-T and RigL 5x apart)
LINEAR_SPARSE = STANDARD + ("rigl_erk_5x",)  # Sec. 3.3 leaves LTH-T out of linear finetuning
FINDINGS = {  # key: (the finding in a few words, the paper's sentence)
    "match_or_outperform_linear": (
        "some sparse methods match or outperform dense in linear finetuning",
        'Sec. 3.3: "some sparsification methods can consistently match or even sometimes outperform dense models"',
    ),
    "regularization_best_linear": (
        "regularization methods transfer better than progressive ones with linear finetuning",
        'Sec. 3.3: "regularization pruning methods are a better choice for linear transfer"',
    ),
    "progressive_best_full": (
        "progressive methods transfer better than regularization ones with full finetuning",
        'Sec. 3.4: "These methods show better performance than regularization-based methods (AC/DC, STR, '
        'and RigL), a direct reversal of the results of linear finetuning."',
    ),
    "sparsity_costs_more_full": (
        "accuracy falls with sparsity more in full finetuning than in linear",
        'Sec. 3.4: "In contrast to linear finetuning, we see a consistent trend of decreasing quality with '
        'increased sparsity."',
    ),
    "lth_t_drops_at_high_sparsity": (
        "LTH-T is competitive at 80% and drops at >= 90% (full finetuning)",
        'Sec. 3.4: "the exception is LTH-T, which is competitive at low sparsity (80%) but incurs severe '
        'accuracy drops at sparsities >= 90%"',
    ),
    "difficulty_trend": (
        "regularization methods gain on dense with task difficulty, progressive ones do not (linear, Fig. 3)",
        'Sec. 3.3: "we observe a trend for regularization methods (AC/DC, STR, RigL) to improve over the '
        "dense baseline with increased task difficulty [...] In contrast, progressive sparsification "
        'methods (GMP, WoodFisher) do not show a similar behavior."',
    ),
    "rigl_5x_over_1x": (
        "RigL 5x transfers better than RigL 1x (full finetuning)",
        'Sec. 3.4: "the extended training of RigL ERK 5x gives the transfer accuracies a considerable boost"',
    ),
    "rigl_5x_near_woodfisher": (
        "RigL 5x is almost on par with WoodFisher (full finetuning)",
        'Sec. 3.4: "putting RigL ERK 5x almost on par with WoodFisher, especially at higher sparsities"',
    ),
    "str_worse_full": (
        "STR transfers worse than the other regularization methods (full finetuning)",
        'Sec. 3.4: "Generally, STR performs worse on full finetuning, compared to other regularization methods."',
    ),
}
COLUMNS = (
    "key finding verdict verdict_holm estimate ci_low ci_high unit p p_holm contrast test paper tasks upstream_models"
).split() + ["evidence"]


def _compact(labels) -> str:
    """["acdc 80%", "acdc 90%", "str 80%"] -> "acdc 80/90%, str 80%"."""
    by: dict[str, list[str]] = {}
    for lab in labels:
        m, s = lab.rsplit(" ", 1)
        by.setdefault(m, []).append(s.rstrip("%"))
    return ", ".join(f"{m} {'/'.join(ss)}%" for m, ss in by.items()) or "none"


def _row(key, e, claim, test, evidence="", contrast="", margin=0.0, scale=100.0, unit="points", p=None, v=None):
    """One output row; `p` and `v` override the single-contrast p-value and verdict (composite claims)."""
    p = stats.p_value(e, claim, margin) if p is None else p
    v = v or (stats.direction(e, claim, margin) if p < 1 - stats.LEVEL else "inconclusive")
    notes = [e.reason and f"inconclusive: {e.reason}", evidence, e.design() if e.tasks else "", e.caveat]
    finding, paper = FINDINGS[key.split("/")[0]]
    row = dict(key=key, finding=finding, verdict=v, unit=unit, p=p, contrast=contrast, test=test, paper=paper)
    row |= {c: round(scale * x, 1) for c, x in (("estimate", e.mean), ("ci_low", e.low), ("ci_high", e.high))}
    return row | {"tasks": e.tasks, "upstream_models": e.upstream, "evidence": "; ".join(n for n in notes if n)}


def _missing(key, test, why, contrast="") -> dict:
    return _row(key, stats.Estimate(float("nan")), "greater", test, why, contrast, p=1.0, v="inconclusive")


def _absent(absent) -> str:
    return f"no results: {', '.join(absent)}" if absent else ""


def _contrast_of(key, D, finetune, a, b, claim, literal, label_a, label_b, margin=0.0) -> dict:
    """Family a minus family b (mean gaps over SPARSITIES), one row."""
    (ok_a, no_a), (ok_b, no_b) = D.present(finetune, a), D.present(finetune, b)
    pct = "/".join(f"{100 * s:g}" for s in SPARSITIES) + "%"
    sign = {"greater": "> 0", "less": "< 0", "noninferior": f"> -{100 * margin:g} point"}[claim]
    test = f"{label_a} ({', '.join(ok_a)}) minus {label_b} ({', '.join(ok_b)}), {finetune}, {pct}; {sign}"
    contrast = "literal" if literal or not D.matched else "matched controls"
    if not ok_a or not ok_b:
        return _missing(key, test, _absent(no_a + no_b) or "no results", contrast)
    try:
        units, runs = family_units(D, finetune, ok_a, ok_b, literal)
    except UserError as err:
        return _missing(key, test, str(err), contrast)
    e = stats.crossed(units, runs)
    bases = bases_text(D, finetune, ok_a + ok_b, literal)
    return _row(key, e, claim, test, "; ".join(filter(None, [bases, _absent(no_a + no_b)])), contrast, margin)


def family_units(D: Data, finetune: str, a, b, literal: bool) -> tuple[pd.Series, int]:
    """(family a's mean gap minus family b's, over SPARSITIES, per unit (task, upstream seed); the
    runs that entered): what a family contrast's interval is taken over (and `power` simulates)."""
    ta, ga = gap_terms(D, "a", finetune, a, SPARSITIES, literal)
    tb, gb = gap_terms(D, "b", finetune, b, SPARSITIES, literal)
    means = stats.means(D.d, {**ta, **tb})
    return ga(means.frame) - gb(means.frame), means.runs


# the findings that contrast two families: key -> (finetune, family a, family b, claim)
FAMILY_CONTRASTS = {
    "regularization_best_linear": ("linear", REGULARIZATION, PROGRESSIVE, "greater"),
    "progressive_best_full": ("full", PROGRESSIVE, REGULARIZATION, "greater"),
    "str_worse_full": ("full", ("str",), tuple(m for m in REGULARIZATION if m != "str"), "less"),
    "rigl_5x_over_1x": ("full", ("rigl_erk_5x",), ("rigl_erk_1x",), "greater"),
}


def _with_literal(key, D, finetune, a, b, claim, label_a, label_b, margin=0.0) -> list[dict]:
    """The matched contrast, and the literal one where the bases differ (budgets named)."""
    rows = [_contrast_of(key, D, finetune, a, b, claim, False, label_a, label_b, margin)]
    if differs(D, finetune, (*a, *b)):
        rows.append(_contrast_of(f"{key}/literal", D, finetune, a, b, claim, True, label_a, label_b, margin))
    return rows


def regularization_best_linear(D: Data) -> list[dict]:
    fams = (REGULARIZATION, PROGRESSIVE, "greater", "regularization", "progressive")
    return _with_literal("regularization_best_linear", D, "linear", *fams)


def progressive_best_full(D: Data) -> list[dict]:
    fams = (PROGRESSIVE, REGULARIZATION, "greater", "progressive", "regularization")
    return _with_literal("progressive_best_full", D, "full", *fams)


def str_worse_full(D: Data) -> list[dict]:
    others = [m for m in REGULARIZATION if m != "str"]
    return _with_literal("str_worse_full", D, "full", ["str"], others, "less", "STR", "other regularization")


def rigl_5x_near_woodfisher(D: Data) -> list[dict]:
    pair = (["rigl_erk_5x"], ["woodfisher"], "noninferior", "RigL 5x", "WoodFisher", D.margin)
    return _with_literal("rigl_5x_near_woodfisher", D, "full", *pair)


def rigl_5x_over_1x(D: Data) -> list[dict]:
    """The claim is about the longer budget itself, so the literal contrast (5x minus 1x) is the
    primary row; where controls exist, the matched one (does 5x gain more on dense_5x than 1x on
    dense?) is the secondary row."""
    key, args = "rigl_5x_over_1x", ("full", ["rigl_erk_5x"], ["rigl_erk_1x"], "greater")
    rows = [_contrast_of(key, D, *args, True, "RigL 5x", "RigL 1x")]
    rows[0]["contrast"] = "literal (5D vs D: the claim is about the budget)"
    if D.matched and D.base("full", "rigl_erk_5x") != "dense":
        rows.append(_contrast_of(f"{key}/matched", D, *args, False, "RigL 5x", "RigL 1x"))
    return rows


def _holm_within(parts: list[tuple[str, stats.Estimate, str, float]]) -> list[tuple]:
    """(label, estimate, claim, margin) -> (label, estimate, claim, margin, direction, Holm p)."""
    p = stats.holm([stats.p_value(e, c, m) for _, e, c, m in parts])
    return [(lab, e, c, m, stats.direction(e, c, m), q) for (lab, e, c, m), q in zip(parts, p)]


def _candidates(D: Data, literal: bool):
    """Each linear-finetuned sparse method at each main sparsity, its gap as an estimate."""
    parts, absent = [], []
    for m in LINEAR_SPARSE:
        if not D.has("linear", m):
            absent.append(m)
            continue
        for s in SPARSITIES:
            if not D.has("linear", m, s):
                absent.append(f"{m} {100 * s:g}%")
                continue
            try:
                terms, gap = gap_terms(D, "m", "linear", [m], [s], literal)
                means = stats.means(D.d, terms)
            except UserError as err:
                absent.append(f"{m} {100 * s:g}% ({err})")
                continue
            parts.append((f"{m} {100 * s:g}%", stats.crossed(gap(means.frame), means.runs), "noninferior", D.margin))
    return parts, absent


def match_or_outperform_linear(D: Data, literal: bool = False) -> list[dict]:
    """Per method and sparsity non-inferiority of the gap (> -margin), Holm across them: agrees when
    at least one is non-inferior, contradicts when every one is shown inferior (an intersection-union
    test: each at the 5% level, no adjustment needed)."""
    key = "match_or_outperform_linear" + ("/literal" if literal else "")
    contrast = "literal" if literal or not D.matched else "matched controls"
    against = "dense" if contrast == "literal" else "its control"
    test = (
        f"each sparse method at 80% and 90% minus {against}, linear; "
        f"> -{100 * D.margin:g} point for one at least (Holm)"
    )
    parts, absent = _candidates(D, literal)
    if not parts:
        return [_missing(key, test, _absent(absent) or "no results", contrast)]
    done = _holm_within(parts)
    raw = {x[0]: stats.p_value(x[1], x[2], x[3]) for x in done}
    agree = [x for x in done if x[4] == "agrees"]
    p_agree = min((x[5] for x in agree), default=1.0)
    # every one inferior: an intersection-union test, each at the raw level
    p_contra = max(raw.values()) if not agree else 1.0
    v = "agrees" if p_agree < 0.05 else "contradicts" if p_contra < 0.05 else "inconclusive"
    inferior = [x[0] for x in done if x[4] == "contradicts" and raw[x[0]] < 0.05]
    best = min(agree, key=lambda x: x[5]) if agree else max(done, key=lambda x: raw[x[0]])
    evidence = "; ".join(
        filter(
            None,
            [
                f"non-inferior (Holm): {_compact(x[0] for x in agree if x[5] < 0.05)}",
                f"shown inferior: {_compact(inferior)}",
                f"row: {best[0]}",
                bases_text(D, "linear", list(dict.fromkeys(x[0].split()[0] for x in done)), literal),
                _absent(absent),
            ],
        )
    )
    rows = [_row(key, best[1], "noninferior", test, evidence, contrast, D.margin, p=min(p_agree, p_contra), v=v)]
    if not literal and differs(D, "linear", [x[0].split()[0] for x in done]):
        rows += match_or_outperform_linear(D, literal=True)
    return rows


def sparsity_costs_more_full(D: Data) -> list[dict]:
    """(acc 80% - acc 90%) in full minus the same in linear, the mean over the standard methods both
    modes have (each equally); the controls cancel."""
    key, (lo, hi) = "sparsity_costs_more_full", SPARSITIES
    ok_f, no_f = D.present("full", STANDARD)
    ok_l, no_l = D.present("linear", STANDARD)
    ms = [m for m in STANDARD if m in ok_f and m in ok_l]
    test = f"drop {100 * lo:g}% -> {100 * hi:g}% in full minus the drop in linear, mean of {', '.join(ms)}; > 0"
    if not ms:
        return [_missing(key, test, _absent(sorted(set(no_f + no_l))) or "no results")]
    terms = {f"{ft}@{s:g}": (ft, ms, s) for ft in ("full", "linear") for s in SPARSITIES}
    try:
        means = stats.means(D.d, terms)
    except UserError as err:
        return [_missing(key, test, str(err))]
    t = means.frame
    drop = {ft: t[f"{ft}@{lo:g}"] - t[f"{ft}@{hi:g}"] for ft in ("full", "linear")}
    e = stats.crossed(drop["full"] - drop["linear"], means.runs)
    mean = {ft: stats.crossed(drop[ft]).mean for ft in drop}
    note = f"mean drop full {100 * mean['full']:+.1f}, linear {100 * mean['linear']:+.1f} points"
    return [
        _row(key, e, "greater", test, "; ".join(filter(None, [note, _absent([m for m in STANDARD if m not in ms])])))
    ]


def _part_note(e: stats.Estimate, row: stats.Estimate) -> str:
    """What a part of a composite claim rests on, where it differs from the row's estimate."""
    if e.upstream == row.upstream:
        return ""
    return " (one upstream model: its noise is not in this interval)" if e.upstream == 1 else f" ({e.design()})"


def _lth_parts(D: Data, literal: bool):
    """LTH-T minus the others: competitive at 80% (> -margin) and, at each sparsity >= 90% it has,
    a drop from 80% beyond the others' drop (< 0)."""
    highs = sorted(s for s in D.d[(D.d.method == "lth_t") & (D.d.finetune == "full")].sparsity.unique() if s >= 0.9)
    others, absent = D.present("full", STANDARD, (0.8,))
    if not others:
        raise UserError("no other standard method has full finetuning results at 80% to compare LTH-T with")
    tl, gl = gap_terms(D, "l", "full", ["lth_t"], [0.8], literal)
    to, go = gap_terms(D, "o", "full", others, [0.8], literal)
    means = stats.means(D.d, {**tl, **to})
    parts = [
        ("competitive at 80%", stats.crossed(gl(means.frame) - go(means.frame), means.runs), "noninferior", D.margin)
    ]
    for s in highs:
        both = [m for m in others if D.has("full", m, s)]
        if not both:
            raise UserError(f"no other method has full finetuning results at {100 * s:g}% to compare LTH-T with")
        terms = {f"{w}@{x:g}": ("full", ms, x) for w, ms in (("l", ["lth_t"]), ("o", both)) for x in (0.8, s)}
        means = stats.means(D.d, terms)
        t = means.frame
        did = (t[f"l@{s:g}"] - t[f"o@{s:g}"]) - (t["l@0.8"] - t["o@0.8"])
        parts.append((f"drop at {100 * s:g}%", stats.crossed(did, means.runs), "less", 0.0))
    return parts, others, absent, highs


def lth_t_drops_at_high_sparsity(D: Data, literal: bool = False) -> list[dict]:
    key = "lth_t_drops_at_high_sparsity" + ("/literal" if literal else "")
    contrast = "literal" if literal or not D.matched else "matched controls"
    test = (
        f"LTH-T minus the other standard methods' mean, full: at 80% > -{100 * D.margin:g} point, and at every "
        "sparsity >= 90% its drop from 80% minus theirs < 0 (all parts)"
    )
    if not D.has("full", "lth_t", 0.8):
        return [_missing(key, test, "no results: lth_t at 80% (full)", contrast)]
    try:
        parts, others, absent, highs = _lth_parts(D, literal)
    except UserError as err:
        return [_missing(key, test, str(err), contrast)]
    if not highs:
        return [_missing(key, test, "no results: lth_t at >= 90% (full)", contrast)]
    p, v, decide = stats.all_parts(parts)
    each = "; ".join(f"{lab} {e.text()}{_part_note(e, decide[1])}" for lab, e, _, _ in parts)
    bases = bases_text(D, "full", ["lth_t", *others], literal)
    evidence = "; ".join(filter(None, [f"row: {decide[0]}", each, bases, _absent(absent)]))
    rows = [_row(key, decide[1], decide[2], test, evidence, contrast, decide[3], p=p, v=v)]
    if not literal and differs(D, "full", ["lth_t", *others]):
        rows += lth_t_drops_at_high_sparsity(D, literal=True)
    return rows


def difficulty_trend(D: Data, literal: bool = False) -> list[dict]:
    """Slope over tasks of alpha (linear, 80/90%) on difficulty: regularization's < 0, and
    regularization's minus progressive's < 0 (both parts)."""
    key = "difficulty_trend" + ("/literal" if literal else "")
    contrast = "literal" if literal or not D.matched else "matched controls"
    test = (
        "slope of alpha on difficulty over tasks, linear, 80/90%: "
        "regularization < 0 and regularization minus progressive < 0"
    )
    (reg, no_r), (prog, no_p) = D.present("linear", REGULARIZATION), D.present("linear", PROGRESSIVE)
    if not reg or not prog:
        return [_missing(key, test, _absent(no_r + no_p), contrast)]
    try:
        x = difficulty(D)
        a, runs = alphas(D, {"reg": reg, "prog": prog}, literal)
    except UserError as err:
        return [_missing(key, test, str(err), contrast)]
    units = pd.concat(a, axis=1).dropna()
    per_task = lambda s: s.groupby(level="dataset").mean()  # noqa: E731 - upstream main effects leave the slope
    n_up = int(units.index.get_level_values("upstream_seed").nunique())
    parts = [
        ("regularization", stats.slope(per_task(units.reg), x, n_up, runs), "less", 0.0),
        ("regularization minus progressive", stats.slope(per_task(units.reg - units.prog), x, n_up, runs), "less", 0.0),
    ]
    p, v, decide = stats.all_parts(parts)
    each = "; ".join(f"{lab} {e.text(10)}" for lab, e, _, _ in parts)
    evidence = "; ".join(filter(None, [f"row: {decide[0]}", each, _absent(no_r + no_p)]))
    unit = "alpha % per 10 points of difficulty"
    evidence = "; ".join(filter(None, [evidence, bases_text(D, "linear", reg + prog, literal)]))
    rows = [_row(key, decide[1], "less", test, evidence, contrast, scale=10.0, unit=unit, p=p, v=v)]
    if not literal and differs(D, "linear", reg + prog):
        rows += difficulty_trend(D, literal=True)
    return rows


CLAIM_TESTS = (
    match_or_outperform_linear,
    regularization_best_linear,
    progressive_best_full,
    sparsity_costs_more_full,
    lth_t_drops_at_high_sparsity,
    difficulty_trend,
    rigl_5x_over_1x,
    rigl_5x_near_woodfisher,
    str_worse_full,
)


def vs_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """`ours` (a `findings` table) with the paper's own estimate of each finding from its released
    results (`paper`: `findings` of them) as `paper_estimate`, and `vs_paper`: "compatible" when our
    95% interval holds it, "differs" when it does not, "" where the released results give no estimate
    (or ours has none) -- a second test beside the verdict: an inconclusive verdict can still differ
    from the paper's number. The released results compare with dense, so the literal contrast is the
    paper's own; the matched one is ours."""
    est = paper.drop_duplicates("key").set_index("key").estimate
    out = ours.assign(paper_estimate=ours.key.str.split("/").str[0].map(est))  # a secondary row: its claim's
    known = out.paper_estimate.notna() & out.ci_low.notna() & out.ci_high.notna()
    inside = (out.ci_low <= out.paper_estimate) & (out.paper_estimate <= out.ci_high)
    out["vs_paper"] = np.where(known, np.where(inside, "compatible", "differs"), "")
    return out


def findings(tidy: pd.DataFrame, margin: float = MARGIN, arch: str | None = None) -> pd.DataFrame:
    """The paper's findings, each a test with a verdict on the per-seed results `tidy` (columns
    finetune, arch, dataset, method, sparsity, seed, accuracy in 0..1; upstream_seed where present),
    one architecture (default: the most common). One row per claim (`key`, FINDINGS), plus the
    secondary contrasts (`<key>/literal`, `<key>/matched`) where controls exist. Estimates and
    intervals in accuracy points (`unit`), rounded to 0.1; `verdict` from the 95% interval,
    `verdict_holm` from Holm-adjusted p-values across the primary rows (the secondary ones apart)."""
    D = Data(one_arch(tidy, arch), margin)
    rows = [row for test in CLAIM_TESTS for row in test(D)]
    out = pd.DataFrame(rows)
    out["p_holm"] = np.nan
    for secondary in (False, True):
        m = out.key.str.contains("/") == secondary
        out.loc[m, "p_holm"] = stats.holm(out.loc[m, "p"])
    out["verdict_holm"] = np.where(out.p_holm < 1 - stats.LEVEL, out.verdict, "inconclusive")
    out["p"], out["p_holm"] = out.p.round(4), out.p_holm.round(4)
    return out[COLUMNS]
