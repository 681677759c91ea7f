"""Everything 07_summary writes for one source (the paper's released results or this repo's
records): Table 1 (best and selected), Tables C.1/C.2, alphas, the findings with their verdicts,
the decision guide, Figures 2 and 3, and the list of records left out.

    report.write("results", out_dir)      # {name: path} of every table and figure
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import data, plots, summary, verdicts


def write(source: str, out_dir, root=None, arch: str | None = None, profile: str | None = None) -> dict:
    """Every table (CSV + Markdown) and figure (PNG) of the summary of one profile and architecture
    (`summary.select`) under `out_dir`; returns paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tidy = summary.select(summary.load(source, root), source, profile, arch)
    c = summary.cells(tidy)
    paths = {}
    if c.empty:
        return paths
    t1 = summary.table1(c)
    tables = {
        "table1": t1,
        "table1_wide": summary.wide(t1).reset_index(),
        "table1_selected": summary.table1_selected(tidy),
        "alpha": summary.alpha_summary(c),
        "findings": verdicts.findings(tidy),
        "decision_guide": verdicts.decision_guide(tidy),
    }
    excluded = tidy.attrs.get("excluded")
    if excluded:
        tables["excluded_records"] = pd.DataFrame(excluded, columns=["file", "reason"])
    for ft, name in (("linear", "tableC1_linear"), ("full", "tableC2_full")):
        if (c.finetune == ft).any():
            tables[name] = summary.tables_c(c, ft).reset_index()
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
    d = summary.difficulty(c)
    if len(d):
        plots.figure3(no_lth_linear(summary.alphas(c)), d, kinds, path=out_dir / "figure3.png")
        paths["figure3"] = out_dir / "figure3.png"
    return paths
