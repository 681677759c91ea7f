"""07_summary: the paper's tables and figures from run records -- ours (`source="results"`) or the
paper's released per-seed results (`source="published"`, shipped in sparsenb/reference_results/).

    tidy = summary.load("published")        # .frame: finetune, arch, dataset, method, sparsity, seed, accuracy
    tidy = summary.select(tidy, "published")  # one profile and arch; .excluded, .selection, .label
    cells = summary.cells(tidy.frame)       # mean and std over seeds per cell, accuracy in %
    summary.table1(cells)                   # best sparse method per (finetune, sparsity, dataset) + dense
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import checkpoints, config, data, files, metrics, profiles, prune, results, runs, specs, sweep
from .errors import UserError, check_choice
from .published import DATASET_NAMES, METHOD_NAMES, PUBLISHED_FILES, PUBLISHED_SHA256, REFERENCE, load_published  # noqa: F401

# families as the paper groups the methods: ours come from the method registry (sparsenb.prune);
# M-FAC is only in the released results. The extended-budget arm (RigL 5x, and our dense_5x
# control) is reported on its own, never inside a family comparison.
PUBLISHED_ONLY = {"mfac": "progressive"}


def families() -> dict[str, str]:
    """method -> family (progressive, regularization, lottery_ticket, structured, dense, control)."""
    return {**{m: prune.family(m) for m in prune.METHODS}, **PUBLISHED_ONLY}


CELL = ["finetune", "arch", "dataset", "method", "sparsity"]


@dataclass(frozen=True)
class Tidy:
    """Runs as a tidy frame (one row per run, accuracy in [0, 1]) and what was left out of it."""

    frame: pd.DataFrame
    excluded: list = field(default_factory=list)  # [{file, reason}]: records not pooled
    selection: str = ""  # `select`: the profile and arch chosen, and what is not in this summary
    label: str = ""  # `select`: the summary's folder name
    overrides: dict | None = None  # the records' overrides (None: the released results)
    missing: list = field(default_factory=list)  # `select`: runs of the profile's study grid with no record


NOTEBOOK_OF = {"linear": "02_linear_ft", "full": "03_full_ft"}


def expected_cell_hash(
    profile: str, finetune: str, method: str, sparsity: float, dataset: str, overrides: dict | None = None
) -> str:
    """The cell hash a record of this cell has under the current configuration of `profile` with
    `overrides` (the run spec the notebook would build today, `runs.unchecked`)."""
    spec = runs.unchecked(
        NOTEBOOK_OF[finetune],
        profile=profile,
        method=method,
        sparsity=float(sparsity),
        dataset=dataset,
        overrides=overrides or {},
    )
    return results.cell_hash(spec.config())


def load_results(
    root=None, which: str | None = None, overrides: dict | None = None, profile: str | None = None
) -> Tidy:
    """This repo's linear and full finetuning records under `root` (default: the results root of
    `profile`, else of the mini profile, with `overrides`: `results.root_of`) as a tidy frame
    (accuracy in [0, 1]): only records made with the current configuration of their profile and
    these `overrides` (their cell hash matches); the others are listed in `.excluded`, never pooled.
    `which`: the accuracy field to report -- default the profile's `report` convention (mini: test
    at the epoch chosen on validation; paper: the paper code's best epoch)."""
    overrides = specs.overrides_of({"overrides": overrides})  # a notebook's parameter (papermill -p: JSON text)
    base = Path(root or results.root_of(config.load(profile or "mini", overrides)))
    rows, excluded, expected, report = [], [], {}, {}
    for nb, finetune in (("02_linear_ft", "linear"), ("03_full_ft", "full")):
        for path in sorted(p for p in (base / nb).glob("*.json") if not files.unfinished(p)):
            row, why = _row(path, finetune, which, overrides, expected, report)
            if why:
                excluded.append({"file": str(path), "reason": why})
            else:
                rows.append(row)
    out = pd.DataFrame(rows, columns=CELL + ["seed", "upstream_seed", "accuracy", "val_accuracy", "profile"])
    return Tidy(out, excluded, overrides=overrides)


