"""Everything 08_beyond_accuracy's summary writes for one profile and architecture: calibration per
run, the classes that lose most (with intervals over seeds), disagreement and transfer-PIEs,
robustness, the findings, the records left out; and the three figures.

    tables, written = report.write(cfg, out_dir)      # {name: DataFrame}, {name: path}
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import files, plots, profiles
from ..report import markdown
from . import findings, study

FINDINGS_NOTE = (
    "estimate and its 95% interval [ci_low, ci_high] in points: sparse minus its budget-matched control, "
    "paired on task and seeds, the interval over tasks x upstream models (`stats.crossed`); "
    "tasks, pairs: what the estimate rests on"
)
ARRAYS = ["reliability", "reliability_width", "pred", "labels"]


CALIBRATION = [
    "top1",
    "confidence",
    "ece_mass",
    "ece_width",
    "nll",
    "brier",
    "temperature",
    "ece_mass_ts",
    "ece_width_ts",
    "nll_ts",
    "brier_ts",
]


def label(profile: str, arch: str) -> str:
    """The summary's folder under outputs/summary/: `beyond` for the default profile (mini), else
    beyond-profile-arch."""
    return profiles.get(profile).label("beyond", arch)


def calibration_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean calibration per (finetune, method, sparsity) over tasks and seeds, with the run count."""
    cols = [c for c in CALIBRATION if c in runs]
    g = runs.groupby(["finetune", "method", "sparsity"])
    return g[cols].mean().join(g.size().rename("runs")).reset_index()


def describe(t: dict, results_root, out_dir) -> str:
    """What the summary read and what it left out, in a few lines."""
    cal, rob = t.get("calibration"), t.get("robustness")
    lines = []
    if cal is None and rob is None:
        lines.append(
            f"no finetuning records with stored predictions and no robustness records under {results_root}: "
            "run 02_linear_ft / 03_full_ft (e.g. make study) and this notebook with -p mode run first"
        )
    if cal is not None:
        lines.append(f"{len(cal)} finetuning runs with stored predictions ({', '.join(sorted(set(cal.method)))})")
    if rob is not None:
        lines.append(
            f"{rob.groupby(['method', 'sparsity', 'dataset', 'seed', 'upstream_seed']).ngroups} robustness runs"
        )
    skipped = t.get("skipped_records")
    if skipped is not None:
        lines.append(
            f"{len(skipped)} records left out (listed in skipped_records.csv): "
            + "; ".join(f"{r.file} ({r.reason})" for r in skipped.head(3).itertuples())
        )
    lines.append(f"tables and figures under {out_dir}")
    return "\n".join(lines)


def tables(cfg, root=None, overrides: dict | None = None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(tables by name, runs, robustness rows) of the records of `cfg`'s profile and architecture
    (made with `overrides`)."""
    loaded = study.load(root, cfg["beyond"]["ece_bins"], overrides)
    runs, skipped = loaded.frame, loaded.skipped
    if len(runs):
        runs = runs[(runs.profile == cfg["profile"]) & (runs.arch == cfg["arch"])].reset_index(drop=True)
    rob = study.robustness(root)
    rob = rob[(rob.profile == cfg["profile"]) & (rob.arch == cfg["arch"])].reset_index(drop=True)
    out = {"findings": findings.table(runs, rob, cfg["beyond"]["margin"])}
    if len(runs):
        out["calibration"] = runs.drop(columns=ARRAYS)
        out["calibration_summary"] = calibration_summary(runs)
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


def write(cfg, out_dir, root=None, overrides: dict | None = None) -> tuple[dict, dict]:
    """Every table (CSV; Markdown for the findings) and figure (PNG) under `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t, runs, rob = tables(cfg, root, overrides)
    written = {}
    for name, df in t.items():
        files.write_csv(out_dir / f"{name}.csv", df)
        written[name] = out_dir / f"{name}.csv"
    header = ("Beyond accuracy: the project's own questions as tests (not the paper's)", FINDINGS_NOTE)
    source = (
        f"{len(runs)} finetuning runs with stored predictions and {len(rob)} robustness rows, "
        f"profile {cfg['profile']}, arch {cfg['arch']}"
    )
    files.write_text(out_dir / "findings.md", markdown("findings", t["findings"], source, header=header))
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
