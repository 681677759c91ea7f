"""Sweeps: grid expansion, skipping finished runs, surviving failures, resuming after a kill."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sparsenb import config, files, results, runs, sweep


def test_expand_dense_only_at_zero_and_record_ids():
    spec = {
        "name": "t",
        "notebooks": ["02_linear_ft"],
        "profile": "mini",
        "grid": {"method": ["dense", "gmp"], "sparsity": [0.8, 0.9], "dataset": ["shapes10"], "seed": [21]},
    }
    grid = sweep.expand(spec)
    assert [(r.params["method"], r.params["sparsity"]) for r in grid] == [("dense", 0.0), ("gmp", 0.8), ("gmp", 0.9)]
    spec = grid[1].record  # the spec the notebook itself builds, so the record it writes
    assert spec == runs.spec("02_linear_ft", method="gmp", sparsity=0.8, dataset="shapes10", seed=21)
    assert spec.notebook == "02_linear_ft" and results.path(spec).parent.parent == results.root_of(config.load("mini"))


@pytest.mark.slow
def test_failures_are_listed_and_the_rest_runs(tmp_path, toy_sweep):
    f = toy_sweep([1, 3, 2])
    failures = sweep.run_sweep(f, jobs=2, out_root=tmp_path / "runs")
    assert failures == 1
    assert sorted((tmp_path / "log.txt").read_text().split()) == ["1", "2"]
    assert (tmp_path / "runs" / "toy" / "toy-mini-x=1.ipynb").exists()
    # a second call runs only the failed one again
    assert sweep.run_sweep(f, out_root=tmp_path / "runs") == 1
    assert sorted((tmp_path / "log.txt").read_text().split()) == ["1", "2"]


@pytest.mark.slow
def test_cli_exit_status_and_unknown_sweep(tmp_path, toy_sweep):
    f = toy_sweep([3])
    proc = subprocess.run([sys.executable, "-m", "sparsenb", "sweep", str(f)], capture_output=True, text=True)
    assert proc.returncode == 1 and "failed: toy" in proc.stdout
    with pytest.raises(config.ConfigError, match="no sweep file .*the sweeps are"):
        sweep.load_sweep(tmp_path / "nope.yaml")


@pytest.mark.slow
def test_killed_sweep_reruns_only_what_is_missing(tmp_path, toy_sweep):
    f = toy_sweep([10, 11, 12, 13, 14], sleep=1.0)
    out = tmp_path / "runs"
    code = f"import sys; from sparsenb import sweep; sys.exit(sweep.run_sweep({str(f)!r}, out_root={str(out)!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "toy").glob(".*.done"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "toy").glob(".*.done")))
    assert 2 <= done_before < 5
    logged_before = (tmp_path / "log.txt").read_text().split()
    assert sweep.run_sweep(f, out_root=out) == 0
    logged = (tmp_path / "log.txt").read_text().split()
    assert sorted(set(logged)) == ["10", "11", "12", "13", "14"]
    # finished runs were not repeated: only the run killed mid-way can appear twice
    assert len(logged) - 5 <= len(logged_before) - done_before
    assert len(list((out / "toy").glob(".*.done"))) == 5


@pytest.mark.slow
def test_slurm_executor_through_submitit(tmp_path, toy_sweep):
    f = toy_sweep([7, 8])
    assert sweep.run_sweep(f, executor="slurm", out_root=tmp_path / "runs", cluster="debug") == 0
    assert sorted((tmp_path / "log.txt").read_text().split()) == ["7", "8"]


def test_skips_runs_with_a_record(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))
    spec = {"name": "t", "notebooks": ["02_linear_ft"], "grid": {"method": ["gmp"], "dataset": ["shapes10"]}}
    run = sweep.expand(spec, tmp_path / "runs")[0]
    assert not run.finished()
    rec = results.record(run.record, {"best": 0.5, "final": 0.5})
    assert run.finished() and run.damaged_record() is None
    # a record that does not parse, or parses but is not this run's record, is named and rerun
    path = results.path(run.record)
    assert path.stem == rec["run_id"]
    for junk, why in (
        ("{", "not readable as JSON"),
        ("[1, 2]", "not a run record"),
        (json.dumps({**rec, "config": {}}), "record of another run"),
    ):
        path.write_text(junk)
        assert not run.finished() and why in run.damaged_record()


def test_parallel_runs_make_a_checkpoint_once(tmp_path):
    """Two runs of a `--jobs 2` sweep that need the same upstream model: the second waits for the
    first (a file lock next to the checkpoint) instead of training it a second time."""
    import threading

    order = []

    def run(tag):
        with files.locked(tmp_path / "model.pth"):
            order.append(f"{tag} in")
            time.sleep(0.3)
            order.append(f"{tag} out")

    threads = [threading.Thread(target=run, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


@pytest.mark.slow
def test_study_grid_holds_only_the_reference_set():
    """The study's grids ask only for upstream models the reference set has: 95% for the first
    upstream seed only, dense and dense_5x at sparsity 0 once per upstream seed."""
    runs = sweep.expand(sweep.load_sweep(config.ROOT / "params" / "sweeps" / "mini_linear.yaml"))
    keys = {(r.params["method"], r.params["sparsity"], u) for r in runs for u in r.params["upstream_seed"]}
    assert (
        len(runs) == 203 and sum(len(r.cell) for r in runs) == 497
    )  # one kernel per cell of upstream seeds (random_init too)
    assert ("gmp", 0.95, 0) in keys and ("gmp", 0.95, 1) not in keys and ("gmp", 0.9, 2) in keys
    assert {s for m, s, _ in keys if m in ("dense", "dense_5x")} == {0.0}
    up = sweep.expand(sweep.load_sweep(config.ROOT / "params" / "sweeps" / "mini_upstream.yaml"))
    assert len(up) + 1 == len(__import__("sparsenb.upstream").upstream.reference_set(config.load("mini")))


def _cmdline(proc) -> list[str]:
    """A process's command line, or [] when it has just exited (psutil races the processes it lists)."""
    import psutil

    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@pytest.mark.slow
