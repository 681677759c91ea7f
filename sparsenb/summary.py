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

from . import config, data, files, metrics, prune, results
from . import finetune as finetuning
from .errors import UserError, check_choice

REFERENCE = Path(__file__).resolve().parent / "reference_results"
PUBLISHED_FILES = {
    ("linear", "resnet50"): "linear_transfer_results.csv",
    ("full", "resnet50"): "full_transfer_results.csv",
    ("linear", "mobilenet_v1"): "linear_mobilenet_transfer_results.csv",
    ("full", "mobilenet_v1"): "full_mobilenet_transfer_results.csv",
}
DATASET_NAMES = {"SUN": "sun397", "birds": "birdsnap"}  # the paper repo's keys -> ours
METHOD_NAMES = {
    "Dense": "dense",
    "AC/DC": "acdc",
    "LTH-T": "lth_t",
    "RigL ERK 1x": "rigl_erk_1x",
    "RigL ERK 5x": "rigl_erk_5x",
    "STR": "str",
    "WoodFisher": "woodfisher",
    "GMP": "gmp",
    "M-FAC": "mfac",
}
# families as the paper groups the methods: ours come from the method registry (sparsenb.prune);
# M-FAC is only in the released results. The extended-budget arm (RigL 5x, and our dense_5x
# control) is reported on its own, never inside a family comparison.
PUBLISHED_ONLY = {"mfac": "progressive"}


def families() -> dict[str, str]:
    """method -> family (progressive, regularization, lottery_ticket, structured, dense, control)."""
    return {**{m: prune.family(m) for m in prune.METHODS}, **PUBLISHED_ONLY}


EXTENDED = ("rigl_erk_5x", "dense_5x")
CELL = ["finetune", "arch", "dataset", "method", "sparsity"]


def members(family: str) -> list[str]:
    """The methods of a family at the standard budget (the extended-budget arm left out)."""
    return [m for m, f in families().items() if f == family and m not in EXTENDED]


