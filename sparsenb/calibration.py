"""Measurements that set the mini recipe, never chosen on a test set: the dense budget D (dense
convergence over budgets, `choose_D`) and STR's s_init per target (`choose_s_init`, by achieved
sparsity only), and the full-finetuning recipe (`full_recipe`, `choose_full_recipe`: lr and epochs
run with the dense model, chosen on validation accuracy). All are resumable tables that parallel
workers share.

    conv = calibration.convergence(cfg, out_dir)       # out_dir/convergence.csv
    calibration.choose_D(conv, tolerance=0.01)
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from . import devices, files, models, prune, upstream
from .config import Config

if TYPE_CHECKING:
    import pandas as pd


RUN_KEYS = ("epochs", "seed", "grad_clip", "lr", "weight_decay", "batch_size")


def choose_D(conv: "pd.DataFrame", tolerance: float, opt: dict | None = None) -> int:
    """The smallest budget whose mean validation top-1 (over seeds; runs of the recipe `opt`, with
    gradient clipping) is within `tolerance` of the best budget's. A pure function of the table."""
    rows = conv
    if "grad_clip" in rows:
        rows = rows[rows.grad_clip.notna()]
    if opt is not None and "lr" in rows:
        rows = rows[
            (rows.lr == opt["lr"]) & (rows.weight_decay == opt["weight_decay"]) & (rows.batch_size == opt["batch_size"])
        ]
    mean = rows.groupby("epochs")["val_top1"].mean()
    return int(min(e for e, v in mean.items() if v >= mean.max() - tolerance))


def convergence_runs(cfg: Config) -> list[dict]:
    """The dense runs of the convergence study: the recipe at every budget of `convergence.epochs`
    (every seed up to `all_seeds_up_to` epochs, the first seed beyond), once without gradient
    clipping, and the recipe search (`convergence.search`: other lr / weight decay / batch size at
    one budget, first seed) that shows whether another shared recipe would converge sooner."""
    up = cfg["upstream"]
    conv, opt = up["convergence"], up["optimizer"]
    base = {
        "grad_clip": up["grad_clip"],
        "lr": opt["lr"],
        "weight_decay": opt["weight_decay"],
        "batch_size": opt["batch_size"],
    }
    seeds = conv["seeds"]
    runs = [
        dict(base, epochs=e, seed=s)
        for e in conv["epochs"]
        for s in (seeds if e <= conv["all_seeds_up_to"] else seeds[:1])
    ]
    runs.append(dict(base, epochs=conv["all_seeds_up_to"], seed=seeds[0], grad_clip=None))
    search = conv["search"]  # null: no recipe search
    if search is not None:
        for lr, wd, bs in itertools.product(search["lr"], search["weight_decay"], search["batch_size"]):
            runs.append(dict(base, epochs=search["epochs"], seed=seeds[0], lr=lr, weight_decay=wd, batch_size=bs))
    out, seen = [], set()
    for r in runs:
        key = tuple(r[k] for k in RUN_KEYS)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return sorted(out, key=lambda r: -r["epochs"] * 128 / r["batch_size"])  # longest first


def _same_run(df, r) -> bool:
    if not len(df) or not set(RUN_KEYS) <= set(df.columns):
        return False
    m = True
    for k in RUN_KEYS:
        m = m & (df[k].isna() if r[k] is None else df[k] == r[k])
    return bool(m.any())


def convergence(cfg: Config, out_dir: Path, device=None) -> "pd.DataFrame":
    """Train every run of `convergence_runs` (each a full cosine run of its budget); val and test
    top-1 go to out_dir/convergence.csv. Resumable (also inside a run: a long one continues from its
    last epoch), and workers in parallel share the list."""

    def name_of(r):
        return "convergence-" + "-".join(str(r[k]) for k in RUN_KEYS)

    def train_run(r):
        rcfg = copy.deepcopy(cfg)
        rcfg["upstream"]["optimizer"].update(lr=r["lr"], weight_decay=r["weight_decay"], batch_size=r["batch_size"])
        rcfg["upstream"]["grad_clip"] = r["grad_clip"]
        devices.seed_everything(r["seed"])
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
        info = upstream.fit_recipe(
            model,
            prune.make("dense", 0.0, 1),
            rcfg,
            r["seed"],
            r["epochs"],
            device,
            desc=f"dense {r}",
            resume=out_dir / f".{name_of(r)}.partial.pt",
        )
        return {
            **r,
            "top1": info["test_top1"],
            "val_top1": info["val_top1"],
            "seconds": round(info["seconds"], 1),
            "final_loss": info["curve"][-1]["loss"],
            "built_on": devices.machine(),
        }

    return resumable_rows(
        out_dir / "convergence.csv",
        convergence_runs(cfg),
        name_of,
        _same_run,
        train_run,
        sort=["lr", "epochs", "seed"],
    )