def test_workers_and_kernels_die_with_a_killed_sweep(tmp_path, toy_sweep):
    """SIGKILL to the sweep process alone (not its group): its workers and their kernels go too, so
    none of them runs the next queued run; a restart finishes the grid."""
    import psutil

    f = toy_sweep([20, 21, 22, 23], sleep=3.0)
    out = tmp_path / "runs"
    code = (
        f"import sys; from sparsenb import sweep; sys.exit(sweep.run_sweep({str(f)!r}, jobs=2, out_root={str(out)!r}))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 120
    kernels = []
    while time.time() < deadline and len(kernels) < 2:
        kernels = [c for c in parent.children(recursive=True) if "ipykernel" in " ".join(_cmdline(c))]
        time.sleep(0.2)
    assert len(kernels) == 2, "two notebooks should be running"
    family = parent.children(recursive=True)
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, f"left running after the sweep was killed: {[_cmdline(p)[:3] for p in alive]}"
    assert sweep.run_sweep(f, out_root=out) == 0
    assert sorted(set((tmp_path / "log.txt").read_text().split())) == ["20", "21", "22", "23"]


@pytest.mark.slow
def test_a_run_held_by_another_process_is_left_to_it(tmp_path, toy_sweep, capsys):
    f = toy_sweep([30, 31])
    out = tmp_path / "runs"
    held = sweep.expand(sweep.load_sweep(f), out)[0]
    claim = files.claim(held.output, note="pid 123 on elsewhere")
    try:
        assert sweep.run_sweep(f, out_root=out) == 0
    finally:
        claim.close()
    printed = capsys.readouterr().out
    assert "busy" in printed and "running elsewhere (pid 123 on elsewhere)" in printed
    assert (tmp_path / "log.txt").read_text().split() == ["31"]


def test_slurm_resources_are_checked_and_a_missing_slurm_is_named(tmp_path, toy_sweep, monkeypatch):
    from sparsenb import slurm

    bad = toy_sweep([1], slurm={"timeout_min": 5, "gpus": 1})
    with pytest.raises(config.ConfigError, match=r"unknown slurm: keys \['gpus'\].*gpus_per_node.*slurm_partition"):
        sweep.load_sweep(bad)
    res = slurm.resources({"timeout_min": 5, "slurm_qos": "low"}, partition="gpu", account="lab")
    assert res == {"timeout_min": 5, "slurm_qos": "low", "slurm_partition": "gpu", "slurm_account": "lab"}
    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)
    with pytest.raises(config.ConfigError, match="no sbatch or squeue on PATH.*--executor local"):
        sweep.run_sweep(toy_sweep([1], name="ok"), executor="slurm", out_root=tmp_path / "runs")