def _row(path: Path, finetune: str, which, overrides, expected: dict, report: dict) -> tuple[dict | None, str]:
    """(the tidy row of one record, "") or (None, why it is left out)."""
    import json
    import warnings

    try:
        r = json.loads(path.read_text())
        cfg_run, profile = r["config"], r["profile"]
        key = (profile, finetune, r["method"], float(r["sparsity"]), r["dataset"])
        if key not in expected:
            expected[key] = expected_cell_hash(*key, overrides)
        if profile not in report:
            report[profile] = which or config.load(profile)["report"]
        acc = float(r[report[profile]])
    except Exception as e:  # noqa: BLE001 - a damaged record is named and skipped
        warnings.warn(f"skipped run record {path}: {type(e).__name__}: {e}", stacklevel=3)
        return None, f"unreadable ({type(e).__name__})"
    if not r.get("run_id") == path.stem == results.run_id(cfg_run):
        return None, f"its run id ({r.get('run_id')}) does not match its file name or its content"
    if r.get("cell_hash", results.cell_hash(cfg_run)) != expected[key]:
        return None, "made with another configuration"
    if (why := _upstream_changed(r, overrides, expected)) is not None:
        return None, why
    if r["dataset"] in data.REGISTRY and data.info(r["dataset"]).kind == "upstream":
        return None, "finetuned on the upstream task, not a downstream one"
    return {
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
    }, ""


def _upstream_changed(r: dict, overrides, cache: dict) -> str | None:
    """Why a record is stale because the upstream model it names (`upstream_sha256`) is no longer the
    one its profile's manifest vouches for, else None (also for records that do not name one)."""
    made_from = r.get("upstream_sha256")
    if not made_from:
        return None
    key = ("manifest", r["profile"])
    if key not in cache:
        cfg = config.load(r["profile"], overrides)
        cache[key] = checkpoints.read_manifest(cfg) if profiles.of(cfg).makes_upstream else None
    man = cache[key]
    if man is None:
        return None
    seed = int(r["config"].get("upstream_seed", 0))
    hit = man[(man.method == r["method"]) & ((man.sparsity - float(r["sparsity"])).abs() < 1e-9) & (man.seed == seed)]
    now = hit.sha256.iloc[0] if len(hit) else None
    return None if now == made_from else f"made from another upstream model (sha256 {made_from[:12]}, now {now})"


def missing(tidy: Tidy, profile: str) -> list[str]:
    """The runs of `profile`'s study grid (`Profile.study_sweeps`) with no pooled record, named
    "finetune method sparsity dataset upstream seed N"; [] for a profile without a study grid."""
    have = {
        (r.finetune, r.method, round(float(r.sparsity), 4), r.dataset, int(r.upstream_seed), int(r.seed))
        for r in tidy.frame.itertuples()
    }
    out = []
    for name in profiles.get(profile).study_sweeps:
        for run in sweep.expand(sweep.load_sweep(config.ROOT / "params" / "sweeps" / f"{name}.yaml"), check=False):
            p, ft = run.params, specs.KINDS[run.notebook].FINETUNE
            for us in p["upstream_seed"] if isinstance(p["upstream_seed"], list) else [p["upstream_seed"]]:
                sp = float(p["sparsity"]) if prune.is_sparse(p["method"]) else 0.0
                if (ft, p["method"], round(sp, 4), p["dataset"], int(us), int(p["seed"])) not in have:
                    out.append(f"{ft} {p['method']} {sp:g} {p['dataset']} upstream seed {us}")
    return list(dict.fromkeys(out))


def load(source: str, root=None, overrides: dict | None = None, profile: str | None = None) -> Tidy:
    """The runs of a source: "published" (the paper's released results) or "results" (this repo's
    records under `root`, default the results root of `profile` (else mini) with `overrides`)."""
    check_choice("source", source, ("published", "results"))
    if source == "published":
        return Tidy(load_published())
    return load_results(root, overrides=overrides, profile=profile)


MAIN = {"published": ("paper", "resnet50")}  # the paper's main architecture; its MobileNetV1 rows are extra


