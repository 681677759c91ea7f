"""07_summary: the paper's tables and figures from run records -- ours (`source="results"`) or the
paper's released per-seed results (`source="published"`, shipped in sparsenb/reference_results/).

    df = summary.load("published")          # tidy: finetune, arch, dataset, method, sparsity, seed, accuracy
    cells = summary.cells(df)               # mean and std over seeds per cell, accuracy in %
    summary.table1(cells)                   # best sparse method per (finetune, sparsity, dataset) + dense
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics, results

REFERENCE = Path(__file__).resolve().parent / "reference_results"
PUBLISHED_FILES = {("linear", "resnet50"): "linear_transfer_results.csv",
                   ("full", "resnet50"): "full_transfer_results.csv",
                   ("linear", "mobilenet_v1"): "linear_mobilenet_transfer_results.csv",
                   ("full", "mobilenet_v1"): "full_mobilenet_transfer_results.csv"}
DATASET_NAMES = {"SUN": "sun397", "birds": "birdsnap"}      # the paper repo's keys -> ours
METHOD_NAMES = {"Dense": "dense", "AC/DC": "acdc", "LTH-T": "lth_t", "RigL ERK 1x": "rigl_erk_1x",
                "RigL ERK 5x": "rigl_erk_5x", "STR": "str", "WoodFisher": "woodfisher", "GMP": "gmp",
                "M-FAC": "mfac"}
FAMILIES = {"gmp": "progressive", "woodfisher": "progressive", "mfac": "progressive", "acdc": "regularization",
            "str": "regularization", "rigl_erk_1x": "regularization", "rigl_erk_5x": "regularization",
            "lth_t": "lottery ticket", "structured": "structured", "dense": "dense"}
CELL = ["finetune", "arch", "dataset", "method", "sparsity"]


def load_published() -> pd.DataFrame:
    """The paper's released per-seed accuracies as a tidy frame (accuracy in [0, 1])."""
    frames = []
    for (finetune, arch), fname in PUBLISHED_FILES.items():
        df = pd.read_csv(REFERENCE / fname)
        df = df.loc[:, [c for c in df.columns if not c.startswith("Unnamed")]]   # trailing empty column
        frames.append(pd.DataFrame({
            "finetune": finetune, "arch": arch, "dataset": df.dset.map(lambda d: DATASET_NAMES.get(d, d)),
            "method": df.model.map(METHOD_NAMES), "sparsity": df.sparsity.astype(float),
            "seed": df.seed.str.replace("seed_", "").astype(int), "accuracy": df.val_acc.astype(float)}))
    return pd.concat(frames, ignore_index=True)


