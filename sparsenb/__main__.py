"""Command line: `python -m sparsenb <command>` (also installed as `sparsenb`).

python -m sparsenb demo            # the mini study, every notebook that exists, executed
python -m sparsenb sweep params/sweeps/mini_linear.yaml [--executor local|slurm] [--jobs N]
python -m sparsenb bench loader    # images/s of the ffcv and torch loaders, ratio printed
python -m sparsenb bench engine    # sparse vs today's dense FP32/BF16/INT8 engines, per CPU-second
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from . import evidence, paths
from .config import ROOT
from .errors import ConfigError, UserError


def _run_notebook(nb: str, out: Path, params: dict) -> float:
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    t = time.time()
    pm.execute_notebook(
        str(ROOT / "notebooks" / nb),
        str(out),
        parameters=params,
        kernel_name="python3",
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
    )
    return time.time() - t


DEMO_SWEEPS = [("mini_data", 2), ("demo_linear", 2), ("demo_full", 2), ("demo_full_structured", 2)]


def demo(args) -> int:
    """A slice of the mini study on the shipped reference set (first upstream seed, nothing trained
    upstream): data -> linear and full finetuning -> structure -> speed-up -> the slice's summary,
    marked DEMO. Everything is cached or resumable: a second run only does what is missing."""
    from . import checkpoints, config, sweep
    from . import upstream as up

    cfg = config.load("mini")
    todo = up.select(cfg, seed=cfg["upstream"]["seeds"][0])
    bad = [f"{m} {s:g} ({st})" for m, s, sd in todo if (st := checkpoints.verify(cfg, m, s, sd)) != "ok"]
    if bad:
        raise UserError(
            f"the demo runs on the shipped reference set's first seed; not verified: {', '.join(bad)} "
            f"-- make them: python -m sparsenb upstream build --seed {cfg['upstream']['seeds'][0]}"
        )
    over = {"overrides": dict(cfg["demo"]["overrides"])}  # the demo's records: its own results root
    runs = paths.outputs() / "runs" / "demo"
    t0, failures = time.time(), 0
    print(f"== sparsenb demo (mini profile, reference set seed 0) -> {paths.outputs()}", flush=True)
    for name, jobs in DEMO_SWEEPS:
        failures += sweep.run_sweep(ROOT / "params" / "sweeps" / f"{name}.yaml", "local", jobs, parameters=over)
    steps = [  # 04 and 05 on the shipped models, written beside the demo's records (05's timings differ
        # run to run: the committed outputs/speedup/mini stays the study's)
        ("04_structure.ipynb", {"profile": "mini", **over}),
        ("05_speedup.ipynb", {"profile": "mini", "dataset": "shapes10", "sparsity": 0.9, **over}),
        ("07_summary.ipynb", {"source": "results", **over}),
    ]
    for nb, params in steps:
        dt = _run_notebook(nb, runs / nb, params)
        print(f"  {nb:<20} {dt:6.1f} s", flush=True)
    summary_dir = paths.outputs() / "cache" / "demo" / "summary"  # report.folder of a demo's records
    shutil.copy(runs / "07_summary.ipynb", summary_dir / "07_summary.ipynb")
    print(f"== demo done in {(time.time() - t0) / 60:.1f} min ({failures} failed runs); executed notebooks: {runs}")
    print("\nTable 1 (DEMO, accuracy %):\n" + (summary_dir / "table1_wide.md").read_text())
    own = paths.resolve(over["overrides"]["results_root"]).parent  # 04 and 05 wrote beside the demo's records
    for p in sorted(summary_dir.glob("*.png")) + sorted(own.glob("s*/mini/*.png")):
        print("  figure:", p)
    return 1 if failures else 0


def paper_tables(args) -> int:
    """Table 1, Tables C.1/C.2, the findings and Figures 2-3 from the paper's released per-seed
    results (ResNet50 and MobileNetV1), through 07_summary -- the executed notebook kept beside its
    tables -- then Table 1 and the findings of ResNet50 printed. No training, about a minute."""
    import pandas as pd

    from . import report, summary

    t0 = time.time()
    for arch in ("resnet50", "mobilenet_v1"):
        label = summary.select(summary.load("published"), "published", None, arch).label
        out = paths.outputs() / "summary" / label
        params = {} if arch == "resnet50" else {"source": "published", "arch": arch}  # resnet50: its defaults
        dt = _run_notebook("07_summary.ipynb", out / "07_summary.ipynb", params)
        print(f"== {arch}: {out} ({dt:.0f} s)", flush=True)
    if paths.outputs() == ROOT / "outputs":  # the notebook is kept executed on the released results (nbval)
        report.keep_executed(
            paths.outputs() / "summary/published/07_summary.ipynb", ROOT / "notebooks/07_summary.ipynb"
        )
    res = paths.outputs() / "summary" / "published"
    print("\nTable 1 (ResNet50, the paper's released results; mean accuracy % over seeds):")
    print((res / "table1_wide.md").read_text())
    cols = ["key", "verdict", "verdict_holm", "estimate", "ci_low", "ci_high"]
    print("\nThe paper's findings as tests (95% intervals, points):")
    print(pd.read_csv(res / "findings.csv")[cols].to_string(index=False))
    print(f"\n== paper tables in {time.time() - t0:.0f} s; figures: {res}/figure2.png, figure3.png")
    return 0


def study_sweeps(profile: str) -> list[tuple[Path, int]]:
    """A profile's study as sweeps and their workers: what it makes first, then its grid."""
    from . import profiles

    p = profiles.get(profile)
    return [
        (ROOT / "params" / "sweeps" / f"{name}.yaml", 1 if name in p.serial_sweeps else 2)
        for name in (*p.prep_sweeps, *p.study_sweeps)
    ]


