"""A sweep's runs as one SLURM job array (submitit): one array task a run, executed the way the local
executor executes it (`sweep.execute_here`: papermill's API in the task's process, the run claimed
while it runs), so both executors share one code path and one record format.

    python -m sparsenb sweep params/sweeps/slurm_check.yaml --executor slurm --partition gpu [--account lab]

The array's resources come from the sweep file's `slurm:` block (submitit's names: `timeout_min`,
`mem_gb`, `gpus_per_node`, `cpus_per_task`, `slurm_array_parallelism`, any `slurm_<sbatch option>`);
`--partition`/`--account` are the site's and override the file. Logs: `<runs>/<sweep>/slurm/` holds
`<job>_<task>_0_log.out` and `_log.err` of every task (and submitit's pickles). The sweep waits for the
array and reports each run: a run whose notebook failed by its error, a task that ended without a
result (cancelled, out of time or memory, node failure) by its SLURM state -- each with its log. A
task SLURM ends gets SIGTERM, and so does its notebook's kernel, in either order: the task notes the
signal instead of dying of it (and the kernel killed for memory in its cgroup), asks SLURM for its own
state when its run fails, and reports that state rather than the dead kernel it saw first.
Killing the sweep does not stop the array (`scancel <job id>` does); starting the same command again
submits only the runs that have no record yet and leaves those still running elsewhere alone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .errors import ConfigError

GENERIC = ("timeout_min", "mem_gb", "gpus_per_node", "cpus_per_task", "nodes", "tasks_per_node")


def resources(block: dict | None, partition: str | None = None, account: str | None = None) -> dict:
    """The sweep file's `slurm:` block, checked, with the command line's partition and account."""
    import submitit

    res = dict(block or {})
    if partition:
        res["slurm_partition"] = partition
    if account:
        res["slurm_account"] = account
    sbatch = submitit.SlurmExecutor._valid_parameters()
    bad = [k for k in res if k not in GENERIC and not (k.startswith("slurm_") and k[6:] in sbatch)]
    if bad:
        raise ConfigError(
            f"unknown slurm: keys {sorted(bad)}; valid: {', '.join(GENERIC)} and slurm_<option> for "
            f"{', '.join(sorted(sbatch))} (e.g. slurm_partition, slurm_account, slurm_array_parallelism)"
        )
    return res


def available() -> str | None:
    """None when SLURM's commands are here, else why not."""
    missing = [c for c in ("sbatch", "squeue") if shutil.which(c) is None]
    return f"no {' or '.join(missing)} on PATH: not on a SLURM login node" if missing else None


