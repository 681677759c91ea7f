"""Sweeps: a grid of notebook runs, resumable, local or on SLURM.

    python -m sparsenb sweep params/sweeps/mini_linear.yaml [--executor local|slurm] [--jobs N]

A sweep file names the notebooks, the profile, a grid (every combination is one run) and fixed
parameters (`overrides` among them: dotted config keys, recorded in each run id); `slurm:` holds
the resources of the job array. Each run is one papermill execution
(kernel `python3`, a process of its own) whose executed notebook is saved under outputs/runs/<sweep>/;
locally, `--jobs` worker processes execute them, on SLURM one array task each. A run is skipped when
its result records exist (a notebook with a run spec, `sparsenb.specs`: the run id the notebook
itself would write, under the results root of its configuration, `results.root_of`) or when an
earlier sweep finished it (a `.done` marker beside the executed notebook), so a sweep killed midway
and started again reruns only what is missing. A failed run does not stop the sweep: the failures
are listed at the end and the exit status is non-zero.

`cell_over: [upstream_seed]` (02/03 sweeps): the grid's upstream seeds of one (method, sparsity,
dataset, seed) are one cell, run by one notebook execution (one kernel, imports paid once) that
writes each seed's record as it lands -- the same runs, run ids and records as one execution each.
A cell is done when all its records exist; a cell killed midway is started again with only its
missing seeds. Without the key every grid point is one execution, as ever.
"""

from __future__ import annotations

import functools
import itertools
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import config, files, paths, profiles, progress, prune, results, slurm, specs
from .config import ROOT, ConfigError
from .errors import UserError, read_yaml
from .runs import defaults, execute_notebook, kind_of, notebook_path, parameters, resolve, unchecked

SKIPPED = -1  # exit status of a run left alone: another process is running it


@dataclass
class Run:
    notebook: str  # name (notebooks/<name>.ipynb) or a path to a notebook
    params: dict
    sweep: str
    out_dir: Path
    record: specs.Spec | None = None  # the run's spec, for a notebook that records (when known)
    grid_keys: tuple = ()  # the parameters that vary: they name the run
    env: dict = field(default_factory=dict)  # extra environment of its process
    cell_key: str = ""  # a cell: the parameter whose values (a list in params) run in one execution
    cell: dict = field(default_factory=dict)  # a cell: value -> the spec of its run (when known)
    name: str = field(init=False)

    def __post_init__(self):
        import re

        stem = Path(self.notebook).stem
        tag = "".join(f"-{k}={_tag(self.params[k])}" for k in self.grid_keys if k in self.params)
        self.name = re.sub(r"[^A-Za-z0-9._=+-]", "_", f"{stem}-{self.params.get('profile', '')}{tag}")

    @property
    def path(self) -> Path:
        return notebook_path(self.notebook)

    @property
    def output(self) -> Path:
        return self.out_dir / f"{self.name}.ipynb"

    @property
    def marker(self) -> Path:
        return self.out_dir / f".{self.name}.done"

    def finished(self) -> bool:
        """A recording notebook's run is done when its records are complete (a damaged one is
        rerun), a cell when all its runs' are; another notebook's when the sweep marked it done."""
        if self.cell_key:
            return bool(self.cell) and all(results.done(s) for s in self.cell.values())
        if self.record is not None:
            return results.done(self.record)
        return self.marker.exists()

    def todo_params(self) -> dict:
        """The parameters to execute it with: a cell's values narrowed to its runs not yet recorded."""
        if not self.cell:
            return self.params
        return {**self.params, self.cell_key: [v for v, s in self.cell.items() if not results.done(s)]}

    def size(self, todo: bool = False) -> int:
        """The grid points it runs (a cell: its values; `todo`: those not yet recorded)."""
        return len((self.todo_params() if todo else self.params)[self.cell_key]) if self.cell_key else 1

    def damaged_record(self) -> str | None:
        """'<path>: <why>' when a file stands where one of this run's records should be but is not one."""
        mine = list(self.cell.values()) or ([self.record] if self.record is not None else [])
        for r in (r for spec in mine for r in spec.records()):
            why = results.problem(results.path(r))
            if why and why != "missing":
                return f"{results.path(r)}: {why}"
        return None


