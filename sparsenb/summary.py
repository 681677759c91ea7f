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
# families as the paper groups the methods (prune.METHODS says the same of ours; M-FAC is only in
# the released results). The extended-budget arm (RigL 5x, and our dense_5x control) is reported on
# its own, never inside a family comparison.
FAMILIES = {"gmp": "progressive", "woodfisher": "progressive", "mfac": "progressive", "acdc": "regularization",
            "str": "regularization", "rigl_erk_1x": "regularization", "rigl_erk_5x": "regularization",
            "lth_t": "lottery ticket", "structured": "structured", "dense": "dense", "dense_5x": "control"}
EXTENDED = ("rigl_erk_5x", "dense_5x")
CELL = ["finetune", "arch", "dataset", "method", "sparsity"]


def members(family: str) -> list[str]:
    """The methods of a family at the standard budget (the extended-budget arm left out)."""
    return [m for m, f in FAMILIES.items() if f == family and m not in EXTENDED]


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


def expected_cell_hash(profile: str, finetune: str, method: str, sparsity: float, dataset: str) -> str:
    """The cell hash a record of this cell has under the current configuration of `profile`."""
    from . import config, finetune as ft

    return results.cell_hash(ft.run_config(config.load(profile), finetune, method, float(sparsity), dataset, 0, 0))


def load_results(root=None, which: str | None = None) -> pd.DataFrame:
    """This repo's linear and full finetuning records as a tidy frame (accuracy in [0, 1]): only
    records made with the current configuration of their profile (their cell hash matches); the
    others are listed in `.attrs["excluded"]` ([{file, reason}]), never pooled. `which`: the accuracy
    field to report -- default the profile's `report` convention (mini: test at the epoch chosen
    on validation; paper: the paper code's best epoch)."""
    import json
    import warnings

    from . import config

    base = Path(root or config.load("mini")["results_root"])       # params' results_root (both profiles')
    rows, excluded, expected, report = [], [], {}, {}
    for nb, finetune in (("02_linear_ft", "linear"), ("03_full_ft", "full")):
        for path in sorted((base / nb).glob("*.json")):
            try:
                r = json.loads(path.read_text())
                cfg_run, profile = r["config"], r["profile"]
                key = (profile, finetune, r["method"], float(r["sparsity"]), r["dataset"])
                if key not in expected:
                    expected[key] = expected_cell_hash(*key)
                if profile not in report:
                    report[profile] = which or config.load(profile)["report"]
                acc = float(r[report[profile]])
            except Exception as e:  # noqa: BLE001 - a damaged record is named and skipped
                warnings.warn(f"skipped run record {path}: {type(e).__name__}: {e}", stacklevel=2)
                excluded.append({"file": str(path), "reason": f"unreadable ({type(e).__name__})"})
                continue
            if r.get("cell_hash", results.cell_hash(cfg_run)) != expected[key]:
                excluded.append({"file": str(path), "reason": "made with another configuration"})
                continue
            rows.append({"finetune": finetune, "arch": r["arch"], "dataset": r["dataset"], "method": r["method"],
                         "sparsity": float(r["sparsity"]), "seed": int(r["seed"]),
                         "upstream_seed": int(cfg_run.get("upstream_seed", 0)), "accuracy": acc,
                         "val_accuracy": r.get("val_accuracy"), "profile": profile})
    out = pd.DataFrame(rows, columns=CELL + ["seed", "upstream_seed", "accuracy", "val_accuracy", "profile"])
    out.attrs["excluded"] = excluded            # [{file, reason}]: a plain list (pandas compares attrs)
    return out


def load(source: str, root=None) -> pd.DataFrame:
    from .config import check_choice

    check_choice("source", source, ("published", "results"))
    return load_published() if source == "published" else load_results(root)


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over seeds per (finetune, arch, dataset, method, sparsity), in %, with
    the number of seeds; std is NaN (never 0) for a cell of one seed."""
    g = df.groupby(CELL)["accuracy"]
    out = g.agg(mean="mean", std="std", seeds="count").reset_index()
    out["mean"] *= 100
    out["std"] *= 100
    return out


def table1(c: pd.DataFrame, sparsities=(0.8, 0.9), arch: str | None = None) -> pd.DataFrame:
    """Table 1: per finetune and dataset, the dense row (sparsity 0) and, at each sparsity, the best
    sparse method's mean +- std. Columns finetune, sparsity, dataset, method, mean, std."""
    arch = arch or c.arch.iloc[0]
    c = c[c.arch == arch]
    dense = c[c.method == "dense"]
    sparse = c[(c.method != "dense") & c.sparsity.isin(sparsities)]
    best = sparse.loc[sparse.groupby(["finetune", "sparsity", "dataset"])["mean"].idxmax()]
    out = pd.concat([dense, best])[["finetune", "sparsity", "dataset", "method", "mean", "std", "seeds"]]
    return out.sort_values(["finetune", "sparsity", "dataset"]).reset_index(drop=True)