@pytest.fixture
def slurm_task(tmp_path, monkeypatch):
    """An array task's environment (job 43 = task 41_2) with an `scontrol` on PATH that prints the
    job line written to tmp_path/scontrol.txt (none written: scontrol fails), no accounting, and a cgroup tree under
    tmp_path whose memory.events holds this process's OOM kills (`ooms(n)` sets them)."""
    from sparsenb import slurm

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\n[ "$4" = 43 ] && exec cat {tmp_path / "scontrol.txt"}\nexit 1\n')
    (bin_dir / "sacct").write_text("#!/bin/sh\nexit 1\n")  # a cluster without accounting
    for tool in ("scontrol", "sacct"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "43")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    rel = next(ln[3:] for ln in open("/proc/self/cgroup").read().splitlines() if ln.startswith("0::"))
    events = tmp_path / "cgroup" / rel.strip().lstrip("/") / "memory.events"
    events.parent.mkdir(parents=True)
    monkeypatch.setattr(slurm, "CGROUPS", tmp_path / "cgroup")
    ooms = lambda n: events.write_text(f"low 0\nhigh 0\nmax 3\noom {n}\noom_kill {n}\n")  # noqa: E731
    ooms(1)  # killed before the run: not its cause
    return lambda state, reason="None": (tmp_path / "scontrol.txt").write_text(
        f"JobId=43 JobName=toy JobState={state} Reason={reason} Dependency=(null)\n"
    ), ooms


def test_a_task_slurm_ends_is_reported_by_its_state_whatever_died_first(slurm_task):
    """The kernel dies first (the run's error: a dead kernel) or SIGTERM comes first: the task lives on
    through SIGTERM and reports what SLURM did; a kernel dead on its own stays a dead kernel."""
    from sparsenb import slurm

    job, ooms = slurm_task
    dead = ("toy", 1, 2.0, "DeadKernelError: Kernel died")

    def run(sigterm_first: bool, after=None):
        def execute(_):
            if sigterm_first:
                os.kill(os.getpid(), signal.SIGTERM)  # what scancel sends (SIGKILL KillWait later)
            (after or (lambda: None))()
            return dead

        before = signal.getsignal(signal.SIGTERM)
        out = slurm.Task(execute)(None)
        assert signal.getsignal(signal.SIGTERM) is before  # handlers given back
        return out[3]

    job("COMPLETING")  # scancel: slurmctld marks the job before its processes get SIGTERM
    assert run(True) == run(False) == "SLURM task 41_2 ended without a result (CANCELLED)"
    job("COMPLETING", "TimeLimit")
    assert run(True) == "SLURM task 41_2 ended without a result (TIMEOUT)"
    job("RUNNING")
    assert run(False) == "DeadKernelError: Kernel died"  # died on its own
    assert run(True).endswith("(SIGTERM from SLURM: cancelled, preempted or out of time)")  # scancel --signal
    assert run(False, after=lambda: ooms(2)).startswith("SLURM task 41_2 ended without a result (OUT_OF_MEMORY")
    assert slurm.Task(lambda _: ("toy", 0, 1.0, ""))(None) == ("toy", 0, 1.0, "")


def test_the_sweep_names_slurms_state_of_a_task_that_left_no_result(slurm_task, tmp_path):
    from sparsenb import slurm

    job, _ = slurm_task
    job("CANCELLED")  # no accounting (sacct fails): slurmctld's record
    assert slurm.state("43") == "CANCELLED"
    job("COMPLETING")
    assert slurm.state("43") == "ENDED"
    assert slurm.state("44") == "ENDED"  # slurmctld forgot it (MinJobAge)


def _cell_sweep(**extra) -> dict:
    grid = {"method": ["dense", "gmp"], "sparsity": [0.8, 0.95], "dataset": ["shapes10"], "upstream_seed": [0, 1, 2]}
    return {"name": "t", "notebooks": ["02_linear_ft"], "reference_set_only": True, "grid": grid, **extra}


def test_a_cell_is_its_single_runs(tmp_path, monkeypatch):
    """cell_over: one run per cell of upstream seeds (those the reference set has), whose specs are
    exactly the single runs' -- the same run ids, so nothing is recorded twice."""
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))
    single = sweep.expand(_cell_sweep(), tmp_path / "runs")
    cells = sweep.expand(_cell_sweep(cell_over=["upstream_seed"]), tmp_path / "runs")
    assert [(r.params["method"], r.params["sparsity"], r.params["upstream_seed"]) for r in cells] == [
        ("dense", 0.0, [0, 1, 2]),
        ("gmp", 0.8, [0, 1, 2]),
        ("gmp", 0.95, [0]),  # 95%: the first upstream seed only
    ]
    assert [s.run_id for r in cells for s in r.cell.values()] == [r.record.run_id for r in single]
    assert cells[0].name.endswith("upstream_seed=0+1+2") and cells[2].name.endswith("upstream_seed=0")
    _, cell = runs.setup_cell("02_linear_ft", method="gmp", sparsity=0.8, upstream_seed="2,0")
    assert [s.run_id for s in cell] == [
        runs.spec("02_linear_ft", method="gmp", sparsity=0.8, upstream_seed=u).run_id for u in (2, 0)
    ]
    with pytest.raises(config.ConfigError, match="upstream_seed must be a whole number"):
        runs.setup_cell("02_linear_ft", upstream_seed="0,x")