def study(args) -> int:
    """A profile's whole grid (mini: every method x 80/90/95% x 7 tasks x the upstream seeds, linear
    and full; mini_converged: 12 tasks x 5 seeds) on its reference upstream models, then the summary.
    Refuses to start while the reference set is incomplete: its models would otherwise be trained
    inside the grid's runs."""
    from . import checkpoints, config, profiles, sweep
    from . import upstream as up

    cfg = config.load(args.profile)
    todo = up.reference_set(cfg)
    bad = [t for t in todo if checkpoints.verify(cfg, *t) != "ok"]
    if bad and not args.allow_training:
        print(
            f"the upstream reference set has {len(todo) - len(bad)} of {len(todo)} models verified "
            f"({checkpoints.manifest_path(cfg)}); build it first: python -m sparsenb upstream build -p "
            f"{args.profile} (or pass --allow-training)",
            file=sys.stderr,
        )
        return 2
    sweeps = study_sweeps(args.profile)
    study_plan(sweeps)
    t0 = time.time()
    failures = sum(sweep.run_sweep(path, "local", jobs) for path, jobs in sweeps)
    own = {} if profiles.get(args.profile).default else {"profile": args.profile}
    dt = _run_notebook(
        "07_summary.ipynb",
        paths.outputs() / "runs" / "study" / f"07_summary-{profiles.of(cfg).label('results', cfg['arch'])}.ipynb",
        {"source": "results", **own},
    )
    print(f"== study done in {(time.time() - t0) / 60:.1f} min ({failures} failed runs; summary {dt:.0f} s)")
    return 1 if failures else 0


def study_plan(sweeps: list) -> float:
    """The study's plan before it starts, sweep by sweep (runs to do, the kernels that run them, the
    estimate at its workers) and in all; returns the planned hours."""
    from . import sweep

    total = 0.0
    for path, jobs in sweeps:
        pl = sweep.plan(sweep.load_sweep(path))
        hours = (pl["hours"] or 0.0) / jobs
        total += hours
        unknown = f", {pl['unknown']} without an estimate" if pl["unknown"] else ""
        print(
            f"  plan {path.stem}: {pl['points_todo']} of {pl['points']} runs to do in {pl['todo']} kernels, "
            f"~{hours:.1f} h at {jobs} at a time{unknown}",
            flush=True,
        )
    print(f"== study plan: ~{total:.1f} h (resumable: stop it at any time, run it again to continue)", flush=True)
    return total


