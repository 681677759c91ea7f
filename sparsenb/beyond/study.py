"""The beyond-accuracy tables of a study, from the records of its linear and full finetuning runs
(their stored test and val probabilities; `results.predictions`) and of 08's robustness runs.

    runs = study.load(root, n_bins=15).frame  # one row per run: calibration before / after temperature scaling
    study.per_class(runs)                   # per-class accuracy change vs the run's control, same seeds
    study.disagreement(runs); study.pies(runs)
    study.robustness(root)                  # 08_beyond_accuracy records: accuracy per corruption x severity

A sparse run is compared with its budget-matched control (`control`): the same finetuning mode, task,
finetuning seed and upstream seed. Records made before runs kept predictions are named in
`Loaded.skipped` and left out, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import profiles, results, summary
from . import calibration, classes, evidence

NOTEBOOKS = {"02_linear_ft": "linear", "03_full_ft": "full"}
ROBUSTNESS = "08_beyond_accuracy"
KEYS = ["finetune", "arch", "dataset", "method", "sparsity", "seed", "upstream_seed"]


def control(method: str, profile: str) -> str | None:
    """The dense model a sparse method is compared with: its budget-matched control (mini), dense
    (paper: the published checkpoints have no other); None for a dense model or a control."""
    return profiles.get(profile).control(method)


def _current(rec: dict, finetune: str, expected: dict, overrides: dict | None = None) -> bool:
    """Whether a record was made with its profile's current configuration and `overrides` (as
    07_summary pools)."""
    key = (rec["profile"], finetune, rec["method"], float(rec["sparsity"]), rec["dataset"])
    if key not in expected:
        expected[key] = summary.expected_cell_hash(*key, overrides)
    return rec.get("cell_hash") == expected[key]


def _row(rec: dict, finetune: str, preds: dict, n_bins: int) -> dict:
    test = preds["test"]
    row = {k: rec.get(k) for k in KEYS if k in rec}
    row.update(finetune=finetune, upstream_seed=int(rec["config"].get("upstream_seed", 0)), profile=rec["profile"])
    row.update(calibration.metrics(test["probs"], test["labels"], n_bins))
    row["temperature"] = float("nan")
    if "val" in preds:
        t = calibration.fit_temperature(preds["val"]["probs"], preds["val"]["labels"])
        after = calibration.metrics(calibration.scale(test["probs"], t), test["labels"], n_bins)
        row.update({f"{k}_ts": v for k, v in after.items() if k != "top1"}, temperature=t)
    row["reliability"] = calibration.reliability(test["probs"], test["labels"], n_bins, "mass")
    row["reliability_width"] = calibration.reliability(test["probs"], test["labels"], n_bins, "width")
    row["pred"] = np.asarray(test["probs"], dtype=np.float32).argmax(1)
    row["labels"] = np.asarray(test["labels"])
    row["num_classes"] = int(np.asarray(test["probs"]).shape[1])
    return row


@dataclass(frozen=True)
class Loaded:
    """What `load` returns. `frame`: one row per run; `skipped`: the records left out, each
    {"file", "reason"}."""

    frame: pd.DataFrame
    skipped: tuple[dict, ...] = ()


def load(root=None, n_bins: int = 15, overrides: dict | None = None) -> Loaded:
    """One row per linear / full finetuning run of the current configuration that kept its
    predictions: its keys, test calibration before and after temperature scaling (fitted on its val
    split; paper runs have none: NaN), reliability bins, predicted labels. Records without
    predictions or of another configuration are named in `skipped`."""
    rows, skipped, expected = [], [], {}
    for nb, finetune in NOTEBOOKS.items():
        recs = results.load(nb, root)
        for rec in recs.to_dict("records") if len(recs) else []:
            where = str(results.path_of(nb, rec["run_id"], root))
            if not _current(rec, finetune, expected, overrides):
                skipped.append({"file": where, "reason": "made with another configuration"})
                continue
            preds = results.predictions(rec, root)
            if preds is None:
                skipped.append({"file": where, "reason": "made before runs kept their predictions"})
                continue
            rows.append(_row(rec, finetune, preds, n_bins))
    return Loaded(pd.DataFrame(rows), tuple(skipped))


def pairs(runs: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """(sparse run, its control's run) with the same finetune, arch, dataset, seed and upstream seed."""
    if runs.empty:
        return []
    on = ["finetune", "arch", "dataset", "seed", "upstream_seed"]
    index = {(*r[on], r["method"]): r for _, r in runs.iterrows()}
    out = []
    for _, r in runs.iterrows():
        c = control(r["method"], r["profile"])
        if c and (*r[on], c) in index:
            out.append((r, index[(*r[on], c)]))
    return out


def calibration_pairs(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per (sparse run, control run): the sparse value of column `value` minus the control's."""
    rows = [
        {**{k: s[k] for k in KEYS}, "control": c["method"], "diff": s[value] - c[value]}
        for s, c in pairs(runs)
        if value in s and np.isfinite(s[value]) and np.isfinite(c[value])
    ]
    return pd.DataFrame(rows, columns=[*KEYS, "control", "diff"])


def per_class(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (sparse run, class): per-class accuracy of the sparse run, of its control (same
    seeds) and the change (sparse - control)."""
    rows = []
    for s, c in pairs(runs):
        if len(s["labels"]) != len(c["labels"]) or (s["labels"] != c["labels"]).any():
            continue  # not the same test set
        a = classes.per_class(s["pred"], s["labels"], s["num_classes"])
        b = classes.per_class(c["pred"], c["labels"], c["num_classes"])
        for k in range(len(a)):
            rows.append(
                {
                    **{key: s[key] for key in KEYS},
                    "control": c["method"],
                    "cls": k,
                    "sparse": a[k],
                    "dense": b[k],
                    "change": a[k] - b[k],
                }
            )
    return pd.DataFrame(rows, columns=[*KEYS, "control", "cls", "sparse", "dense", "change"])


def class_intervals(pc: pd.DataFrame) -> pd.DataFrame:
    """Per (finetune, dataset, method, sparsity, class): the mean change over seeds with its 95%
    t-interval (seeds and upstream seeds as independent draws), worst first."""
    rows = []
    for key, g in pc.groupby(["finetune", "dataset", "method", "sparsity", "cls"]):
        m, lo, hi = evidence.interval(g["change"])
        rows.append(
            dict(
                zip(["finetune", "dataset", "method", "sparsity", "cls"], key),
                change=m,
                ci_low=lo,
                ci_high=hi,
                seeds=len(g),
            )
        )
    out = pd.DataFrame(
        rows, columns=["finetune", "dataset", "method", "sparsity", "cls", "change", "ci_low", "ci_high", "seeds"]
    )
    return out.sort_values("change").reset_index(drop=True)


def _baseline(runs: pd.DataFrame, r: pd.Series) -> pd.Series | None:
    """The control run of another seed (the next in order) for the seed-to-seed baseline."""
    c = runs[
        (runs.method == r["method"])
        & (runs.finetune == r["finetune"])
        & (runs.dataset == r["dataset"])
        & (runs.arch == r["arch"])
    ]
    c = c.sort_values(["seed", "upstream_seed"]).reset_index(drop=True)
    if len(c) < 2:
        return None
    i = int(np.flatnonzero((c.seed == r["seed"]) & (c.upstream_seed == r["upstream_seed"]))[0])
    return c.iloc[(i + 1) % len(c)]


def disagreement(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (sparse run, control run): prediction disagreement, the concentration of per-class change
    (Gini of |change|), and the same two between the control run and a control run of another seed
    (the dense model's own seed noise) -- NaN where the control has one seed only."""
    rows = []
    for s, c in pairs(runs):
        other = _baseline(runs, c)
        k = s["num_classes"]
        change = classes.per_class(s["pred"], s["labels"], k) - classes.per_class(c["pred"], c["labels"], k)
        row = {
            **{key: s[key] for key in KEYS},
            "control": c["method"],
            "disagreement": classes.disagreement(s["pred"], c["pred"]),
            "gini": classes.gini(np.abs(change)),
        }
        row["disagreement_dense"], row["gini_dense"] = float("nan"), float("nan")
        if other is not None:
            noise = classes.per_class(other["pred"], other["labels"], k) - classes.per_class(c["pred"], c["labels"], k)
            row["disagreement_dense"] = classes.disagreement(other["pred"], c["pred"])
            row["gini_dense"] = classes.gini(np.abs(noise))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*KEYS, "control", "disagreement", "gini", "disagreement_dense", "gini_dense"])


def pies(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (finetune, dataset, sparse method, sparsity): the fraction of test examples that are
    transfer-PIEs (modal label over the sparse runs' seeds != modal label over the control's) and the
    dense seeds' own rate (`classes.seed_baseline`)."""
    rows = []
    for (ft, arch, ds, m, sp), g in runs.groupby(["finetune", "arch", "dataset", "method", "sparsity"]):
        c = control(m, g["profile"].iloc[0])
        d = runs[(runs.method == c) & (runs.finetune == ft) & (runs.dataset == ds) & (runs.arch == arch)]
        if c is None or d.empty:
            continue
        mask = classes.pies(np.stack(g["pred"]), np.stack(d["pred"]))
        rows.append(
            {
                "finetune": ft,
                "arch": arch,
                "dataset": ds,
                "method": m,
                "sparsity": sp,
                "control": c,
                "sparse_seeds": len(g),
                "dense_seeds": len(d),
                "pies": float(mask.mean()),
                "dense_baseline": classes.seed_baseline(np.stack(d["pred"])),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "finetune",
            "arch",
            "dataset",
            "method",
            "sparsity",
            "control",
            "sparse_seeds",
            "dense_seeds",
            "pies",
            "dense_baseline",
        ],
    )


def robustness(root=None) -> pd.DataFrame:
    """08's robustness records, one row per (run, corruption, severity): clean and corrupted accuracy
    and their ratio (relative)."""
    recs = results.load(ROBUSTNESS, root)
    rows = []
    for rec in recs.to_dict("records") if len(recs) else []:
        base = {k: rec.get(k) for k in KEYS}
        base.update(
            upstream_seed=int(rec["config"].get("upstream_seed", 0)), profile=rec["profile"], clean=rec["clean"]
        )
        rows += [{**base, **r} for r in rec["corrupted"]]
    return pd.DataFrame(rows, columns=[*KEYS, "profile", "clean", "corruption", "severity", "accuracy", "relative"])


def robustness_pairs(rob: pd.DataFrame) -> pd.DataFrame:
    """Per sparse robustness run and its control's (same task and seeds): relative corrupted
    accuracy (mean over corruptions and severities) sparse minus control."""
    if rob.empty:
        return pd.DataFrame(columns=[*KEYS, "control", "diff"])
    per = rob.groupby([*KEYS, "profile"], dropna=False)["relative"].mean().rename("value").reset_index()
    return calibration_pairs(per, "value")
