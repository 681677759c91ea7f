"""Everything 08_beyond_accuracy's summary writes for one profile and architecture: calibration per
run, the classes that lose most (with intervals over seeds), disagreement and transfer-PIEs,
robustness, the findings, the records left out; and the three figures.

    tables, written = report.write(cfg, out_dir)      # {name: DataFrame}, {name: path}
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import plots
from . import findings, study

ARRAYS = ["reliability", "reliability_width", "pred", "labels"]


def label(profile: str, arch: str, default_arch: str) -> str:
    """The summary's folder under outputs/summary/: `beyond` for mini and its model, else beyond-profile-arch."""
    return "beyond" if profile == "mini" and arch == default_arch else f"beyond-{profile}-{arch}"


def tables(cfg, root=None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(tables by name, runs, robustness rows) of the records of `cfg`'s profile and architecture."""
    runs = study.load(root, cfg["beyond"]["ece_bins"])
    skipped = runs.attrs.get("skipped", [])
    if len(runs):
        runs = runs[(runs.profile == cfg["profile"]) & (runs.arch == cfg["arch"])].reset_index(drop=True)
    rob = study.robustness(root)
    rob = rob[(rob.profile == cfg["profile"]) & (rob.arch == cfg["arch"])].reset_index(drop=True)
    out = {"findings": findings.table(runs, rob, cfg["beyond"]["margin"])}
    if len(runs):
        out["calibration"] = runs.drop(columns=ARRAYS)
        pc = study.per_class(runs)
        out["per_class"] = pc
        out["worst_classes"] = study.class_intervals(pc)
        out["disagreement"] = study.disagreement(runs)
        out["pies"] = study.pies(runs)
    if len(rob):
        out["robustness"] = rob
    if skipped:
        out["skipped_records"] = pd.DataFrame(skipped, columns=["file", "reason"])
    return out, runs, rob


def write(cfg, out_dir, root=None) -> tuple[dict, dict]:
    """Every table (CSV; Markdown for the findings) and figure (PNG) under `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t, runs, rob = tables(cfg, root)
    written = {}
    for name, df in t.items():
        df.to_csv(out_dir / f"{name}.csv", index=False)
        written[name] = out_dir / f"{name}.csv"
    (out_dir / "findings.md").write_text(t["findings"].to_markdown(index=False))
    figures = {
        "reliability": (plots.reliability, runs),
        "per_class_drops": (plots.per_class_drops, t.get("per_class", pd.DataFrame())),
        "robustness": (plots.robustness, rob),
    }
    for name, (fn, df) in figures.items():
        if len(df):
            fn(df, path=out_dir / f"{name}.png")
            written[name] = out_dir / f"{name}.png"
    return t, written