def sweep(args) -> int:
    from . import sweep as sw

    if args.plan:
        pl = sw.plan(sw.load_sweep(args.file))
        hours = "device-hours unknown" if pl["hours"] is None else f"~{pl['hours']:.1f} device-hours (one run per GPU)"
        known = f" for the {pl['todo'] - pl['unknown']} with an estimate" if pl["unknown"] and pl["hours"] else ""
        cells = f" in {pl['todo']} kernels (one per cell of {', '.join(pl['cell_over'])})" if pl["cell_over"] else ""
        runs = f"{pl['points']} runs, {pl['points_todo']} to do{cells}"
        print(f"== plan {args.file}: {runs}, {hours}{known} {pl['note']}".rstrip())
        for source in pl["estimated_from"]:
            print(f"  estimated from {source}")
        if pl["unknown"]:
            print(f"  {pl['unknown']} runs without an estimate; " + "; ".join(pl["unknown_why"]))
        if pl["not_runnable"]:
            print(
                f"  not planned, no checkpoint under checkpoint_root and none released: {', '.join(pl['not_runnable'])}"
            )
        print(f"  on SLURM: {pl['slurm_array']} (python -m sparsenb sweep {args.file} --executor slurm submits it)")
        return 0
    failures = sw.run_sweep(
        args.file, args.executor, args.jobs, dry_run=args.dry_run, partition=args.partition, account=args.account
    )
    return 1 if failures else 0


def bench(args) -> int:
    from . import bench as b

    return b.main(args.what, quick=args.quick, steps=args.steps, compile=args.compile, cores=args.cores)


def upstream_cmd(args) -> int:
    """`upstream convergence` measures D; `upstream build` makes the reference set (resumable, seed
    by seed, every model registered in manifest.csv as it finishes); `upstream verify` checks it."""
    from . import config
    from . import upstream as up

    if args.what == "pilots":
        from . import pilots

        if not args.table:
            pilots.run(args.pilot)
        print(pilots.table().to_string(index=False))
        return 0
    cfg = config.load(args.profile, args.overrides)
    if args.what in ("convergence", "calibrate-str"):
        from . import calibration

        report = calibration.report_D if args.what == "convergence" else calibration.report_s_init
        from . import profiles

        report(cfg, profiles.of(cfg).studies_dir(cfg))
        return 0
    if args.what == "table":
        from . import analysis, checkpoints

        t = analysis.reference_table(cfg)
        print(t.to_string(index=False) if len(t) else f"no models in {checkpoints.manifest_path(cfg)} yet")
        return 0
    todo = up.select(cfg, args.method, args.sparsity, args.seed)
    if args.what == "plan":
        up.print_plan(cfg, todo)
        return 0
    if args.what == "verify":
        return 1 if up.verify_all(cfg, todo) else 0
    if args.what == "adopt":
        from . import checkpoints

        if not args.source:
            raise ConfigError(
                "upstream adopt needs --source <checkpoint root>, e.g. outputs/upstream/pilots/c32_w24_D112"
            )
        taken = checkpoints.adopt(cfg, paths.resolve(args.source), todo)
        print(f"took {len(taken)} models from {args.source}: {', '.join(taken) or 'none'}")
        return 0
    up.build_all(cfg, todo)
    return 0