def str_calibration(cfg: Config, out_dir: Path, device=None) -> "pd.DataFrame":
    """STR lands where its thresholds put it; `s_init` is STR's knob for where that is. Runs STR at
    its budget on the first upstream seed for each `s_init` of `upstream.methods.str.calibration`,
    recording the achieved sparsity (and, for the record only, top-1) in str_calibration_D<D>.csv.
    `choose_s_init` then picks each target's s_init by achieved sparsity alone -- never by accuracy."""
    up = cfg["upstream"]
    seed = up["seeds"][0]
    own, _ = upstream.budget("str", cfg)

    def train_run(s_init):
        devices.seed_everything(seed)
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
        m = prune.make("str", 0.5, 1, s_init={0.5: s_init})
        partial = out_dir / f".str-calibration-{s_init}-D{float(up['D']):g}.partial.pt"  # a killed run resumes
        info = upstream.fit_recipe(
            model, m, cfg, seed, own, device, desc=f"str calibration s_init {s_init}", resume=partial
        )
        return {
            "s_init": s_init,
            "seed": seed,
            "epochs": own,
            "achieved_sparsity": info["sparsity"],
            "val_top1": info["val_top1"],
            "top1": info["test_top1"],
            "seconds": round(info["seconds"], 1),
        }

    return resumable_rows(
        out_dir / f"str_calibration_D{float(up['D']):g}.csv",  # one file per D: its rows hold at that D only
        up["methods"]["str"]["calibration"],
        lambda s_init: f"str-calibration-{s_init}",
        lambda done, s_init: bool(len(done)) and bool((done.s_init == s_init).any()),
        train_run,
        sort=["s_init"],
    )


def full_recipe_runs(cfg: Config) -> list[tuple[float, int, str]]:
    """(lr, epochs, dataset) of the full-finetuning recipe search: every candidate of `full_search`
    on every downstream task."""
    fs = cfg["full_search"]
    return [(lr, e, ds) for e in fs["epochs"] for lr in fs["lr"] for ds in cfg["datasets"]]


def full_recipe(cfg: Config, out_dir: Path, device=None) -> "pd.DataFrame":
    """Full finetuning of the dense model (upstream seed and finetuning seed: the first of each) at
    every (lr, epochs) of `full_search` on every task, the milestones scaled with the epochs as in
    `full`. Only validation accuracy is recorded (at the epoch chosen on validation): the recipe is
    chosen on it, and the test set is never read for it. out_dir/full_recipe_D<D>.csv."""
    from . import finetune, specs  # finetuning sits above upstream; only this measurement needs it

    full = cfg["full"]

    def train_run(item):
        lr, epochs, ds = item
        rcfg = copy.deepcopy(cfg)
        scale = epochs / full["epochs"]
        rcfg["full"].update(lr=lr, epochs=epochs, milestones=[round(m * scale) for m in full["milestones"]])
        rcfg["full"]["lr_overrides"] = {}
        run = {"method": prune.DENSE, "sparsity": 0.0, "dataset": ds, "seed": cfg["seeds"][0]}
        spec = specs.build(specs.FullSpec, rcfg, {**run, "upstream_seed": cfg["upstream"]["seeds"][0]})
        res = finetune.full(spec, device)
        return {
            "lr": lr,
            "epochs": epochs,
            "dataset": ds,
            "val_accuracy": res["val_accuracy"],
            "val_epoch": res["reported_epoch"],
            "seconds": round(res["train_seconds"], 1),
        }

    return resumable_rows(
        out_dir / f"full_recipe_D{float(cfg['upstream']['D']):g}.csv",  # the dense model of this D
        full_recipe_runs(cfg),
        lambda it: f"full-recipe-{it[0]:g}-{it[1]}-{it[2]}",
        lambda done, it: (
            bool(len(done)) and bool(((done.lr == it[0]) & (done.epochs == it[1]) & (done.dataset == it[2])).any())
        ),
        train_run,
        sort=["epochs", "lr", "dataset"],
    )