def test_a_partly_done_cell_runs_only_its_missing_seeds(tmp_path, monkeypatch):
    """A cell executes with the seeds that have no record; the records it writes (finetune.cell, as
    the notebook does) are those the single runs would write; done when all are there."""
    from sparsenb import finetune

    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))
    run = sweep.expand(_cell_sweep(cell_over=["upstream_seed"]), tmp_path / "runs")[1]  # gmp 80%, seeds 0-2
    results.record(run.cell[1], {"best": 0.5, "final": 0.5})
    assert not run.finished() and run.todo_params()["upstream_seed"] == [0, 2] and run.size(todo=True) == 2
    executed = []

    def execute(notebook, output, params):  # the notebook's two package calls, the finetuning faked
        executed.append(params["upstream_seed"])
        _, cell = runs.setup_cell(notebook.stem, **params)
        fake = {"best": 0.6, "final": 0.6, "reported": 0.6, "reported_epoch": 1, "metric": "accuracy"}
        finetune.cell(cell, lambda spec: fake)

    monkeypatch.setattr(sweep, "execute_notebook", execute)
    assert sweep.execute_here(run)[1] == 0 and executed == [[0, 2]]
    assert run.finished() and sorted(p.stem for p in (results.root_of() / "02_linear_ft").glob("*.json")) == sorted(
        runs.spec("02_linear_ft", method="gmp", sparsity=0.8, upstream_seed=u).run_id for u in (0, 1, 2)
    )
    assert results.read(results.path(run.cell[1]))["best"] == 0.5  # the finished seed was not run again
    pl = sweep.plan(_cell_sweep(cell_over=["upstream_seed"]), tmp_path / "runs")
    assert (pl["runs"], pl["todo"], pl["points"], pl["points_todo"]) == (3, 2, 7, 4)


def test_cell_over_is_checked(tmp_path, toy_sweep):
    import yaml

    for bad, why in (
        ({"cell_over": ["seed"]}, r"these notebooks take: upstream_seed \(e.g. cell_over: \[upstream_seed\]\)"),
        ({"cell_over": "upstream_seed"}, "a list of one grid key"),
    ):
        f = tmp_path / "bad.yaml"
        f.write_text(yaml.safe_dump(_cell_sweep(**bad)))
        with pytest.raises(config.ConfigError, match=why):
            sweep.load_sweep(f)
    toy = yaml.safe_load(toy_sweep([1]).read_text())
    (tmp_path / "toy_cells.yaml").write_text(yaml.safe_dump({**toy, "cell_over": ["x"]}))
    with pytest.raises(config.ConfigError, match="these notebooks take none: remove cell_over"):
        sweep.load_sweep(tmp_path / "toy_cells.yaml")


def test_the_study_prints_its_plan_first(toy_sweep, capsys):
    from sparsenb.__main__ import study_plan

    study_plan([(toy_sweep([1, 2]), 2)])
    out = capsys.readouterr().out
    assert "plan toy: 2 of 2 runs to do in 2 kernels" in out and "2 without an estimate" in out
    assert "== study plan: ~0.0 h (resumable" in out


def test_a_grid_takes_its_lists_from_the_profile_instead_of_repeating_them(tmp_path):
    conv = config.load("mini_converged")
    spec = sweep.load_sweep(config.ROOT / "params" / "sweeps" / "mini_converged_full.yaml")
    assert spec["grid"]["method"] == list(conv["upstream"]["methods"]) and "gmp_scratch" not in spec["grid"]["method"]
    assert spec["grid"]["dataset"] == conv["datasets"] and spec["grid"]["upstream_seed"] == [0, 1, 2, 3, 4]
    bad = tmp_path / "bad.yaml"
    bad.write_text("notebooks: [03_full_ft]\nprofile: paper\ngrid: {method: profile}\n")
    with pytest.raises(config.ConfigError, match="the paper profile has no upstream.methods"):
        sweep.load_sweep(bad)
    bad.write_text("notebooks: [03_full_ft]\ngrid: {seed: profile}\n")
    with pytest.raises(config.ConfigError, match="only method, dataset, sparsity, upstream_seed"):
        sweep.load_sweep(bad)
