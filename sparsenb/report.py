"""Everything 07_summary writes for one source (the paper's released results or this repo's
records): Table 1 (best and selected), Tables C.1/C.2, alphas, the findings with their verdicts,
the decision guide, Figures 2 and 3, and the list of records left out.

    report.write("results", out_dir)      # {name: path} of every table and figure
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from . import config, data, files, plots, prune, summary, verdicts

PRODUCTS = (
    "table1",
    "table1_wide",
    "table1_selected",
    "alpha",
    "findings",
    "decision_guide",
    "excluded_records",
    "tableC1_linear",
    "tableC2_full",
    "figure2",
    "figure3",
    "accuracy_linear",
    "accuracy_full",
    "table3_upstream",
    "budget_curve",
    "budget_curve_plot",
    "control_gaps",
    "transfer_gain",
)  # what a summary may write, as <name>.csv + .md or <name>.png

STD = "± is the sample standard deviation over seeds; (n=k): the cell's seeds"
BOLD = (
    "**bold**: the best mean of its column{group}, and every cell whose mean ± std overlaps it "
    "(as the paper's Table 1 highlights)"
)
HEADERS = {  # name -> (title, what the numbers are)
    "table1": ("Table 1, long form: the best sparse method per task vs dense", f"accuracy %; {STD}"),
    "table1_wide": ("Table 1: best sparse transfer at 80% and 90% vs dense", f"accuracy %, mean ± std; {STD}; "
                    + BOLD.format(group=" within its finetuning mode")),
    "table1_selected": ("Table 1 with the method chosen without its test results",
                        "test accuracy %; `selected`: the method chosen on validation accuracy, or on held-out seeds; "
                        "`best_of_all`: Table 1's best-of-all-methods; optimism = best_of_all − selected (points)"),
    "alpha": ("Relative increase in error vs dense", "alpha = (error_sparse − error_dense) / error_dense in %, "
              "mean over tasks; alpha_se: its standard error over tasks (95% CI: mean ± t(tasks − 1) · se)"),
    "findings": ("The paper's findings as tests", "estimate and its 95% interval [ci_low, ci_high] in `unit`; "
                 "p: two-sided, raw and Holm-adjusted over the findings"),
    "decision_guide": ("Figure 1 from the data: which method to pick", "alpha_pct: relative increase in error "
                       "vs dense (%) of the chosen method on the results not used to choose it, 95% interval "
                       "[alpha_pct_low, alpha_pct_high] over tasks"),
    "excluded_records": ("Records left out of this summary", "one row per record file, with the reason"),
    "table3_upstream": ("Table 3: the upstream reference set, each model beside its budget-matched control",
                        "top-1 % on the upstream task (test; val_top1: validation), mean over upstream seeds, "
                        "_se: its standard error, n: seeds; gap_to_control: top-1 minus its control's, paired "
                        "by seed (points); off-target models (> 1.5 points from their sparsity) left out"),
    "budget_curve": ("Budget -> transfer: the dense-like models by upstream budget",
                     "transfer accuracy %, mean over tasks x upstream seeds, 95% interval [low, high] over both "
                     "(stats.crossed; it holds the tasks' spread); gain: minus dense at D (points), paired on "
                     "task and seeds, 95% interval [gain_low, gain_high] over both; epochs: upstream training "
                     "from random weights"),
    "transfer_gain": ("Is transfer real? The dense upstream model minus random_init, per task",
                      "transfer accuracy %, mean over upstream seeds; gain = dense − random_init (the same "
                      "architecture at the upstream seed's initialisation, finetuned alike), points, paired by "
                      "upstream seed; needed: the least gain params `transfer_is_real` asks of every task"),
    "control_gaps": ("Each sparse model minus its budget-matched control",
                     "transfer accuracy, points: gap = sparse − its control (the same run at target sparsity 0), "
                     "literal = sparse − dense at D (the paper's contrast); mean over tasks x upstream seeds "
                     "of the seed-paired difference, 95% interval [low, high] over both (stats.crossed; where "
                     "`upstream` is 1 the interval is over tasks only and misses upstream noise)"),
    "tableC1_linear": ("Table C.1: linear finetuning, every method × sparsity × task",
                       f"accuracy %, mean ± std; {STD}; " + BOLD.format(group=" at its sparsity")),
    "tableC2_full": ("Table C.2: full finetuning, every method × sparsity × task",
                     f"accuracy %, mean ± std; {STD}; " + BOLD.format(group=" at its sparsity")),
}  # fmt: skip


def is_demo(overrides: dict | None) -> bool:
    """True for runs at `make demo`'s settings (`overrides` holds params/mini.yaml `demo.overrides`):
    a slice of the study on the reference set's first upstream seed, a demo, not evidence."""
    try:
        demo = config.load("mini")["demo"]["overrides"]
    except KeyError:
        return False
    current = overrides if isinstance(overrides, dict) else {}
    return bool(demo) and all(current.get(k) == v for k, v in dict(demo).items())