def choose_full_recipe(table: "pd.DataFrame", tasks: list[str]) -> tuple[float, int]:
    """(lr, epochs) with the highest validation accuracy averaged over `tasks`, among the candidates
    that ran on every one of them (the shorter run on a tie). A pure function of the table."""
    done = table[table.dataset.isin(tasks)]
    n = done.groupby(["lr", "epochs"]).dataset.nunique()
    mean = done.groupby(["lr", "epochs"]).val_accuracy.mean()[n == len(tasks)]
    if not len(mean):
        raise ValueError("no candidate of the full-finetuning recipe search has run on every task yet")
    best = max(mean.items(), key=lambda kv: (round(kv[1], 6), -kv[0][1]))
    return float(best[0][0]), int(best[0][1])


def detection_recipe(cfg: Config, out_dir: Path, device=None) -> "pd.DataFrame":
    """09's recipe search, as `full_recipe`: the dense model (first upstream and finetuning seeds) in
    the detector at every (lr, epochs) of `detection_search` on every detection task, milestones
    scaled with the epochs; only validation mAP@0.5 (at the epoch chosen on it) is recorded -- the
    recipe is chosen on it. out_dir/detection_recipe_D<D>.csv (column `dataset`: the task)."""
    from . import detection, specs

    det, search = cfg["detection"], cfg["detection_search"]

    def train_run(item):
        lr, epochs, task = item
        rcfg = copy.deepcopy(cfg)
        scale = epochs / det["epochs"]
        rcfg["detection"].update(lr=lr, epochs=epochs, milestones=[round(m * scale) for m in det["milestones"]])
        p = {"method": prune.DENSE, "sparsity": 0.0, "task": task, "seed": cfg["seeds"][0]}
        res = detection.run(
            specs.build(specs.DetectionSpec, rcfg, {**p, "upstream_seed": cfg["upstream"]["seeds"][0]}), device
        )
        chosen = next(r for r in res["curve"] if r["epoch"] == res["reported_epoch"])
        return {
            "lr": lr,
            "epochs": epochs,
            "dataset": task,
            "val_accuracy": chosen["val_map50"],
            "val_epoch": res["reported_epoch"],
            "seconds": round(res["seconds"], 1),
        }

    items = [(lr, e, t) for e in search["epochs"] for lr in search["lr"] for t in det["tasks"]]
    return resumable_rows(
        out_dir / f"detection_recipe_D{float(cfg['upstream']['D']):g}.csv",
        items,
        lambda it: f"detection-recipe-{it[0]:g}-{it[1]}-{it[2]}",
        lambda done, it: (
            bool(len(done)) and bool(((done.lr == it[0]) & (done.epochs == it[1]) & (done.dataset == it[2])).any())
        ),
        train_run,
        sort=["epochs", "lr", "dataset"],
    )


def report_detection_recipe(cfg: Config, out_dir: Path) -> tuple[float, int]:
    """`python -m sparsenb finetune-recipe --detection`: the search measured (resumable), its mean
    validation mAP@0.5 per candidate printed, and the (lr, epochs) it chooses beside params'."""
    table = detection_recipe(cfg, out_dir)
    print(table.groupby(["epochs", "lr"]).val_accuracy.mean().round(4).to_string())
    lr, epochs = choose_full_recipe(table, list(cfg["detection"]["tasks"]))
    have = f"lr {cfg['detection']['lr']:g}, {cfg['detection']['epochs']} epochs"
    print(f"chosen on validation: lr {lr:g}, {epochs} epochs; params/{cfg['profile']}.yaml detection has {have}")
    return lr, epochs