def load_published() -> pd.DataFrame:
    """The paper's released per-seed accuracies as a tidy frame (accuracy in [0, 1])."""
    frames = []
    for (finetune, arch), fname in PUBLISHED_FILES.items():
        df = pd.read_csv(REFERENCE / fname)
        df = df.loc[:, [c for c in df.columns if not c.startswith("Unnamed")]]  # trailing empty column
        frames.append(
            pd.DataFrame(
                {
                    "finetune": finetune,
                    "arch": arch,
                    "dataset": df.dset.map(lambda d: DATASET_NAMES.get(d, d)),
                    "method": df.model.map(METHOD_NAMES),
                    "sparsity": df.sparsity.astype(float),
                    "seed": df.seed.str.replace("seed_", "").astype(int),
                    "accuracy": df.val_acc.astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def expected_cell_hash(profile: str, finetune: str, method: str, sparsity: float, dataset: str) -> str:
    """The cell hash a record of this cell has under the current configuration of `profile`."""
    return results.cell_hash(
        finetuning.run_config(config.load(profile), finetune, method, float(sparsity), dataset, 0, 0, with_inputs=False)
    )


def load_results(root=None, which: str | None = None) -> pd.DataFrame:
    """This repo's linear and full finetuning records as a tidy frame (accuracy in [0, 1]): only
    records made with the current configuration of their profile (their cell hash matches); the
    others are listed in `.attrs["excluded"]` ([{file, reason}]), never pooled. `which`: the accuracy
    field to report -- default the profile's `report` convention (mini: test at the epoch chosen
    on validation; paper: the paper code's best epoch)."""
    import json
    import warnings

    base = Path(root or config.load("mini")["results_root"])  # params' results_root (both profiles')
    rows, excluded, expected, report = [], [], {}, {}
    for nb, finetune in (("02_linear_ft", "linear"), ("03_full_ft", "full")):
        for path in sorted(p for p in (base / nb).glob("*.json") if not files.unfinished(p)):
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
            if r["dataset"] in data.REGISTRY and data.info(r["dataset"]).kind == "upstream":
                excluded.append({"file": str(path), "reason": "finetuned on the upstream task, not a downstream one"})
                continue
            rows.append(
                {
                    "finetune": finetune,
                    "arch": r["arch"],
                    "dataset": r["dataset"],
                    "method": r["method"],
                    "sparsity": float(r["sparsity"]),
                    "seed": int(r["seed"]),
                    "upstream_seed": int(cfg_run.get("upstream_seed", 0)),
                    "accuracy": acc,
                    "val_accuracy": r.get("val_accuracy"),
                    "profile": profile,
                }
            )
    out = pd.DataFrame(rows, columns=CELL + ["seed", "upstream_seed", "accuracy", "val_accuracy", "profile"])
    out.attrs["excluded"] = excluded  # [{file, reason}]: a plain list (pandas compares attrs)
    return out


def load(source: str, root=None) -> pd.DataFrame:
    check_choice("source", source, ("published", "results"))
    return load_published() if source == "published" else load_results(root)


MAIN = {"published": ("paper", "resnet50")}  # the paper's main architecture; its MobileNetV1 rows are extra


def select(tidy: pd.DataFrame, source: str, profile: str | None = None, arch: str | None = None) -> pd.DataFrame:
    """The rows of one profile and one architecture -- a summary never pools them. Empty `profile`:
    mini (the embedded study) when its records are there, else the profile with most records; empty
    `arch`: the profile's own (params `arch`; published: resnet50), else the most common. The choice
    and what was left out are in `.attrs["selection"]` (a sentence) and `.attrs["label"]` (the
    summary's folder name: the source itself for the default choice, else source-profile-arch)."""
    excluded = tidy.attrs.get("excluded", [])
    if "profile" not in tidy:
        tidy = tidy.assign(profile="paper")  # the released results are the paper profile's
    present = tidy.profile.value_counts()
    if profile and len(tidy) and profile not in present:
        raise UserError(f"no {source} records of profile {profile!r}; there are: {dict(present)}")
    profile = profile or ("mini" if "mini" in present else present.index[0] if len(present) else "mini")
    rows = tidy[tidy.profile == profile]
    archs = rows.arch.value_counts()
    default = MAIN[source][1] if source in MAIN else config.load(profile)["arch"]
    if arch and len(rows) and arch not in archs:
        raise UserError(f"no {source} records of arch {arch!r} ({profile} profile); there are: {dict(archs)}")
    arch = arch or (default if default in archs or not len(archs) else archs.index[0])
    out = rows[rows.arch == arch].copy()
    out.attrs["excluded"] = excluded
    others = {**{f"profile {p}": int(n) for p, n in present.items() if p != profile},
              **{f"arch {a}": int(n) for a, n in archs.items() if a != arch}}  # fmt: skip
    out.attrs["selection"] = f"{source}: profile {profile}, arch {arch} ({len(out)} runs)" + (
        "; not in this summary: "
        + ", ".join(f"{k} ({n} runs)" for k, n in others.items())
        + " -- pass -p profile/-p arch"
        if others
        else ""
    )
    out.attrs["label"] = (
        source if arch == default and profile == MAIN.get(source, ("mini",))[0] else f"{source}-{profile}-{arch}"
    )
    return out


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
            selected, how = (
                float(np.mean([per_seed.loc[s, m] for s, m in zip(per_seed.index, picks)])),
                "held-out seeds",
            )
        rows.append(
            {
                "finetune": ft,
                "sparsity": sp,
                "dataset": ds,
                "chosen_by": how,
                "selected": 100 * selected,
                "best_of_all": 100 * means.max(),
                "optimism": 100 * (means.max() - selected),
            }
        )
    return pd.DataFrame(
        rows, columns=["finetune", "sparsity", "dataset", "chosen_by", "selected", "best_of_all", "optimism"]
    )


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
