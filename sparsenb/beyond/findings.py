"""The project's own questions beyond accuracy, each a test with a stable key, a verdict and an
interval -- the statistics of the paper's findings (`sparsenb.stats`: paired differences, their mean
over tasks x upstream models with an interval over both, verdict only with >= 3 tasks), reached
through `evidence`, the package's one adapter to them.

    findings.table(runs, rob, margin=0.01)     # key, finding, test, verdict, estimate, ci_low, ci_high, ...
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats
from . import evidence, study

COLUMNS = ["key", "finding", "test", "verdict", "verdict_holm", "estimate", "ci_low", "ci_high", "p", "p_holm", "tasks",
           "pairs", "evidence"]  # fmt: skip


def _finding(
    key: str, claim: str, test: str, d: pd.DataFrame, direction: str, shift: float = 0.0, pooled: bool = False
) -> dict:
    """One row of the table: `d` has one row per pair (columns dataset, diff, in [0, 1] units); the
    claim is about diff - `shift` (a non-inferiority margin) in `direction` (`evidence.test`;
    `pooled`: each diff pools the upstream models)."""
    e = evidence.test(d, direction, shift, pooled)
    return {
        "key": key,
        "finding": claim,
        "test": test,
        "verdict": e["verdict"],
        "p": e["p"],
        "estimate": 100 * e["mean"],
        "ci_low": 100 * e["low"],
        "ci_high": 100 * e["high"],
        "tasks": e["tasks"],
        "pairs": e["pairs"],
        "evidence": e["text"],
    }


def gap_by_mode(pairs: pd.DataFrame) -> pd.DataFrame:
    """From `study.calibration_pairs`: the gap (sparse - control) in linear minus the same in full,
    per (method, sparsity, task, upstream model) -- a linear and a full run on one upstream model
    share it, so upstream noise stays in the crossed interval -- each mode's gap a mean over its
    finetuning seeds (the two modes' seeds are different runs)."""
    keys = ["dataset", "method", "sparsity", *(["upstream_seed"] if "upstream_seed" in pairs else [])]
    g = pairs.groupby(["finetune", *keys], dropna=False)["diff"].mean().unstack("finetune")
    if not {"linear", "full"} <= set(g.columns):
        return pd.DataFrame(columns=["dataset", "diff"])
    return (g["linear"] - g["full"]).dropna().rename("diff").reset_index()


def table(runs: pd.DataFrame, rob: pd.DataFrame | None = None, margin: float = 0.01) -> pd.DataFrame:
    """Every finding on the runs of `study.load` (and robustness records of `study.robustness`)."""
    rows = _calibration(runs, margin) + _agreement(runs) + [_robustness(rob)]
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("verdict_holm", "p_holm")])
    return holm(out)[COLUMNS]


def holm(t: pd.DataFrame) -> pd.DataFrame:
    """`p_holm`: Holm's adjustment across this family of findings (those with a p), and
    `verdict_holm`: the verdict where the adjusted p stays below 0.05, else inconclusive."""
    known = t.p.notna()
    out = t.assign(p_holm=np.nan)
    if known.any():
        out.loc[known, "p_holm"] = stats.holm(t.loc[known, "p"])
    out["verdict_holm"] = np.where(out.p_holm < 1 - stats.LEVEL, out.verdict, "inconclusive")
    out["p"], out["p_holm"] = out.p.round(4), out.p_holm.round(4)
    return out


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["dataset", "diff"])


def _calibration(runs: pd.DataFrame, margin: float) -> list[dict]:
    """Sparse vs control calibration: worse in each finetuning mode, no worse after temperature
    scaling (non-inferiority within `margin`), repaired by full finetuning."""
    rows = []
    for ft in ("linear", "full"):
        d = study.calibration_pairs(runs, "ece_mass") if len(runs) else _empty()
        d = d[d.finetune == ft] if len(d) else d
        rows.append(
            _finding(
                f"sparse_worse_calibrated_{ft}",
                f"sparse transfer is worse calibrated than its dense control ({ft} finetuning)",
                "ECE (15 equal-mass bins) sparse minus control, same task and seeds; > 0",
                d,
                "greater",
            )
        )
    d = study.calibration_pairs(runs, "ece_mass_ts") if "ece_mass_ts" in runs else _empty()
    rows.append(
        _finding(
            "calibration_no_worse_after_ts",
            "after temperature scaling, sparse transfer is no worse calibrated than dense",
            f"ECE after temperature scaling (fitted on val) sparse minus control, "
            f"linear and full; < +{100 * margin:g} point (non-inferiority)",
            d,
            "less",
            shift=margin,
        )
    )
    d = gap_by_mode(study.calibration_pairs(runs, "ece_mass")) if len(runs) else _empty()
    rows.append(
        _finding(
            "full_ft_repairs_calibration",
            "full finetuning repairs the miscalibration that linear finetuning inherits",
            "ECE gap (sparse - control) in linear minus the gap in full, per method, sparsity and task; > 0",
            d,
            "greater",
        )
    )
    return rows


def _agreement(runs: pd.DataFrame) -> list[dict]:
    """Where sparse and control predictions differ beyond seed noise: concentration of the
    per-class cost, disagreement, transfer-PIEs."""
    dis = (
        study.disagreement(runs)
        if len(runs)
        else pd.DataFrame(columns=["dataset", "gini", "gini_dense", "disagreement", "disagreement_dense"])
    )
    d = dis.assign(diff=dis["gini"] - dis["gini_dense"]).dropna(subset=["diff"])
    rows = [
        _finding(
            "per_class_cost_concentrated",
            "the per-class cost of sparsity is concentrated on few classes",
            "Gini of |per-class change| sparse vs control minus the same between two control seeds; > 0",
            d,
            "greater",
        )
    ]
    d = dis.assign(diff=dis["disagreement"] - dis["disagreement_dense"]).dropna(subset=["diff"])
    rows.append(
        _finding(
            "sparse_disagrees_beyond_seed_noise",
            "sparse models disagree with their control more than dense seeds disagree among themselves",
            "prediction disagreement sparse vs control minus control vs a control of another seed; > 0",
            d,
            "greater",
        )
    )
    p = study.pies(runs) if len(runs) else pd.DataFrame(columns=["dataset", "pies", "dense_baseline"])
    d = p.assign(diff=p["pies"] - p["dense_baseline"]).dropna(subset=["diff"])
    rows.append(
        _finding(
            "transfer_pies_exceed_seed_noise",
            "transfer-PIEs exceed the dense seeds' own disagreement",
            "share of test examples whose modal sparse label differs from the modal control label, "
            "minus a control seed against the others' modal label; > 0",
            d,
            "greater",
            pooled=True,
        )
    )
    return rows


def _robustness(rob: pd.DataFrame | None) -> dict:
    """Sparse vs control robustness to common corruptions (linear finetuning)."""
    d = study.robustness_pairs(rob) if rob is not None and len(rob) else _empty()
    return _finding(
        "sparse_less_robust",
        "sparse transfer is less robust to common corruptions than its dense control",
        "corrupted / clean accuracy (mean over corruptions and severities) sparse minus control, linear; < 0",
        d,
        "less",
    )