def resumable_rows(csv: Path, items, name_of, done_in, train_run, sort) -> "pd.DataFrame":
    """One CSV row per item, made by `train_run(item)`: items already in the CSV are skipped, an item
    another worker holds (a non-blocking claim) is left to it, and each new row is added under the
    CSV's lock with an atomic rewrite -- so a killed run loses no finished row and parallel
    workers share the list. Returns the CSV."""
    import pandas as pd

    csv.parent.mkdir(parents=True, exist_ok=True)
    read = lambda: pd.read_csv(csv) if csv.exists() else pd.DataFrame()  # noqa: E731
    for item in items:
        claim = files.claim(csv.parent / f".{name_of(item)}")
        if claim is None:  # another worker is training this one
            continue
        try:
            with files.locked(csv):
                if done_in(read(), item):
                    continue
            row = train_run(item)
            with files.locked(csv):
                out = pd.concat([read(), pd.DataFrame([row])], ignore_index=True).sort_values(sort)
                with files.atomic(csv) as tmp:
                    out.to_csv(tmp, index=False, float_format="%.6g")
        finally:
            claim.close()
    return read()


def choose_s_init(calib: "pd.DataFrame", target: float) -> float:
    """The s_init whose achieved sparsity is nearest `target` on the logit scale, interpolated
    linearly between the two calibration runs around it (s_init -> logit(sparsity) is monotone)."""
    import numpy as np

    c = calib.sort_values("s_init")
    x, y = c.s_init.to_numpy(float), np.log(c.achieved_sparsity / (1 - c.achieved_sparsity)).to_numpy(float)
    t = np.log(target / (1 - target))
    order = np.argsort(y)
    return float(round(np.interp(t, y[order], x[order]), 2))


def report_D(cfg: Config, out_dir: Path) -> int:
    """`python -m sparsenb upstream convergence`: the convergence table measured (resumable), its
    figure, the table and the D it gives printed beside params' D. Returns that D."""
    from . import plots

    conv = convergence(cfg, out_dir)
    plots.convergence(conv, cfg["upstream"]["optimizer"], path=out_dir / "convergence.png", D=cfg["upstream"]["D"])
    print(conv.to_string(index=False))
    D = choose_D(conv, cfg["upstream"]["convergence"]["tolerance"], cfg["upstream"]["optimizer"])
    print(
        f"D = {D} epochs (smallest budget within {100 * cfg['upstream']['convergence']['tolerance']:g} points "
        f"of the best mean validation top-1); params/{cfg['profile']}.yaml has D = {cfg['upstream']['D']}"
    )
    return D


def report_s_init(cfg: Config, out_dir: Path) -> dict[float, float]:
    """`python -m sparsenb upstream calibrate-str`: STR's calibration table measured (resumable)
    and printed, with the s_init it gives per target sparsity beside params' s_init."""
    calib = str_calibration(cfg, out_dir)
    print(calib.to_string(index=False))
    chosen = {s: choose_s_init(calib, s) for s in cfg["sparsities"]}
    have = cfg["upstream"]["methods"]["str"]["s_init"]
    print(f"s_init by achieved sparsity: {chosen}; params/{cfg['profile']}.yaml has {have}")
    return chosen


def report_full_recipe(cfg: Config, out_dir: Path) -> tuple[float, int]:
    """`python -m sparsenb finetune-recipe`: the full-finetuning recipe search measured (resumable),
    its mean validation accuracy per candidate printed, and the (lr, epochs) it chooses beside params'."""
    table = full_recipe(cfg, out_dir)
    mean = table.groupby(["epochs", "lr"]).agg(val_accuracy=("val_accuracy", "mean"), tasks=("dataset", "nunique"))
    print(mean.round(4).to_string())
    lr, epochs = choose_full_recipe(table, cfg["datasets"])
    have = f"lr {cfg['full']['lr']:g}, {cfg['full']['epochs']} epochs"
    print(f"chosen on validation: lr {lr:g}, {epochs} epochs; params/{cfg['profile']}.yaml full has {have}")
    return lr, epochs