def folder(source: str, tidy, overrides: dict | None = None) -> Path:
    """Where a summary goes: outputs/summary/<label> (`summary.select`'s label); a demo's summary
    under outputs/cache/demo/summary (with the demo's records, never beside the study's); with any
    other overrides, beside that run's records: outputs/cache/overrides/<slug>/summary/<label>."""
    from . import paths

    label = tidy.label or source
    if source == "results" and is_demo(overrides):
        return paths.output("cache", "demo", "summary" + label[len("results") :])
    if overrides:
        return paths.output("cache", "overrides", paths.slug(overrides), "summary", label)
    return paths.output("summary", label)


def source_title(source: str, tidy=None, overrides: dict | None = None) -> str:
    """What a summary's numbers are, for every title and file header: the released results, this
    repo's records, or a demo's."""
    sel = (tidy.selection or source).split(";")[0] if tidy is not None else source
    sel = sel.split(":", 1)[-1].strip()
    if source == "published":
        return f"the paper's released results: {sel}"
    regime = _regime(tidy, overrides)
    if tidy is not None and tidy.missing:
        regime += f"; INCOMPLETE: {len(tidy.missing)} runs of the study grid have no record"
    if is_demo(overrides):
        return f"DEMO (a slice of the study, first upstream seed), not evidence: {sel}{regime}"
    return f"this repo's records: {sel}{regime}"


def _regime(tidy, overrides: dict | None) -> str:
    """ "; <the profile's regime>" for records of a profile that says what its results describe."""
    from . import profiles

    if tidy is None or "profile" not in tidy.frame or not len(tidy.frame):
        return ""
    name = tidy.frame.profile.iloc[0]
    text = profiles.get(name).regime(config.load(name, overrides)) if name in profiles.PROFILES else ""
    return f"; {text}" if text else ""