def _tag(value) -> str:
    """A parameter's value in a run's name (a cell's values joined by +)."""
    return "+".join(map(str, value)) if isinstance(value, list) else str(value)


def _record_of(notebook: str, params: dict) -> specs.Spec | None:
    """The run's spec as the notebook will record it (sparsenb.runs.resolve: what runs.setup, which
    the notebook itself calls, computes), for the notebooks that record."""
    return resolve(notebook, **params)[1] if kind_of(notebook) else None


def _profile(p: dict):
    """The configuration of a run's parameters (profile and overrides; values not checked)."""
    return _loaded(p.get("profile") or "mini", json.dumps(specs.overrides_of(p), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _loaded(profile: str, overrides: str):  # a grid's points share a handful of configurations
    return config.load(profile, json.loads(overrides))


def _in_reference_set(notebook: str, params: dict) -> bool:
    """Whether the upstream model a run needs is one of the profile's reference set (01_upstream's
    `seed` is the upstream seed; the finetuning notebooks name it `upstream_seed`)."""
    from . import upstream

    p = parameters(notebook, params)
    key = "seed" if Path(notebook).stem == "01_upstream" else "upstream_seed"
    return float(p["sparsity"]) in upstream.sparsities_of(_profile(p), p["method"], int(p[key]))


def load_sweep(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"no sweep file {path}; the sweeps are: "
            f"{', '.join(str(p.relative_to(ROOT)) for p in sorted((ROOT / 'params' / 'sweeps').glob('*.yaml')))}"
        )
    spec = read_yaml(path) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping (notebooks, profile, grid, parameters, ...)")
    valid = (
        "notebooks",
        "profile",
        "grid",
        "parameters",
        "slurm",
        "dense_only_at_zero",
        "reference_set_only",
        "cell_over",
        "name",
    )
    unknown = set(spec) - set(valid)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; valid: {', '.join(valid)}")
    if not spec.get("notebooks"):
        raise ConfigError(f"{path}: 'notebooks' is missing (a list of notebook names)")
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{path}: 'grid' is a mapping of parameter -> list of values, got {grid!r}")
    empty = [k for k, v in grid.items() if isinstance(v, list) and not v]
    if empty:
        raise ConfigError(
            f"{path}: grid key{'s' * (len(empty) > 1)} {', '.join(empty)} {'is' if len(empty) == 1 else 'are'} an "
            f"empty list, which makes 0 runs: give {'it' if len(empty) == 1 else 'them'} at least one value, or "
            f"remove {'it' if len(empty) == 1 else 'them'} (the notebook's default is then used)"
        )
    spec["grid"] = _from_profile(path, spec)
    _check_cell_over(path, spec)
    spec.setdefault("name", path.stem)
    slurm.resources(spec.get("slurm"))  # unknown resource names refused before anything runs
    return spec


# grid values a sweep may take from its profile's params instead of repeating them: `key: profile`
FROM_PROFILE = {
    "method": ("upstream.methods", lambda c: list(c["upstream"]["methods"])),
    "dataset": ("datasets", lambda c: list(c["datasets"])),
    "sparsity": ("sparsities", lambda c: list(c["sparsities"])),
    "upstream_seed": ("upstream.seeds", lambda c: list(c["upstream"]["seeds"])),
}


def _from_profile(path: Path, spec: dict) -> dict:
    """The grid with each `key: profile` replaced by the profile's own list (FROM_PROFILE)."""
    grid = dict(spec.get("grid") or {})
    for key, value in grid.items():
        if value != "profile":
            continue
        if key not in FROM_PROFILE:
            raise ConfigError(f"{path}: {key}: profile -- only {', '.join(FROM_PROFILE)} can be taken from the profile")
        where, get = FROM_PROFILE[key]
        cfg = _loaded(spec.get("profile") or "mini", "{}")
        try:
            grid[key] = get(cfg)
        except (KeyError, TypeError):
            raise ConfigError(f"{path}: {key}: profile -- the {cfg['profile']} profile has no {where}") from None
    return grid


def _check_cell_over(path: Path, spec: dict) -> None:
    """`cell_over`: a list of one grid key that every notebook of the sweep takes several values of."""
    over = spec.get("cell_over")
    if over is None:
        return
    takes = [set(kind_of(nb).cell_over if kind_of(nb) else ()) for nb in spec["notebooks"]]
    common = sorted(set.intersection(*takes)) if takes else []
    grid = spec.get("grid") or {}
    if not (isinstance(over, list) and len(over) == 1 and over[0] in common and isinstance(grid.get(over[0]), list)):
        raise ConfigError(
            f"{path}: cell_over is a list of one grid key (a list of values) that the sweep's notebooks take "
            f"several values of, to run them in one kernel; "
            + (
                f"these notebooks take: {', '.join(common)} (e.g. cell_over: [{common[0]}])"
                if common
                else "these notebooks take none: remove cell_over"
            )
            + f"; got {over!r}"
        )


def expand(spec: dict, out_root: str | Path | None = None, check: bool = True) -> list[Run]:
    """Every run of the grid (dense only at sparsity 0 unless dense_only_at_zero is false), in order;
    with `cell_over`, one per cell (its values of that key, those the reference set has, as a list).
    `check=False` (planning before the data and checkpoints are in place): parameter names are still
    checked, values and records are not."""
    for cached in (_throughput, _per_epoch, _median_wall, _loaded):  # params, records may have changed
        cached.cache_clear()
    out_dir = Path(out_root or paths.outputs() / "runs") / spec["name"]
    grid = {k: v if isinstance(v, list) else [v] for k, v in (spec.get("grid") or {}).items()}
    cell_key = (spec.get("cell_over") or [""])[0]
    keys = [k for k in grid if k != cell_key]
    runs, seen = [], set()
    for nb in spec["notebooks"]:
        for values in itertools.product(*(grid[k] for k in keys)):
            members = []  # the grid points of this cell (one without cell_over) not listed before
            for value in grid[cell_key] if cell_key else [None]:
                params = _point(spec, nb, {**dict(zip(keys, values)), **({cell_key: value} if cell_key else {})})
                key = (nb, json.dumps(params, sort_keys=True))
                if params is not None and key not in seen:
                    seen.add(key)
                    members.append(params)
            names, name = tuple(grid), spec["name"]
            if not cell_key:
                runs += [Run(nb, p, name, out_dir, _record_of(nb, p) if check else None, names) for p in members]
            elif members:
                cell = {p[cell_key]: _record_of(nb, p) for p in members} if check else {}
                params = {**members[0], cell_key: [p[cell_key] for p in members]}
                runs.append(Run(nb, params, name, out_dir, None, names, cell_key=cell_key, cell=cell))
    return runs


def _point(spec: dict, nb: str, point: dict) -> dict | None:
    """The parameters of one grid point of notebook `nb` (None: not run, its model is not in the
    reference set); dense methods at sparsity 0 unless dense_only_at_zero is false."""
    params = {
        **({"profile": spec.get("profile", "mini")} if "profile" in defaults(nb) else {}),
        **(spec.get("parameters") or {}),
        **point,
    }
    parameters(nb, params)  # a key the notebook does not declare: refused, valid ones named
    method = params.get("method")
    if spec.get("dense_only_at_zero", True) and method in prune.METHODS and not prune.is_sparse(method):
        params["sparsity"] = 0.0
    if spec.get("reference_set_only") and not _in_reference_set(nb, params):
        return None
    return params


def plan(spec: dict, out_root=None) -> dict:
    """What a sweep would cost: runs in all and still to do, their estimated device-hours, and the
    SLURM array that would run them. A finetuning run's time comes from `sparsenb.planning` (records,
    the measured training throughput, or steps timed here), another notebook's from this repo's
    records of it (median wall time); runs with no estimate are counted, not guessed (`unknown`). On
    the paper profile a run whose checkpoint is neither under checkpoint_root nor released is not
    planned: it is listed (`not_runnable`)."""
    try:
        runs, note = expand(spec, out_root), ""
        todo = [r for r in runs if not r.finished()]
    except UserError as e:  # data or checkpoints not in place yet: count the grid, know nothing done
        runs, note = expand(spec, out_root, check=False), f"(which runs are done is unknown: {e})"
        todo = runs
    blocked = [r for r in runs if not _runnable(r)]
    runs, todo = [r for r in runs if r not in blocked], [r for r in todo if r not in blocked]
    seconds, how, unknown, why = 0.0, set(), 0, set()
    for r in todo:
        secs, source = _run_seconds(r)
        seconds += secs or 0.0
        unknown += secs is None
        (how if secs is not None else why).add(source)
    slurm = dict(spec.get("slurm") or {})
    par = slurm.get("slurm_array_parallelism", len(todo))
    array = (
        f"sbatch --array=0-{max(len(todo) - 1, 0)}%{par} --gpus-per-node={slurm.get('gpus_per_node', 0)} "
        f"--cpus-per-task={slurm.get('cpus_per_task', 1)} --mem={slurm.get('mem_gb', 8)}G "
        f"--time={slurm.get('timeout_min', 60)}"
        + (f" --partition={slurm['slurm_partition']}" if "slurm_partition" in slurm else "")
    )
    return {
        "runs": len(runs),  # notebook executions (a cell: one)
        "todo": len(todo),
        "points": sum(r.size() for r in runs),  # runs of the grid, one record each (a cell: its values)
        "points_todo": sum(r.size(todo=True) for r in todo),
        "cell_over": spec.get("cell_over") or [],
        "hours": seconds / 3600 if unknown < len(todo) or not todo else None,
        "unknown": unknown,
        "unknown_why": sorted(why),
        "estimated_from": sorted(how),
        "not_runnable": sorted({_label(r) for r in blocked}),
        "slurm_array": array,
        "note": note,
    }


def _label(run: Run) -> str:
    return f"{run.params.get('method')} {float(run.params.get('sparsity', 0)):g}"


def _runnable(run: Run) -> bool:
    """A profile of published checkpoints (paper): a (method, sparsity) with a checkpoint under
    checkpoint_root or a released one (`sparsenb.planning.runnable`); every run of the others."""
    from . import planning

    p = parameters(run.notebook, run.params)
    made_here = profiles.get(p.get("profile") or profiles.default().name).makes_upstream
    if made_here or kind_of(run.notebook) is None or "method" not in p:
        return True
    return planning.runnable(_profile(p), p["method"], float(p["sparsity"]))


def _run_seconds(run: Run) -> tuple[float | None, str]:
    """(planned seconds, where the estimate comes from) of what is left of a run (a cell: its runs
    not yet recorded, summed)."""
    if run.cell_key:
        left = run.todo_params()[run.cell_key]
        planned = [_point_seconds(run.notebook, {**run.params, run.cell_key: v}) for v in left]
        secs = [t for t, _ in planned]
        return (None if None in secs else sum(secs)), planned[0][1] if planned else ""
    return _point_seconds(run.notebook, run.params)


def _point_seconds(notebook: str, params: dict) -> tuple[float | None, str]:
    from . import planning

    name, p = Path(notebook).stem, parameters(notebook, params)
    spec = unchecked(notebook, **params) if kind_of(notebook) else None
    if isinstance(spec, (specs.LinearSpec, specs.FullSpec)):
        return planning.run_seconds(name, spec.cfg, spec.config(), _throughput(), _per_epoch(name))
    return _median_wall(name, p.get("profile", "mini"))


@functools.lru_cache(maxsize=None)
def _median_wall(name: str, profile: str) -> tuple[float | None, str]:
    """Another notebook's run: the median wall time of its records in the profile."""
    from statistics import median

    records = results.load(name, results.root_of(config.load(profile)))
    if len(records) and {"profile", "wall_seconds"} <= set(records):
        g = records[records.profile == profile].dropna(subset=["wall_seconds"])
        if len(g):
            return float(median(g.wall_seconds)), f"{name}: median wall time of {len(g)} records"
    return None, f"{name}: no records of it yet (run one: its record's time is then used)"


@functools.lru_cache(maxsize=None)
def _throughput():
    from . import planning

    return planning.throughput()


@functools.lru_cache(maxsize=None)
def _per_epoch(name: str) -> dict:
    from . import planning

    return planning.per_epoch(name)


def _worker_init(counter=None, gpus: int = 0) -> None:
    """Sweep workers die with the sweep, however it ends (even SIGKILL): the kernel asks for SIGKILL
    when the parent dies (prctl PR_SET_PDEATHSIG), and each notebook kernel exits when its worker
    does (ipykernel polls its parent). They write to the executed notebooks, not the terminal:
    without that every kernel prints jupyter's "running over TCP" warning into the sweep's log."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers may outlive a killed sweep
        pass
    if os.getppid() == 1:  # the sweep died before the line above
        os._exit(1)
    if counter is not None and gpus > 1:  # one GPU per worker, so parallel runs never share one
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def execute_here(run: Run) -> tuple[str, int, float, str]:
    """One run through papermill's API from this (worker) process: the notebook still gets a kernel
    process of its own, but the papermill start-up (2-3 s, more than many mini runs compute) is paid
    once per worker. Returns (name, exit status, seconds, error line)."""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    claim = files.claim(run.output, note=f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}")
    if claim is None:  # a run of this sweep still running in another process (a sweep started twice)
        return run.name, SKIPPED, 0.0, f"running elsewhere ({files.holder(run.output)})"
    if run.finished():  # another runner of this grid finished it since this sweep listed it
        claim.close()
        return run.name, SKIPPED, 0.0, "done by another process"
    os.environ.update({"SPARSENB_PROGRESS": "0", **run.env})  # inherited by the kernel
    t = time.time()
    rc, err = 0, ""
    try:
        execute_notebook(run.path, run.output, run.todo_params())
        run.marker.write_text(json.dumps(run.params))
    except Exception as e:  # noqa: BLE001 - a failed run is reported, the sweep goes on
        rc = 1
        err = f"{e.ename}: {e.evalue}" if hasattr(e, "ename") else f"{type(e).__name__}: {e}".splitlines()[0]
        # the log of a SLURM task (a local worker's stderr goes nowhere): the error, where its traceback is
        print(f"{run.name} failed: {err}\n  traceback in the executed notebook {run.output}", file=sys.stderr)
    finally:
        claim.close()
    return run.name, rc, time.time() - t, err


def run_sweep(
    path: str | Path,
    executor: str = "local",
    jobs: int = 1,
    out_root=None,
    cluster: str | None = None,
    dry_run: bool = False,
    partition: str | None = None,
    account: str | None = None,
    parameters: dict | None = None,
) -> int:
    """Run every missing run of the sweep; returns the number of failures. `parameters`: more fixed
    parameters over the file's (`make demo`: its `overrides`)."""
    spec = load_sweep(path)
    spec["parameters"] = {**(spec.get("parameters") or {}), **(parameters or {})}
    paths.writable()  # a read-only outputs folder: one line before anything runs
    runs = expand(spec, out_root)
    todo = [r for r in runs if not r.finished()]
    _announce(spec, runs, todo, executor, jobs)
    if dry_run or not todo:
        for r in todo:
            left, every = r.todo_params().get(r.cell_key), r.params.get(r.cell_key)
            print("  todo", r.name + (f" ({r.cell_key} {_tag(left)} of {_tag(every)})" if left != every else ""))
        return 0
    t0 = time.time()
    if executor == "local":
        failures, busy = _run_local(todo, jobs, f"sweep {spec['name']}")
    elif executor == "slurm":
        res = slurm.resources(spec.get("slurm"), partition, account)
        failures, busy = slurm.submit(todo, execute_here, todo[0].out_dir / "slurm", res, cluster)
    else:
        raise ConfigError(f"unknown executor {executor!r}; valid: local, slurm")
    ok = len(todo) - len(failures) - len(busy)
    print(
        f"== sweep {spec['name']}: {ok} ok, {len(failures)} failed"
        + (f", {len(busy)} left to the process running them" if busy else "")
        + f" in {time.time() - t0:.0f} s; executed notebooks under {todo[0].out_dir}"
    )
    for name, err in failures:
        print(f"  failed: {name}: {err}")
    return len(failures)


def _announce(spec: dict, runs: list[Run], todo: list[Run], executor: str, jobs: int) -> None:
    """What the sweep will do: damaged records, runs done and to do, a plan over an hour."""
    for r in todo:
        if (damaged := r.damaged_record()) is not None:
            print(f"  damaged record, the run is done again: {damaged}", flush=True)
    print(
        f"== sweep {spec['name']}: {counted(spec, runs, todo)} "
        f"({executor}{', ' + str(jobs) + ' at a time' if executor == 'local' else ''})",
        flush=True,
    )
    planned = [_run_seconds(r) for r in todo]
    hours = sum(secs or 0.0 for secs, _ in planned) / 3600
    if hours > 1:  # a long sweep says so first (its estimate as `--plan` makes it)
        how = "; ".join(sorted({how for secs, how in planned if secs is not None}))
        print(f"  plan: ~{hours:.1f} device-hours, estimated from {how}", flush=True)


def counted(spec: dict, runs: list[Run], todo: list[Run]) -> str:
    """'N runs, D already done, T to run' (with cell_over: and the kernels that run them)."""
    n, t = sum(r.size() for r in runs), sum(r.size(todo=True) for r in todo)
    out = f"{n} runs, {n - t} already done, {t} to run"
    if spec.get("cell_over"):
        out += f" in {len(todo)} kernels (one per cell of {', '.join(spec['cell_over'])}; {len(runs)} cells in all)"
    return out


def _run_local(todo: list[Run], jobs: int, label: str) -> tuple[list, list]:
    """The runs in `jobs` worker processes; (failures [(name, error)], names left to another process)."""
    failures, busy = [], []
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:  # share the cores, do not oversubscribe
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        for r in todo:
            r.env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    # worker processes (spawned: this process may hold torch's threads) run one notebook at a time
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=max(1, jobs), mp_context=spawn, initializer=_worker_init, initargs=(spawn.Value("i", 0), _gpus())
    ) as pool:
        shown = progress.Runs(len(todo), label)  # one bar: done, failed, ETA
        for name, rc, secs, err in pool.map(execute_here, todo):
            shown.done(name, {0: "ok", SKIPPED: "busy"}.get(rc, "FAIL"), secs, err)
            if rc == SKIPPED:
                busy.append(name)
            elif rc:
                failures.append((name, err))
        shown.close()
    return failures, busy


def _gpus() -> int:
    """GPUs this machine shows (without importing torch into the sweep process)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        return len([ln for ln in out.stdout.splitlines() if ln.startswith("GPU ")])
    except (OSError, subprocess.SubprocessError):
        return 0