def finetune_recipe(args) -> int:
    """The full-finetuning (or, --detection, 09's) recipe search on validation with the dense model (resumable)."""
    from . import calibration, config

    report = calibration.report_detection_recipe if args.detection else calibration.report_full_recipe
    report(config.load(args.profile), paths.outputs() / "finetune")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="sparsenb", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error, not one line")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="run the mini pipeline end to end at demonstration scale").set_defaults(fn=demo)
    sub.add_parser(
        "paper-tables", help="Table 1, C.1/C.2, findings and figures from the paper's released results (~1 min)"
    ).set_defaults(fn=paper_tables)
    pst = sub.add_parser("study", help="a profile's whole grid on its reference upstream models (resumable)")
    pst.add_argument("-p", "--profile", default="mini", help="whose study (params/<name>.yaml; default mini)")
    pst.add_argument("--allow-training", action="store_true", help="make missing upstream models inside the grid")
    pst.add_argument(
        "--replace", action="store_true", help="let the summary replace the committed one (after new records)"
    )
    pst.set_defaults(fn=study)
    ps = sub.add_parser("sweep", help="run a grid of notebooks (resumable); see params/sweeps/")
    ps.add_argument("file", help="params/sweeps/<name>.yaml")
    ps.add_argument("--executor", choices=["local", "slurm"], default="local")
    ps.add_argument("--jobs", type=int, default=1, help="local runs at a time")
    ps.add_argument("--dry-run", action="store_true", help="list what would run")
    ps.add_argument("--partition", help="SLURM partition (overrides the file's slurm: slurm_partition)")
    ps.add_argument("--account", help="SLURM account (overrides the file's slurm: slurm_account)")
    ps.add_argument("--plan", action="store_true", help="runs to do, device-hours, the SLURM array")
    ps.set_defaults(fn=sweep)
    pr = sub.add_parser(
        "finetune-recipe", help="choose full finetuning's lr and epochs on validation with the dense model"
    )
    pr.add_argument("--detection", action="store_true", help="09_detection's recipe instead (params detection_search)")
    pr.add_argument("-p", "--profile", default="mini", help="whose recipe (params/<name>.yaml)")
    pr.set_defaults(fn=finetune_recipe)
    pu = sub.add_parser("upstream", help="the mini upstream reference checkpoints (outputs/upstream/mini)")
    pu.add_argument(
        "what", choices=["convergence", "calibrate-str", "plan", "build", "verify", "table", "pilots", "adopt"]
    )
    pu.add_argument("--source", help="adopt: a checkpoint root whose models of the same recipe the set takes")
    pu.add_argument(
        "--replace", action="store_true", help="build: replace committed models made with another recipe (evidence)"
    )
    pu.add_argument("--pilot", action="append", help="pilots: only this pilot (params/pilots/regime.yaml)")
    pu.add_argument("--table", action="store_true", help="pilots: only write and print the pilot table")
    pu.add_argument(
        "-p", "--profile", default="mini", help="a profile that makes its upstream models (params/<name>.yaml)"
    )
    pu.add_argument("--seed", type=int, default=None, help="only this upstream seed")
    pu.add_argument("--method", default=None, help="only this method")
    pu.add_argument("--sparsity", type=float, default=None, help="only this sparsity")
    pu.add_argument(
        "--overrides", type=json.loads, default=None, help="dotted config keys as JSON, e.g. '{\"upstream.D\": 7}'"
    )
    pu.set_defaults(fn=upstream_cmd)
    pb = sub.add_parser("bench", help="benchmarks; results under outputs/bench/")
    pb.add_argument("what", choices=["loader", "engine", "train"])
    pb.add_argument("--quick", action="store_true", help="fewer iterations, for checks")
    pb.add_argument("--steps", type=int, default=None, help="train: timed steps per variant (default 30)")
    pb.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train: a torch.compile variant (default: on a GPU)",
    )
    pb.add_argument("--cores", type=int, default=None, help="engine: threads per engine (default 1)")
    pb.set_defaults(fn=bench)
    args = p.parse_args(argv)
    if getattr(args, "replace", False):  # the explicit flag: this command may replace committed evidence
        os.environ[evidence.FLAG] = "1"
    try:
        return args.fn(args)
    except UserError as e:  # bad input, a missing dataset or checkpoint: the message names the fix
        if args.debug:
            raise
        print(f"sparsenb {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