def write(
    source: str, out_dir, root=None, arch: str | None = None, profile: str | None = None, overrides: dict | None = None
) -> dict:
    """Every table (CSV + Markdown) and figure (PNG) of the summary of one profile and architecture
    (`summary.select`) under `out_dir`, and the list of records left out; returns {name: path}. The
    folder is written whole: a table or figure an earlier summary wrote that this one does not
    (no runs, no records left out now, ...) is removed (`Written.removed`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tidy = summary.select(summary.load(source, root, overrides, profile), source, profile, arch)
    c = summary.cells(tidy.frame)
    tables = _tables(tidy.frame, c, source) if len(c) else {}
    excluded = tidy.excluded
    if excluded:
        tables["excluded_records"] = pd.DataFrame(excluded, columns=["file", "reason"])
    tables.update(_upstream_tables(source, tidy, overrides) if len(c) else {})
    paths = Written(out_dir)
    title = source_title(source, tidy, overrides)
    for name, t in tables.items():
        files.write_csv(out_dir / f"{name}.csv", t)
        files.write_text(out_dir / f"{name}.md", markdown(name, t, title, _bold(name, c)))
        paths[name] = out_dir / f"{name}.csv"
    if len(c):
        paths.update(_figures(c, tables["alpha"], out_dir, title))
    if "budget_curve" in tables and len(tables["budget_curve"]):
        plots.plt.close(plots.budget_curve(tables["budget_curve"], path=out_dir / "budget_curve_plot.png", title=title))
        paths["budget_curve_plot"] = out_dir / "budget_curve_plot.png"
    for name in PRODUCTS:  # what an earlier summary wrote and this one does not
        for suffix in (".csv", ".md", ".png"):
            if name not in paths and (out_dir / f"{name}{suffix}").exists():
                files.remove(out_dir / f"{name}{suffix}")
                paths.removed.append(f"{name}{suffix}")
    return paths


class Written(dict):
    """{name: path} of what a summary wrote; `removed`: the files of an earlier summary it deleted."""

    def __init__(self, out_dir: Path):
        super().__init__()
        self.out_dir, self.removed = out_dir, []

    def describe(self) -> str:
        """One line: what was written where, and what was removed."""
        wrote = ", ".join(p.name for p in self.values()) or "nothing (no runs to summarise)"
        gone = f"; removed, no longer produced: {', '.join(self.removed)}" if self.removed else ""
        where = self.out_dir.relative_to(config.ROOT) if self.out_dir.is_relative_to(config.ROOT) else self.out_dir
        return f"wrote under {where}: {wrote}{gone}"


def markdown(name: str, t: pd.DataFrame, source: str, bold=None, header: tuple[str, str] | None = None) -> str:
    """A table as Markdown under a header that says what it is, where its numbers come from and
    what "±" and bold mean; numbers rounded as the paper prints them (0.1; p to 2 significant
    digits; alpha in %). `bold`: a boolean frame aligned with `t` (the wide tables' marked cells);
    `header`: (title, what) for a table that is not one of this summary's (`HEADERS`)."""
    title, what = header or HEADERS.get(name, (name, ""))
    t = t.copy()
    for col in t.columns:
        v = t[col]
        if col in ("alpha_mean", "alpha_se"):
            t[col] = (100 * v).map(lambda x: f"{x:.1f}")
            t = t.rename(columns={col: f"{col} (%)"})
        elif col in ("p", "p_holm"):
            t[col] = v.map(lambda x: "" if pd.isna(x) else "< 0.001" if x < 0.001 else f"{x:.2g}")
        elif col == "sparsity":
            t[col] = v.map(lambda x: f"{x:.0%}")
        elif pd.api.types.is_float_dtype(v):
            t[col] = v.map(lambda x: "" if pd.isna(x) else f"{x:.1f}")
    if bold is not None:
        for col in bold.columns:
            if col in t:
                t[col] = [f"**{x}**" if b and x else x for x, b in zip(t[col], bold[col].fillna(False))]
    body = t.to_markdown(index=False, disable_numparse=True)
    return f"# {title}\n\nSource: {source}.\n{what}.\n\n{body}\n"


def _bold(name: str, c: pd.DataFrame):
    """For the wide tables, which cells to bold: per dataset column, the best mean of each group
    (finetuning mode in Table 1, sparsity in Tables C) and every cell whose mean ± std reaches it."""
    if name == "table1_wide":
        long, index, group = summary.table1(c), ["finetune", "sparsity"], ["finetune", "dataset"]
    elif name in ("tableC1_linear", "tableC2_full"):
        ft = "linear" if name == "tableC1_linear" else "full"
        long, index, group = c[c.finetune == ft], ["arch", "method", "sparsity"], ["sparsity", "dataset"]
    else:
        return None
    long = long.assign(hi=long["mean"] + long["std"].fillna(0), lo=long["mean"] - long["std"].fillna(0))
    best = long.loc[long.groupby(group)["mean"].idxmax()].set_index(group)["lo"]
    mark = long.hi >= pd.Series([best[tuple(k)] for k in long[group].to_numpy()], index=long.index)
    grid = long.assign(mark=mark).pivot_table(index=index, columns="dataset", values="mark", aggfunc="first")
    return grid.reset_index(drop=True).fillna(False).astype(bool)


def _tables(tidy: pd.DataFrame, c: pd.DataFrame, source: str = "published") -> dict:
    found = verdicts.findings(tidy)
    tables = {
        "table1": summary.table1(c),
        "table1_selected": summary.table1_selected(tidy),
        "alpha": summary.alpha_summary(c),
        "findings": found if source == "published" else verdicts.vs_paper(found, _paper_findings()),
        "decision_guide": verdicts.decision_guide(tidy),
    }
    tables["table1_wide"] = summary.wide(tables["table1"]).reset_index()
    for ft, name in (("linear", "tableC1_linear"), ("full", "tableC2_full")):
        if (c.finetune == ft).any():
            tables[name] = summary.tables_c(c, ft).reset_index()
    return tables


@functools.lru_cache(maxsize=1)
def _paper_findings() -> pd.DataFrame:
    """The findings on the paper's released results (ResNet50): each finding's own estimate."""
    return verdicts.findings(summary.select(summary.load("published"), "published").frame)


def _upstream_tables(source: str, tidy, overrides: dict | None) -> dict:
    """A profile that makes its upstream models (mini): Table 3 of its reference set (each model
    beside its budget-matched control) and the budget -> transfer curve of its dense-like models."""
    from . import analysis, profiles

    profile = tidy.frame.profile.iloc[0] if "profile" in tidy.frame else ""
    if source == "published" or profile not in profiles.PROFILES or not profiles.get(profile).makes_upstream:
        return {}
    cfg = config.load(profile, overrides)
    return {
        "table3_upstream": analysis.reference_table(cfg),
        "budget_curve": summary.budget_curve(tidy.frame, cfg),
        "control_gaps": summary.control_gaps(tidy.frame),
        "transfer_gain": summary.transfer_gain(tidy.frame, cfg.get("transfer_is_real")),
    }


def _reported(t: pd.DataFrame) -> pd.DataFrame:
    """The rows of the finetuning modes the paper reports their method in: as in the paper, LTH-T
    (designed for full finetuning) is left out of the linear-finetuning plots (prune.reported_in)."""
    keep = [prune.reported_in(m, ft) for m, ft in zip(t.method, t.finetune)]
    return t[pd.Series(keep, index=t.index, dtype=bool)]


def _figures(c: pd.DataFrame, alpha: pd.DataFrame, out_dir: Path, title: str = "") -> dict:
    import matplotlib.pyplot as plt

    kinds = {n: data.info(n).kind for n in set(c.dataset) if n in data.REGISTRY}
    sparsity = 0.8 if (c.sparsity == 0.8).any() else sorted(c.sparsity.unique())[-1]
    figs = {"figure2": lambda p: plots.figure2(_reported(c), _reported(alpha), sparsity, path=p, title=title)}
    d = summary.difficulty(c)
    if len(d):
        figs["figure3"] = lambda p: plots.figure3(_reported(summary.alphas(c)), d, kinds, path=p, title=title)
    left = sorted(m for m in set(c[c.finetune == "linear"].method) if not prune.reported_in(m, "linear"))
    lth = f"; {', '.join(left)} left out as in the paper (its rows: Table C.1)" if left else ""
    for ft, note in (("linear", lth), ("full", "")):
        if (c.finetune == ft).any():
            figs[f"accuracy_{ft}"] = lambda p, ft=ft, t=title + note: plots.accuracy_vs_sparsity(
                _reported(c), ft, path=p, title=t
            )
    out = {}
    for name, draw in figs.items():
        plt.close(draw(out_dir / f"{name}.png"))
        out[name] = out_dir / f"{name}.png"
    return out


def keep_executed(executed, notebook) -> None:
    """Write the executed notebook `executed` over the source notebook `notebook` (outputs kept, so
    nbval compares the cells marked NBVAL_CHECK_OUTPUT with them), without papermill's timings."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code" and "injected-parameters" in cell.metadata.get("tags", []):
            raise ValueError(f"{executed} was run with injected parameters: run it with the defaults")
    nbformat.write(nb, str(notebook))