def table1_selected(df: pd.DataFrame, sparsities=(0.8, 0.9), arch: str | None = None) -> pd.DataFrame:
    """Table 1 without the best-of-many optimism: per (finetune, sparsity, dataset) the sparse
    method is chosen without the test results it is reported on -- on validation accuracy where the
    records have it, else on held-out seeds (each seed's test accuracy is that of the method that
    is best on the *other* seeds) -- and reported on test beside the best-of-all-methods value.
    Columns: finetune, sparsity, dataset, chosen_by, selected (mean %), best_of_all (%), optimism."""
    arch = arch or df.arch.iloc[0]
    d = df[(df.arch == arch) & ~df.method.isin(["dense", "dense_5x"]) & df.sparsity.isin(sparsities)]
    rows = []
    for (ft, sp, ds), g in d.groupby(["finetune", "sparsity", "dataset"]):
        means = g.groupby("method")["accuracy"].mean()
        if "val_accuracy" in g and g["val_accuracy"].notna().all():
            chosen = g.groupby("method")["val_accuracy"].mean().idxmax()
            selected, how = means[chosen], "validation"
        else:
            per_seed = g.pivot_table(index="seed", columns="method", values="accuracy").dropna(axis=1)
            if len(per_seed) < 2 or per_seed.shape[1] == 0:
                continue
            picks = [per_seed.drop(index=s).mean().idxmax() for s in per_seed.index]
            selected, how = float(np.mean([per_seed.loc[s, m] for s, m in zip(per_seed.index, picks)])), "held-out seeds"
        rows.append({"finetune": ft, "sparsity": sp, "dataset": ds, "chosen_by": how, "selected": 100 * selected,
                     "best_of_all": 100 * means.max(), "optimism": 100 * (means.max() - selected)})
    return pd.DataFrame(rows, columns=["finetune", "sparsity", "dataset", "chosen_by", "selected", "best_of_all",
                                       "optimism"])


def _fmt_cell(m, s, n) -> str:
    if pd.isna(m):
        return ""
    n = int(n) if pd.notna(n) else 0
    return f"{m:.1f} (1 seed)" if n <= 1 or pd.isna(s) else f"{m:.1f} ± {s:.1f} (n={n})"


def wide(t: pd.DataFrame, index=("finetune", "sparsity")) -> pd.DataFrame:
    """A long table (mean, std, seeds per dataset) as the paper prints it: datasets as columns;
    each cell "mean ± std (n=seeds)", or "mean (1 seed)" where there is no spread to show."""
    t = t.copy()
    seeds = t["seeds"] if "seeds" in t else pd.Series(2, index=t.index)
    t["cell"] = [_fmt_cell(m, s, n) for m, s, n in zip(t["mean"], t["std"], seeds)]
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