def select(tidy: Tidy, source: str, profile: str | None = None, arch: str | None = None) -> Tidy:
    """The rows of one profile and one architecture -- a summary never pools them. Empty `profile`:
    mini (the embedded study) when its records are there, else the profile with most records; empty
    `arch`: the profile's own (params `arch`; published: resnet50), else the most common. The choice
    and what was left out are in `.selection` (a sentence) and `.label` (the summary's folder name:
    the source itself for the default choice, else source-profile-arch)."""
    frame = tidy.frame if "profile" in tidy.frame else tidy.frame.assign(profile="paper")  # released: paper's
    present = frame.profile.value_counts()
    if profile and len(frame) and profile not in present:
        raise UserError(f"no {source} records of profile {profile!r}; there are: {dict(present)}")
    main = profiles.default().name  # the notebooks' default profile
    profile = profile or (main if main in present else present.index[0] if len(present) else main)
    rows = frame[frame.profile == profile]
    archs = rows.arch.value_counts()
    default = MAIN[source][1] if source in MAIN else config.load(profile)["arch"]
    if arch and len(rows) and arch not in archs:
        raise UserError(f"no {source} records of arch {arch!r} ({profile} profile); there are: {dict(archs)}")
    arch = arch or (default if default in archs or not len(archs) else archs.index[0])
    out = rows[rows.arch == arch].copy()
    others = {**{f"profile {p}": int(n) for p, n in present.items() if p != profile},
              **{f"arch {a}": int(n) for a, n in archs.items() if a != arch}}  # fmt: skip
    selection = f"{source}: profile {profile}, arch {arch} ({len(out)} runs)" + (
        "; not in this summary: "
        + ", ".join(f"{k} ({n} runs)" for k, n in others.items())
        + " -- pass -p profile/-p arch"
        if others
        else ""
    )
    label = source if arch == default and profile == MAIN.get(source, (main,))[0] else f"{source}-{profile}-{arch}"
    gaps = missing(replace(tidy, frame=out), profile) if source == "results" and tidy.overrides == {} else []
    if gaps:
        shown = ", ".join(gaps[:5]) + (f", ... ({len(gaps) - 5} more)" if len(gaps) > 5 else "")
        selection += f"; INCOMPLETE: {len(out)} of {len(out) + len(gaps)} runs of the study grid, missing: {shown}"
    return replace(tidy, frame=out, selection=selection, label=label, missing=gaps)


