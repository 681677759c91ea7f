"""Everything 07_summary writes for one source (the paper's released results or this repo's
records): Table 1 (best and selected), Tables C.1/C.2, alphas, the findings with their verdicts,
the decision guide, Figures 2 and 3, and the list of records left out.

    report.write("results", out_dir)      # {name: path} of every table and figure
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import data, plots, prune, summary, verdicts

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
)  # what a summary may write, as <name>.csv + .md or <name>.png


def write(source: str, out_dir, root=None, arch: str | None = None, profile: str | None = None) -> dict:
    """Every table (CSV + Markdown) and figure (PNG) of the summary of one profile and architecture
    (`summary.select`) under `out_dir`, and the list of records left out; returns {name: path}. The
    folder is written whole: a table or figure an earlier summary wrote that this one does not
    (no runs, no records left out now, ...) is removed (`Written.removed`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tidy = summary.select(summary.load(source, root), source, profile, arch)
    c = summary.cells(tidy)
    tables = _tables(tidy, c) if len(c) else {}
    excluded = tidy.attrs.get("excluded")
    if excluded:
        tables["excluded_records"] = pd.DataFrame(excluded, columns=["file", "reason"])
    paths = Written(out_dir)
    for name, t in tables.items():
        t.to_csv(out_dir / f"{name}.csv", index=False)
        (out_dir / f"{name}.md").write_text(t.to_markdown(index=False))
        paths[name] = out_dir / f"{name}.csv"
    if len(c):
        paths.update(_figures(c, tables["alpha"], out_dir))
    for name in PRODUCTS:  # what an earlier summary wrote and this one does not
        for suffix in (".csv", ".md", ".png"):
            if name not in paths and (out_dir / f"{name}{suffix}").exists():
                (out_dir / f"{name}{suffix}").unlink()
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
        return f"wrote under {self.out_dir}: {wrote}{gone}"


def _tables(tidy: pd.DataFrame, c: pd.DataFrame) -> dict:
    tables = {
        "table1": summary.table1(c),
        "table1_selected": summary.table1_selected(tidy),
        "alpha": summary.alpha_summary(c),
        "findings": verdicts.findings(tidy),
        "decision_guide": verdicts.decision_guide(tidy),
    }
    tables["table1_wide"] = summary.wide(tables["table1"]).reset_index()
    for ft, name in (("linear", "tableC1_linear"), ("full", "tableC2_full")):
        if (c.finetune == ft).any():
            tables[name] = summary.tables_c(c, ft).reset_index()
    return tables


def _reported(t: pd.DataFrame) -> pd.DataFrame:
    """The rows of the finetuning modes the paper reports their method in: as in the paper, LTH-T
    (designed for full finetuning) is left out of the linear-finetuning plots (prune.reported_in)."""
    keep = [prune.reported_in(m, ft) for m, ft in zip(t.method, t.finetune)]
    return t[pd.Series(keep, index=t.index, dtype=bool)]


def _figures(c: pd.DataFrame, alpha: pd.DataFrame, out_dir: Path) -> dict:
    kinds = {n: data.info(n).kind for n in set(c.dataset) if n in data.REGISTRY}
    sparsity = 0.8 if (c.sparsity == 0.8).any() else sorted(c.sparsity.unique())[-1]
    plots.figure2(_reported(c), _reported(alpha), sparsity, path=out_dir / "figure2.png")
    out = {"figure2": out_dir / "figure2.png"}
    d = summary.difficulty(c)
    if len(d):
        plots.figure3(_reported(summary.alphas(c)), d, kinds, path=out_dir / "figure3.png")
        out["figure3"] = out_dir / "figure3.png"
    return out