def _trained(methods) -> list[str]:
    """Sparse methods trained at the standard budget (progressive + regularization, no extended arm)."""
    return [m for m in methods if FAMILIES.get(m) in ("progressive", "regularization") and m not in EXTENDED]


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
    from . import stats

    d = tidy.copy()
    arch = arch or (d.arch.value_counts().index[0] if len(d) else None)
    d = d[d.arch == arch]
    methods = sorted(set(d.method))
    trained, prog, reg = _trained(methods), [m for m in members("progressive") if m in methods], \
        [m for m in members("regularization") if m in methods]
    rows = []
    n_up = int(d.upstream_seed.nunique()) if "upstream_seed" in d and len(d) else 1
    caveat = "" if n_up > 1 else "; one upstream model per method: its training noise is not in the interval"

    def add(claim, test, e, direction, margin=0.0, note=""):
        v = stats.verdict(e, direction, margin)
        rows.append({"finding": claim, "test": test, "verdict": v, "estimate": 100 * e.mean, "ci_low": 100 * e.low,
                     "ci_high": 100 * e.high, "tasks": e.tasks, "pairs": e.pairs, "upstream_seeds": n_up,
                     "evidence": e.text() + (f"; {note}" if note else "") + (caveat if e.tasks else "")})

    e = stats.estimate(stats.paired(d, {"method": trained, "sparsity": 0.8}, {"method": "dense"},
                                    keys=("dataset", "seed", "upstream_seed"), finetune="linear"))
    add("sparse models match dense in linear transfer",
        f"mean of trained sparse methods at 80% minus dense, linear; inside +-{100 * margin:g} point", e,
        "equivalent", margin)
    e = stats.estimate(stats.paired(d, {"method": reg}, {"method": prog}, finetune="linear", sparsity=[0.8, 0.9]))
    add("regularization methods transfer best with linear finetuning",
        f"regularization ({', '.join(reg)}) minus progressive ({', '.join(prog)}) family mean, linear, 80/90%; > 0",
        e, "greater")
    e = stats.estimate(stats.paired(d, {"method": prog}, {"method": reg}, finetune="full", sparsity=[0.8, 0.9]))
    add("progressive methods transfer best with full finetuning",
        "progressive minus regularization family mean, full, 80/90%; > 0", e, "greater")
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
    add("accuracy falls with sparsity (80% -> 90%) more in full finetuning than in linear",
        "(acc 80% - acc 90%) full minus the same in linear, same methods and tasks; > 0", e, "greater", note=note)
    others = [m for m in trained if m != "lth_t"]
    e = stats.estimate(stats.paired(d, {"method": "lth_t"}, {"method": others}, finetune="full", sparsity=0.9))
    e80 = stats.estimate(stats.paired(d, {"method": "lth_t"}, {"method": others}, finetune="full", sparsity=0.8))
    add("LTH-T collapses at >= 90% sparsity (full finetuning)",
        "LTH-T minus the other trained methods' mean, full, 90%; < 0", e, "less",
        note=f"at 80%: {e80.text()}" if e80.tasks else "")
    e = stats.estimate(stats.paired(d, {"method": "rigl_erk_5x"}, {"method": "rigl_erk_1x"}, finetune="full"))
    add("extended budget: RigL 5x transfers better than RigL 1x (full finetuning)",
        "RigL 5x minus RigL 1x, full, every sparsity; > 0", e, "greater")
    if "dense_5x" in methods:
        e = stats.estimate(stats.paired(d, {"method": "rigl_erk_5x", "sparsity": 0.8}, {"method": "dense_5x"},
                                        keys=("dataset", "seed", "upstream_seed"), finetune="full"))
        add("extended budget: at the same budget, RigL 5x (80%) matches the dense_5x control (full)",
            f"RigL 5x at 80% minus dense_5x, full; inside +-{100 * margin:g} point", e, "equivalent", margin)
    return pd.DataFrame(rows)


def decision_guide(c: pd.DataFrame, threshold: float = 0.05) -> pd.DataFrame:
    """Figure 1 from the data: per finetuning mode and sparsity, the method with the lowest mean
    relative increase in error over tasks (a selection: see table1_selected for its optimism), its
    family, the 95% t-interval of its alpha over tasks, and whether it matches dense: "yes" when
    the interval lies below `threshold` (alpha <= 5%), "no" when above it, else "unclear"."""
    from . import stats

    a = alphas(c)
    rows = []
    for (ft, arch, sp), g in a.groupby(["finetune", "arch", "sparsity"]):
        per = g.groupby("method")["alpha"]
        best = per.mean().idxmin()
        m, lo, hi = stats.t_interval(g[g.method == best]["alpha"])
        match = "yes" if hi <= threshold else "no" if lo > threshold else "unclear"
        rows.append({"finetune": ft, "arch": arch, "sparsity": sp, "method": best, "family": FAMILIES.get(best),
                     "alpha_mean": m, "alpha_ci_low": lo, "alpha_ci_high": hi, "tasks": int(per.count()[best]),
                     "matches_dense": match})
    return pd.DataFrame(rows)


def write(source: str, out_dir, root=None, arch: str | None = None) -> dict:
    """Every table (CSV + Markdown) and figure (PNG) of the summary under `out_dir`; returns paths."""
    from . import data, plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tidy = load(source, root)
    if not arch and len(tidy):
        arch = tidy.arch.value_counts().index[0]              # the main architecture of the source
    tidy = tidy[tidy.arch == arch] if arch else tidy
    c = cells(tidy)
    paths = {}
    if c.empty:
        return paths
    t1 = table1(c)
    tables = {"table1": t1, "table1_wide": wide(t1).reset_index(), "table1_selected": table1_selected(tidy),
              "alpha": alpha_summary(c), "findings": findings(tidy), "decision_guide": decision_guide(c)}
    excluded = tidy.attrs.get("excluded")
    if excluded:
        tables["excluded_records"] = pd.DataFrame(excluded, columns=["file", "reason"])
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