def queued() -> set[str] | None:
    """Ids of this user's jobs SLURM still holds (array tasks one per line, `<job>_<task>`); None when
    squeue cannot be asked (then nothing is taken as finished but by its result)."""
    try:
        out = subprocess.run(
            ["squeue", "--me", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {ln.strip() for ln in out.stdout.splitlines() if ln.strip()}


def _scontrol(job_id: str) -> tuple[str, str] | None:
    """(JobState, Reason) of a job slurmctld still holds (finished ones for MinJobAge), else None."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    fields = dict(re.findall(r"(JobState|Reason)=(\S+)", out.stdout))
    return (fields["JobState"], fields.get("Reason", "None")) if out.returncode == 0 and "JobState" in fields else None


def state(job_id: str) -> str:
    """SLURM's last word on a finished task: sacct where accounting is on, else slurmctld's record
    while it keeps it (scontrol), else 'ENDED'."""
    try:
        out = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True, timeout=60
        )
        words = out.stdout.split()
        if out.returncode == 0 and words:
            return words[0]
    except (OSError, subprocess.SubprocessError):
        pass
    held = _scontrol(job_id)
    return held[0] if held and held[0] not in ("RUNNING", "COMPLETING") else "ENDED"


def finished(jobs: list, poll_s: float = 2.0):
    """Yield each job when it is over: its result is written, or SLURM no longer holds it. (submitit
    alone asks sacct, which clusters without accounting do not answer: it would wait forever.)"""
    pending = list(jobs)
    while pending:
        held = queued()
        for job in list(pending):
            if job.paths.result_pickle.exists() or (held is not None and job.job_id not in held):
                pending.remove(job)
                yield job
        if pending:
            time.sleep(poll_s)


def outcome(job, run_name: str, debug: bool = False) -> tuple[str, int, float, str, Path]:
    """(name, exit status, seconds, error line, log) of one finished array task (`debug`: submitit's
    in-process executor, whose result exists once asked for)."""
    log = Path(job.paths.stderr)
    if not debug and not job.paths.result_pickle.exists():
        time.sleep(1)  # a task that just ended may still be writing its result
    if not debug and not job.paths.result_pickle.exists():
        return run_name, 1, 0.0, f"SLURM task {job.job_id} ended without a result ({state(job.job_id)})", log
    try:
        name, rc, secs, err = job.result()
    except Exception as e:  # noqa: BLE001 - the task raised outside the notebook: its traceback is in the log
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        return run_name, 1, 0.0, f"SLURM task {job.job_id} failed: {lines[-1] if lines else type(e).__name__}", log
    return name, rc, secs, err, log


CGROUPS = Path("/sys/fs/cgroup")


def oom_kills() -> int:
    """Processes of this process's cgroup (v2) killed for memory so far; 0 where none is visible."""
    try:
        rel = next(ln[3:] for ln in Path("/proc/self/cgroup").read_text().splitlines() if ln.startswith("0::"))
        events = (CGROUPS / rel.strip().lstrip("/") / "memory.events").read_text()
    except (OSError, StopIteration):
        return 0
    found = re.search(r"^oom_kill (\d+)", events, re.M)
    return int(found.group(1)) if found else 0


def ending(signals: list[str], ooms: int) -> str | None:
    """Why SLURM ended this task's run, asked from inside it once the run failed: killed for memory in
    its cgroup, its own job being ended (COMPLETING while this task still runs: cancelled, or TIMEOUT
    where the reason is the time limit), or a SIGTERM it was sent; None when SLURM ended nothing (then
    the run's own error is the cause, a kernel that died on its own included)."""
    if ooms:
        return "OUT_OF_MEMORY: the job's memory limit; raise mem_gb in the sweep's slurm: block"
    held = _scontrol(os.environ["SLURM_JOB_ID"]) if "SLURM_JOB_ID" in os.environ else None
    if held and held[0] == "COMPLETING":
        return "TIMEOUT" if held[1] == "TimeLimit" else "CANCELLED"
    if held and held[0] not in ("RUNNING", "CONFIGURING", "SUSPENDED"):
        return held[0]
    return "SIGTERM from SLURM: cancelled, preempted or out of time" if "SIGTERM" in signals else None


SIGNALS = (signal.SIGTERM, signal.SIGUSR2)  # the ends SLURM announces: scancel and the time limit, and
# submitit's --signal=USR2@90 (90 s before the limit: the run may still finish)


class Task:
    """What one array task runs: `execute(run)`, with SLURM's SIGTERM (cancel, time limit) and
    submitit's SIGUSR2 (time limit near) noted rather than obeyed -- the kernel dies of them, the task
    lives to report why: a failed run is reported by SLURM's state when SLURM ended it (`ending`)."""

    def __init__(self, execute):
        self.execute = execute

    def __call__(self, run) -> tuple[str, int, float, str]:
        if "SLURM_ARRAY_TASK_ID" not in os.environ or threading.current_thread() is not threading.main_thread():
            return self.execute(run)  # submitit's in-process executor: no scheduler to ask
        signals: list[str] = []
        previous = {s: signal.signal(s, lambda n, _: signals.append(signal.Signals(n).name)) for s in SIGNALS}
        ooms = oom_kills()
        try:
            name, rc, secs, err = self.execute(run)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if rc > 0 and (why := ending(signals, oom_kills() - ooms)):
            task = f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{os.environ['SLURM_ARRAY_TASK_ID']}"
            print(f"{name}: ended by SLURM ({why}); the run's own error: {err}", file=sys.stderr, flush=True)
            err = f"SLURM task {task} ended without a result ({why})"
        return name, rc, secs, err


def submit(
    todo: list, execute, folder: Path, res: dict, cluster: str | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """Run `execute(run)` for every run as one job array; print each outcome; return the failures
    as (name, 'error; log: path') and the runs left to another process running them (busy)."""
    import submitit

    if cluster is None and (why := available()):
        raise ConfigError(f"--executor slurm: {why}; run the sweep with --executor local")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster or "slurm")
    ex.update_parameters(name=folder.parent.name, **(res if cluster != "debug" else {}))
    jobs = ex.map_array(Task(execute), todo)
    names = {job.job_id: run.name for job, run in zip(jobs, todo)}
    array = jobs[0].job_id.split("_")[0] if jobs else "?"
    print(f"  submitted job array {array} ({len(jobs)} tasks); logs: {folder}/{array}_<task>_0_log.out|err", flush=True)
    failures, busy = [], []
    for i, job in enumerate(finished(jobs) if cluster != "debug" else jobs, 1):
        name, rc, secs, err, log = outcome(job, names[job.job_id], debug=cluster == "debug")
        status = "ok  " if rc == 0 else ("busy" if rc < 0 else "FAIL")
        tail = (f"  {err}" if rc else "") + (f"; log: {log}" if rc > 0 else "")
        print(f"  [{i}/{len(jobs)}] {status} {name} ({secs:.0f} s){tail}", flush=True)
        if rc > 0:
            failures.append((name, f"{err}; log: {log}"))
        elif rc < 0:
            busy.append(name)
    return failures, busy