def _sparse(method: str) -> bool:
    """A sparse model's method (a released method this repo has no class for counts as one)."""
    return method not in prune.METHODS or prune.is_sparse(method)


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
    dense = c[c.method == prune.DENSE]
    sparse = c[(c.method != prune.DENSE) & c.sparsity.isin(sparsities)]
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
    d = df[(df.arch == arch) & df.method.map(_sparse) & df.sparsity.isin(sparsities)]
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
    each cell "mean ± std (n=seeds)", or "mean (1 seed)" where there is no spread to show; "–" where
    the row has no run on that task (the demo's full finetuning runs two tasks: never "nan")."""
    t = t.copy()
    seeds = t["seeds"] if "seeds" in t else pd.Series(2, index=t.index)
    t["cell"] = [_fmt_cell(m, s, n) for m, s, n in zip(t["mean"], t["std"], seeds)]
    return t.pivot_table(index=list(index), columns="dataset", values="cell", aggfunc="first").fillna("–")


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
    d = c[c.method == prune.DENSE].pivot_table(index=["arch", "dataset"], columns="finetune", values="mean")
    if not {"full", "linear"} <= set(d.columns):
        return pd.DataFrame(columns=["arch", "dataset", "difficulty"])
    d = d.dropna(subset=["full", "linear"])
    d["difficulty"] = d["full"] - d["linear"]
    return d.reset_index()[["arch", "dataset", "difficulty"]]


def budget_curve(frame: pd.DataFrame, cfg) -> pd.DataFrame:
    """Transfer accuracy against the upstream training budget (epochs from random weights) of the
    dense-like models (dense and its controls: dense at D, 2D, 5D and GMP's continuation), per
    finetuning mode: the mean over tasks x upstream seeds of each model's accuracy (%), with its 95%
    interval over both (`stats.crossed`), and its gain over dense at D (points), paired on task and
    seeds, with its own interval -- the comparison (the means' intervals hold the tasks' spread).
    Columns: finetune, method, epochs, mean, low, high, gain, gain_low, gain_high, tasks, upstream,
    runs."""
    from . import stats, upstream

    d = frame[~frame.method.map(_sparse)]
    rows = []
    for (ft, m), _ in d.groupby(["finetune", "method"]):
        t = stats.means(d, {"x": (ft, [m], None)})
        e = stats.crossed(t.frame["x"], t.runs)
        row = dict(finetune=ft, method=m, epochs=upstream.budget(m, cfg)[1], mean=100 * e.mean, low=100 * e.low,
                   high=100 * e.high, gain=np.nan, gain_low=np.nan, gain_high=np.nan)  # fmt: skip
        if m != prune.DENSE and ((d.finetune == ft) & (d.method == prune.DENSE)).any():
            row |= _paired_gap(d, ft, m, None, prune.DENSE, "gain")[0]
        rows.append(row | dict(tasks=e.tasks, upstream=e.upstream, runs=e.runs))
    cols = ["finetune", "method", "epochs", "mean", "low", "high", "gain", "gain_low", "gain_high", "tasks",
            "upstream", "runs"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def transfer_gain(frame: pd.DataFrame, needed: dict | None = None) -> pd.DataFrame:
    """Is transfer real? Per finetuning mode and task: the dense upstream model's accuracy minus
    random_init's (the architecture at the same upstream seed's initialisation, finetuned alike), in
    points, paired on the upstream seed and averaged over the seeds both have; `needed`: the least
    gain the profile asks of every task ({"linear": 10, "full": 5}, params `transfer_is_real`), and
    `real` whether it is met. Columns: finetune, dataset, dense, random_init, gain, seeds, needed, real."""
    cols = ["finetune", "dataset", "dense", "random_init", "gain", "seeds", "needed", "real"]
    keys = ["finetune", "dataset", "upstream_seed"]
    pick = {m: frame[frame.method == m].groupby(keys).accuracy.mean() for m in (prune.DENSE, "random_init")}
    both = pd.concat(pick, axis=1).dropna()
    if both.empty:
        return pd.DataFrame(columns=cols)
    t = (
        (100 * both)
        .groupby(level=["finetune", "dataset"])
        .agg(dense=(prune.DENSE, "mean"), random_init=("random_init", "mean"), seeds=(prune.DENSE, "size"))
    )
    t = t.reset_index().assign(gain=lambda d: d.dense - d.random_init)
    t["needed"] = t.finetune.map(needed or {}).astype(float)
    t["real"] = np.where(t.needed.notna(), t.gain >= t.needed, np.nan)
    return t[cols]


def control_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Each sparse method at each sparsity minus what the findings take its gap against
    (`contrasts.Data.base`: its budget-matched control where the results have it), and minus dense at
    D (the paper's literal contrast), per finetuning mode: the mean over tasks x upstream seeds of the
    paired difference (points), with its 95% interval over both (`stats.crossed`). Columns: finetune,
    method, sparsity, control, gap, low, high, literal, literal_low, literal_high, tasks, upstream,
    runs."""
    from . import contrasts

    rows, D = [], contrasts.Data(frame)
    sparse = frame[frame.method.map(_sparse) & frame.method.isin(prune.METHODS)]
    for (ft, m, s), _ in sparse.groupby(["finetune", "method", "sparsity"]):
        ctrl = D.base(ft, m)
        if not prune.reported_in(m, ft) or not D.has(ft, ctrl):
            continue
        gap, _ = _paired_gap(frame, ft, m, s, ctrl, "gap")
        literal, e = _paired_gap(frame, ft, m, s, prune.DENSE, "literal")
        rows.append(dict(finetune=ft, method=m, sparsity=s, control=ctrl, **gap, **literal, tasks=e.tasks,
                         upstream=e.upstream, runs=e.runs))  # fmt: skip
    cols = ["finetune", "method", "sparsity", "control", "gap", "gap_low", "gap_high", "literal", "literal_low",
            "literal_high", "tasks", "upstream", "runs"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def _paired_gap(frame: pd.DataFrame, finetune: str, method: str, sparsity, base: str, name: str):
    """({name, name_low, name_high}, estimate): `method` at `sparsity` (None: any) minus `base`, paired
    on task and seeds, in points: the mean over tasks x upstream seeds with its 95% interval over both
    (`stats.crossed`)."""
    from . import stats

    t = stats.means(frame, {"x": (finetune, [method], sparsity), "base": (finetune, [base], None)})
    e = stats.crossed(t.frame["x"] - t.frame["base"], t.runs)
    return {name: 100 * e.mean, f"{name}_low": 100 * e.low, f"{name}_high": 100 * e.high}, e