def load_results(root=None, which: str = "final") -> pd.DataFrame:
    """This repo's linear and full finetuning records in the same tidy shape (`which`: the final or
    the best epoch's accuracy)."""
    frames = []
    for nb, finetune in (("02_linear_ft", "linear"), ("03_full_ft", "full")):
        df = results.load(nb, root)
        if len(df):
            frames.append(pd.DataFrame({"finetune": finetune, "arch": df.arch, "dataset": df.dataset,
                                        "method": df.method, "sparsity": df.sparsity.astype(float),
                                        "seed": df.seed.astype(int), "accuracy": df[which].astype(float),
                                        "profile": df.profile}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CELL + ["seed", "accuracy"])


def load(source: str, root=None) -> pd.DataFrame:
    from .config import check_choice

    check_choice("source", source, ("published", "results"))
    return load_published() if source == "published" else load_results(root)


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and (sample) std over seeds per (finetune, arch, dataset, method, sparsity), in %."""
    g = df.groupby(CELL)["accuracy"]
    out = g.agg(mean="mean", std="std", seeds="count").reset_index()
    out["mean"] *= 100
    out["std"] = (out["std"].fillna(0.0)) * 100
    return out


def table1(c: pd.DataFrame, sparsities=(0.8, 0.9), arch: str | None = None) -> pd.DataFrame:
    """Table 1: per finetune and dataset, the dense row (sparsity 0) and, at each sparsity, the best
    sparse method's mean +- std. Columns finetune, sparsity, dataset, method, mean, std."""
    arch = arch or c.arch.iloc[0]
    c = c[c.arch == arch]
    dense = c[c.method == "dense"]
    sparse = c[(c.method != "dense") & c.sparsity.isin(sparsities)]
    best = sparse.loc[sparse.groupby(["finetune", "sparsity", "dataset"])["mean"].idxmax()]
    out = pd.concat([dense, best])[["finetune", "sparsity", "dataset", "method", "mean", "std"]]
    return out.sort_values(["finetune", "sparsity", "dataset"]).reset_index(drop=True)


def wide(t: pd.DataFrame, index=("finetune", "sparsity"), fmt: str = "{:.1f} ± {:.1f}") -> pd.DataFrame:
    """A long table (mean, std per dataset) as the paper prints it: datasets as columns."""
    t = t.copy()
    t["cell"] = [fmt.format(m, s) for m, s in zip(t["mean"], t["std"])]
    return t.pivot_table(index=list(index), columns="dataset", values="cell", aggfunc="first")


def tables_c(c: pd.DataFrame, finetune: str) -> pd.DataFrame:
    """Tables C.1 (linear) / C.2 (full): every method x sparsity x task, mean ± std over seeds."""
    return wide(c[c.finetune == finetune], index=("arch", "method", "sparsity"))


def alphas(c: pd.DataFrame) -> pd.DataFrame:
    """Relative increase in error of every sparse cell against dense, per task (from cell means)."""
    d = c.rename(columns={"mean": "accuracy"}).assign(accuracy=lambda x: x.accuracy / 100)
    return metrics.alpha_table(d)


def alpha_summary(c: pd.DataFrame) -> pd.DataFrame:
    return metrics.alpha_summary(alphas(c), by=("finetune", "arch", "method", "sparsity"))


def difficulty(c: pd.DataFrame) -> pd.DataFrame:
    """Task difficulty (Sec. 3.3): dense full minus dense linear accuracy, per (arch, dataset)."""
    d = c[c.method == "dense"].pivot_table(index=["arch", "dataset"], columns="finetune", values="mean")
    if not {"full", "linear"} <= set(d.columns):
        return pd.DataFrame(columns=["arch", "dataset", "difficulty"])
    d = d.dropna(subset=["full", "linear"])
    d["difficulty"] = d["full"] - d["linear"]
    return d.reset_index()[["arch", "dataset", "difficulty"]]


def findings(c: pd.DataFrame, kinds: dict[str, str] | None = None) -> pd.DataFrame:
    """The paper's main findings, each checked on `c` (computed, with the evidence):
    1. sparse matches dense in linear transfer (best sparse at 80% within 1 point of dense, mean over tasks);
    2. regularization methods are best for linear (lowest mean alpha at 80% and 90%);
    3. progressive methods are best for full (lowest mean alpha at 80% and 90%);
    4. accuracy falls with sparsity (80% -> 90%) in full finetuning, less so in linear;
    5. LTH-T collapses at >= 90% (full finetuning: its alpha at 90% is the worst and > 2x its 80%)."""
    s = alpha_summary(c)
    s["family"] = s.method.map(FAMILIES)
    rows = []

    def add(claim, agrees, evidence):
        rows.append({"finding": claim, "agrees": None if agrees is None else bool(agrees), "evidence": evidence})

    t1 = table1(c)
    lin = t1[t1.finetune == "linear"]
    if len(lin):
        dense = lin[lin.sparsity == 0].set_index("dataset")["mean"]
        best80 = lin[lin.sparsity == 0.8].set_index("dataset")["mean"]
        gap = (best80 - dense.reindex(best80.index)).mean()
        add("sparse models match dense in linear transfer", gap > -1.0,
            f"best sparse at 80% minus dense, mean over {len(best80)} tasks: {gap:+.2f} points")
    for ft, fam, claim in (("linear", "regularization", "regularization methods transfer best with linear finetuning"),
                           ("full", "progressive", "progressive methods transfer best with full finetuning")):
        sub = s[(s.finetune == ft) & s.sparsity.isin([0.8, 0.9]) & s.family.isin(["progressive", "regularization"])]
        if sub.empty:
            add(claim, None, f"no {ft} results of both families")
            continue
        fam_alpha = sub.groupby(["sparsity", "family"]).alpha_mean.min().unstack()
        winners = fam_alpha.idxmin(axis=1)
        add(claim, (winners == fam).all() if fam in fam_alpha.columns else False,
            "; ".join(f"{sp:.0%}: best {w} (alpha {fam_alpha.loc[sp].min():+.3f})" for sp, w in winners.items()))
    step = {}
    for ft in ("full", "linear"):
        sub = s[(s.finetune == ft) & (s.method != "lth_t")]
        both = sub.pivot_table(index="method", columns="sparsity", values="alpha_mean")
        if {0.8, 0.9} <= set(both.columns):
            both = both[[0.8, 0.9]].dropna()
            step[ft] = float((both[0.9] - both[0.8]).mean())
    if len(step) == 2:
        add("accuracy falls with sparsity (80% -> 90%) in full finetuning, less so in linear",
            step["full"] > 0 and step["full"] > step["linear"],
            f"mean change of alpha from 80% to 90% over methods: full {step['full']:+.3f}, "
            f"linear {step['linear']:+.3f}")
    lt = s[(s.finetune == "full") & (s.method == "lth_t")].set_index("sparsity").alpha_mean
    if {0.8, 0.9} <= set(lt.index):
        worst90 = s[(s.finetune == "full") & (s.sparsity == 0.9)].alpha_mean.max()
        add("LTH-T collapses at >= 90% sparsity (full finetuning)",
            lt[0.9] >= worst90 - 1e-12 and lt[0.9] > 2 * max(lt[0.8], 1e-3),
            f"LTH-T alpha: 80% {lt[0.8]:+.3f}, 90% {lt[0.9]:+.3f} (worst at 90%: {worst90:+.3f})")
    else:
        add("LTH-T collapses at >= 90% sparsity (full finetuning)", None, "no LTH-T full finetuning results")
    return pd.DataFrame(rows)


def decision_guide(c: pd.DataFrame) -> pd.DataFrame:
    """Figure 1 from the data: for each finetuning mode and sparsity, the method with the lowest mean
    relative increase in error, its family, and whether it matches dense (alpha <= 0.05)."""
    s = alpha_summary(c)
    best = s.loc[s.groupby(["finetune", "arch", "sparsity"]).alpha_mean.idxmin()].copy()
    best["family"] = best.method.map(FAMILIES)
    best["matches_dense"] = best.alpha_mean <= 0.05
    return best[["finetune", "arch", "sparsity", "method", "family", "alpha_mean", "alpha_se", "matches_dense"]]


def write(source: str, out_dir, root=None, arch: str | None = None) -> dict:
    """Every table (CSV + Markdown) and figure (PNG) of the summary under `out_dir`; returns paths."""
    from . import data, plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = cells(load(source, root))
    if arch:
        c = c[c.arch == arch]
    elif len(c):
        c = c[c.arch == c.arch.value_counts().index[0]]       # the main architecture of the source
    paths = {}
    if c.empty:
        return paths
    t1 = table1(c)
    tables = {"table1": t1, "table1_wide": wide(t1).reset_index(), "alpha": alpha_summary(c),
              "findings": findings(c), "decision_guide": decision_guide(c)}
    for ft, name in (("linear", "tableC1_linear"), ("full", "tableC2_full")):
        if (c.finetune == ft).any():
            tables[name] = tables_c(c, ft).reset_index()
    for name, t in tables.items():
        t.to_csv(out_dir / f"{name}.csv", index=False)
        (out_dir / f"{name}.md").write_text(t.to_markdown(index=False))
        paths[name] = out_dir / f"{name}.csv"
    kinds = {n: data.info(n).kind for n in set(c.dataset) if n in data.REGISTRY}
    sparsity = 0.8 if (c.sparsity == 0.8).any() else sorted(c.sparsity.unique())[-1]
    # as in the paper, LTH-T (designed for full finetuning) is left out of the linear-finetuning plots
    no_lth_linear = lambda t: t[~((t.finetune == "linear") & (t.method == "lth_t"))]  # noqa: E731
    plots.figure2(no_lth_linear(c), no_lth_linear(tables["alpha"]), sparsity, path=out_dir / "figure2.png")
    paths["figure2"] = out_dir / "figure2.png"
    d = difficulty(c)
    if len(d):
        plots.figure3(no_lth_linear(alphas(c)), d, kinds, path=out_dir / "figure3.png")
        paths["figure3"] = out_dir / "figure3.png"
    return paths
