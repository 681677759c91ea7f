"""The paper's findings as tests: each claim a paired comparison with a 95% interval and a
verdict (agrees / contradicts / inconclusive), on the per-seed frame of `summary.load`; and the
decision guide (which method to pick per finetuning mode and sparsity, with its interval).

    verdicts.findings(summary.load("published"))     # one row per claim
    verdicts.decision_guide(summary.cells(tidy))
"""

from __future__ import annotations

import pandas as pd

from . import stats, summary


def _trained(methods) -> list[str]:
    """Sparse methods trained at the standard budget (progressive + regularization, no extended arm)."""
    fam = summary.families()
    return [m for m in methods if fam.get(m) in ("progressive", "regularization") and m not in summary.EXTENDED]


def findings(tidy: pd.DataFrame, margin: float = 0.01, arch: str | None = None) -> pd.DataFrame:
    """The paper's findings, each a test with a verdict on the per-seed results `tidy` (columns
    finetune, arch, dataset, method, sparsity, seed, accuracy in 0..1; upstream_seed where present).
    Every comparison is paired (same task, seed, upstream seed and -- between methods -- sparsity)
    and families enter as their mean, never their best member (stats). Verdict: agrees /
    contradicts / inconclusive; estimate and its 95% interval in accuracy points, n tasks and pairs.
    1. sparse models match dense in linear transfer: trained sparse methods at 80% (their mean)
       minus dense, within +-`margin` on both sides;
    2. regularization methods transfer best with linear finetuning: regularization minus
       progressive family mean at 80% and 90%, > 0;
    3. progressive methods transfer best with full finetuning: progressive minus regularization, > 0;
    4. accuracy falls more with sparsity (80% -> 90%) in full finetuning than in linear: the drop
       (acc80 - acc90, mean over the methods both modes have) full minus linear, on the tasks both
       modes have, > 0;
    5. LTH-T collapses at >= 90% (full): LTH-T minus the other trained methods' mean at 90%, < 0.
    The extended-budget arm: RigL 5x minus RigL 1x (full), and RigL 5x minus dense_5x where the
    control exists -- outside the family comparisons."""
    d = tidy.copy()
    arch = arch or (d.arch.value_counts().index[0] if len(d) else None)
    d = d[d.arch == arch]
    methods = sorted(set(d.method))
    trained, prog, reg = (
        _trained(methods),
        [m for m in summary.members("progressive") if m in methods],
        [m for m in summary.members("regularization") if m in methods],
    )
    rows = []
    n_up = int(d.upstream_seed.nunique()) if "upstream_seed" in d and len(d) else 1
    caveat = "" if n_up > 1 else "; one upstream model per method: its training noise is not in the interval"

    def add(claim, test, e, direction, margin=0.0, note=""):
        v = stats.verdict(e, direction, margin)
        rows.append(
            {
                "finding": claim,
                "test": test,
                "verdict": v,
                "estimate": 100 * e.mean,
                "ci_low": 100 * e.low,
                "ci_high": 100 * e.high,
                "tasks": e.tasks,
                "pairs": e.pairs,
                "upstream_seeds": n_up,
                "evidence": e.text() + (f"; {note}" if note else "") + (caveat if e.tasks else ""),
            }
        )

    e = stats.estimate(
        stats.paired(
            d,
            {"method": trained, "sparsity": 0.8},
            {"method": "dense"},
            keys=("dataset", "seed", "upstream_seed"),
            finetune="linear",
        )
    )
    add(
        "sparse models match dense in linear transfer",
        f"mean of trained sparse methods at 80% minus dense, linear; inside +-{100 * margin:g} point",
        e,
        "equivalent",
        margin,
    )
    e = stats.estimate(stats.paired(d, {"method": reg}, {"method": prog}, finetune="linear", sparsity=[0.8, 0.9]))
    add(
        "regularization methods transfer best with linear finetuning",
        f"regularization ({', '.join(reg)}) minus progressive ({', '.join(prog)}) family mean, linear, 80/90%; > 0",
        e,
        "greater",
    )
    e = stats.estimate(stats.paired(d, {"method": prog}, {"method": reg}, finetune="full", sparsity=[0.8, 0.9]))
    add(
        "progressive methods transfer best with full finetuning",
        "progressive minus regularization family mean, full, 80/90%; > 0",
        e,
        "greater",
    )
    # 4: the drop from 80% to 90% per (finetune, method, task) on seed means (the seeds of the two
    # modes are different runs), averaged over the methods both modes have, paired per task
    wide80 = d[d.sparsity.isin([0.8, 0.9]) & d.method.isin(trained)]
    piv = wide80.pivot_table(index=["finetune", "method", "dataset"], columns="sparsity", values="accuracy")
    note = ""
    if {0.8, 0.9} <= set(piv.columns):
        drop = (piv[0.8] - piv[0.9]).dropna().rename("accuracy").reset_index()
        both = set(drop[drop.finetune == "full"].method) & set(drop[drop.finetune == "linear"].method)
        tasks = set(drop[drop.finetune == "full"].dataset) & set(drop[drop.finetune == "linear"].dataset)
        drop = drop[drop.method.isin(both) & drop.dataset.isin(tasks)]
        e = stats.estimate(stats.paired(drop, {"finetune": "full"}, {"finetune": "linear"}, keys=("dataset",)))
        for ft in ("full", "linear"):
            m = drop[drop.finetune == ft].groupby("dataset")["accuracy"].mean().mean()
            note += f"{'; ' if note else ''}mean drop {ft} {100 * m:+.2f} points" if pd.notna(m) else ""
    else:
        e = stats.Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    add(
        "accuracy falls with sparsity (80% -> 90%) more in full finetuning than in linear",
        "(acc 80% - acc 90%) full minus the same in linear, same methods and tasks; > 0",
        e,
        "greater",
        note=note,
    )
    others = [m for m in trained if m != "lth_t"]
    e = stats.estimate(stats.paired(d, {"method": "lth_t"}, {"method": others}, finetune="full", sparsity=0.9))
    e80 = stats.estimate(stats.paired(d, {"method": "lth_t"}, {"method": others}, finetune="full", sparsity=0.8))
    add(
        "LTH-T collapses at >= 90% sparsity (full finetuning)",
        "LTH-T minus the other trained methods' mean, full, 90%; < 0",
        e,
        "less",
        note=f"at 80%: {e80.text()}" if e80.tasks else "",
    )
    e = stats.estimate(stats.paired(d, {"method": "rigl_erk_5x"}, {"method": "rigl_erk_1x"}, finetune="full"))
    add(
        "extended budget: RigL 5x transfers better than RigL 1x (full finetuning)",
        "RigL 5x minus RigL 1x, full, every sparsity; > 0",
        e,
        "greater",
    )
    if "dense_5x" in methods:
        e = stats.estimate(
            stats.paired(
                d,
                {"method": "rigl_erk_5x", "sparsity": 0.8},
                {"method": "dense_5x"},
                keys=("dataset", "seed", "upstream_seed"),
                finetune="full",
            )
        )
        add(
            "extended budget: at the same budget, RigL 5x (80%) matches the dense_5x control (full)",
            f"RigL 5x at 80% minus dense_5x, full; inside +-{100 * margin:g} point",
            e,
            "equivalent",
            margin,
        )
    return pd.DataFrame(rows)


def decision_guide(c: pd.DataFrame, threshold: float = 0.05) -> pd.DataFrame:
    """Figure 1 from the data: per finetuning mode and sparsity, the method with the lowest mean
    relative increase in error over tasks (a selection: see table1_selected for its optimism), its
    family, the 95% t-interval of its alpha over tasks, and whether it matches dense: "yes" when
    the interval lies below `threshold` (alpha <= 5%), "no" when above it, else "unclear"."""
    a = summary.alphas(c)
    rows = []
    for (ft, arch, sp), g in a.groupby(["finetune", "arch", "sparsity"]):
        per = g.groupby("method")["alpha"]
        best = per.mean().idxmin()
        m, lo, hi = stats.t_interval(g[g.method == best]["alpha"])
        match = "yes" if hi <= threshold else "no" if lo > threshold else "unclear"
        rows.append(
            {
                "finetune": ft,
                "arch": arch,
                "sparsity": sp,
                "method": best,
                "family": summary.families().get(best),
                "alpha_mean": m,
                "alpha_ci_low": lo,
                "alpha_ci_high": hi,
                "tasks": int(per.count()[best]),
                "matches_dense": match,
            }
        )
    return pd.DataFrame(rows)
