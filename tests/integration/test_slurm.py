"""Sweeps on a real SLURM cluster: a one-node cluster (Debian slurm-wlm + munge, installed by
`make setup` as root) brought up on this machine for the module, driven as a user would -- the
README's commands verbatim, sbatch job arrays, logs and records where the README says, a failing
notebook and a cancelled task reported with their logs, a killed sweep resubmitted after scancel."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsenb.config import ROOT

pytestmark = pytest.mark.slow

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def _cannot_start() -> str | None:
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if missing:
        return (
            f"SLURM is not installed ({', '.join(missing)} missing): `make setup` as root installs slurm-wlm and munge"
        )
    if os.geteuid() != 0:
        return "SLURM's daemons need root to start here (slurmd launches jobs as their user)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(what)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """slurmctld + slurmd for localhost (2 CPUs, one partition `debug`) and a private munged; the
    environment that points SLURM's commands at it. Everything stopped afterwards."""
    why = _cannot_start()
    if why:
        pytest.skip(why)
    d = tmp_path_factory.mktemp("slurm")
    d.chmod(0o755)  # munged refuses a socket directory others can write to
    sbin = lambda name: shutil.which(name) or f"/usr/sbin/{name}"  # noqa: E731
    shutil.copy("/etc/munge/munge.key", d / "munge.key")
    (d / "munge.key").chmod(0o600)
    sock = d / "munge.sock"
    subprocess.run(
        [sbin("munged"), "--force", f"--socket={sock}", f"--key-file={d / 'munge.key'}",
         f"--log-file={d / 'munged.log'}", f"--pid-file={d / 'munged.pid'}", f"--seed-file={d / 'munged.seed'}"],
        check=True,
    )  # fmt: skip
    host = socket.gethostname().split(".")[0]
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 8 // 10
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    conf = d / "slurm.conf"
    conf.write_text(
        f"""ClusterName=sparsenbtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={d / "state"}
SlurmdSpoolDir={d / "spool"}
SlurmctldPidFile={d / "slurmctld.pid"}
SlurmdPidFile={d / "slurmd.pid"}
SlurmctldLogFile={d / "slurmctld.log"}
SlurmdLogFile={d / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=60
KillWait=5
NodeName={host} CPUs=2 RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run([sbin("slurmctld"), "-f", str(conf)], check=True, env=env)
    subprocess.run([sbin("slurmd"), "-f", str(conf)], check=True, env=env)
    idle = lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env).stdout  # noqa: E731
    try:
        _wait(idle, 60, f"the node did not come up; see {d}/slurmctld.log and slurmd.log")
        yield {"SLURM_CONF": str(conf), "dir": d}
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        for daemon in ("slurmd", "slurmctld", "munged"):
            pid = d / f"{daemon}.pid"
            if pid.exists():
                try:
                    os.kill(int(pid.read_text().split()[0]), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass


@pytest.fixture
def user(cluster, tmp_path):
    """The environment of a user's shell on the login node: SLURM's config, the outputs root of this
    test and the committed reference upstream models as its checkpoint root (machine facts, inherited
    by the array tasks: sbatch exports the environment)."""
    env = {
        **os.environ,
        "SLURM_CONF": cluster["SLURM_CONF"],
        "SPARSENB_OUTPUTS": str(tmp_path / "outputs"),
        "SPARSENB_PROGRESS": "0",
        "SPARSENB_CHECKPOINT_ROOT": str(ROOT / "outputs" / "upstream" / "mini"),  # read only: finetuning loads
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return env


def _readme_commands() -> list[str]:
    """The command block of docs/slurm.md (linked from the README's SLURM line), line by line."""
    text = (ROOT / "docs" / "slurm.md").read_text()
    section = text.split("## A two-run check, then the real grid", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def _array_ids(out: str) -> list[str]:
    return re.findall(r"submitted job array (\d+)", out)


def test_readme_sweep_on_slurm_verbatim(user, tmp_path):
    from sparsenb import checkpoints, config

    cfg = config.load("mini", {"checkpoint_root": user["SPARSENB_CHECKPOINT_ROOT"]})
    if any(checkpoints.verify(cfg, m, s, 0) != "ok" for m, s in (("dense", 0.0), ("gmp", 0.9))):
        pytest.skip("the reference set's dense and gmp 0.9 (seed 0) models are not built yet: make upstream")
    cmds = _readme_commands()
    assert [c.split()[0] for c in cmds] == ["python", "squeue", "python"]
    first = subprocess.run(cmds[0], shell=True, cwd=ROOT, env=user, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(_array_ids(first.stdout)) == 1 and "2 ok, 0 failed" in first.stdout, first.stdout
    results = tmp_path / "outputs" / "results" / "02_linear_ft"
    records = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert sorted(r["method"] for r in records) == ["dense", "gmp"]
    assert all(r["report"] == "reported" and len(r["curve"]) == cfg["linear"]["epochs"] for r in records)
    runs = tmp_path / "outputs" / "runs" / "slurm_check"
    assert len(list(runs.glob("02_linear_ft-*.ipynb"))) == 2
    array = _array_ids(first.stdout)[0]
    logs = sorted((runs / "slurm").glob(f"{array}_*_0_log.*"))
    assert [p.name for p in logs] == [f"{array}_{t}_0_log.{x}" for t in (0, 1) for x in ("err", "out")]
    assert subprocess.run(cmds[1], shell=True, env=user, capture_output=True, text=True).returncode == 0
    again = subprocess.run(cmds[2], shell=True, cwd=ROOT, env=user, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "2 already done, 0 to run" in again.stdout and not _array_ids(again.stdout)


def _squeue(env) -> list[tuple[str, str]]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %t"], capture_output=True, text=True, env=env).stdout
    return [tuple(ln.split()) for ln in out.splitlines() if ln.strip()]


def _dead(pid: int) -> bool:
    """The process is gone or a zombie (its parent, stopped, cannot reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _next_ready(tmp_path, seen: set) -> tuple[int, int, int, str]:
    """(x, kernel pid, task pid, task id) of the next held run to write its ready file."""
    new = lambda: [p for p in tmp_path.glob("ready-*") if p.suffix != ".tmp" and p.name not in seen]  # noqa: E731
    _wait(new, 600, "no held run started")
    ready = new()[0]
    seen.add(ready.name)
    kernel, task, job = ready.read_text().split()
    return int(ready.name.split("-")[1]), int(kernel), int(task), job


def test_failed_and_cancelled_tasks_are_reported_with_their_logs(user, toy_sweep, tmp_path):
    """A cancelled task is reported by SLURM's state whichever of its processes dies first: the task
    (scancel while all run), or the notebook's kernel (killed while the task is stopped, then scancel:
    SLURM's SIGCONT wakes the task to a dead kernel and SIGTERM); a kernel that dies on its own is a dead
    kernel. Each held run says when it is running (a ready file): no sleep decides an order."""
    # one task at a time (2 CPUs each): x = 5, 6, 7 held (handled in whatever order they start), x = 3
    # (its notebook fails), x = 1 (ok)
    f = toy_sweep([5, 6, 7, 3, 1], hold=[5, 6, 7], slurm={"cpus_per_task": 2, "mem_gb": 1, "timeout_min": 10})
    sweep = subprocess.Popen(
        [sys.executable, "-m", "sparsenb", "sweep", str(f), "--executor", "slurm", "--partition", "debug"],
        cwd=ROOT, env=user, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seen, jobs = set(), {}
    for _ in range(3):
        x, kernel, task, jobs[x] = _next_ready(tmp_path, seen)
        if x == 6:  # the kernel dies first, the task (stopped) cannot see it before SLURM ends the job
            os.kill(task, signal.SIGSTOP)
            os.kill(kernel, signal.SIGKILL)
            _wait(lambda: _dead(kernel), 30, "the kernel did not die")  # noqa: B023
        if x in (5, 6):
            subprocess.run(["scancel", jobs[x]], env=user, check=True)
        else:  # x = 7: the kernel dies on its own, SLURM ends nothing
            os.kill(kernel, signal.SIGKILL)
        _wait(lambda: jobs[x] not in dict(_squeue(user)), 600, f"task {jobs[x]} did not end")  # noqa: B023
    out, _ = sweep.communicate(timeout=900)
    assert sweep.returncode == 1, out
    fail = {m.group(1): (m.group(2), Path(m.group(3))) for m in re.finditer(r"FAIL (\S+) .*?  (.*); log: (\S+)", out)}
    assert set(fail) == {f"toy-mini-x={x}" for x in (3, 5, 6, 7)}, out
    assert "x=3 is the broken run" in fail["toy-mini-x=3"][0]
    for x in (5, 6):
        assert f"SLURM task {jobs[x]} ended without a result (CANCELLED)" in fail[f"toy-mini-x={x}"][0], out
    assert fail["toy-mini-x=7"][0].startswith("DeadKernelError"), out
    array = jobs[5].split("_")[0]
    assert fail["toy-mini-x=5"][1].name == f"{jobs[5]}_0_log.err"
    assert fail["toy-mini-x=3"][1].name == f"{array}_3_0_log.err"
    assert all(log.exists() for _, log in fail.values()), out
    task_log = fail["toy-mini-x=3"][1]
    assert "x=3 is the broken run" in task_log.read_text()  # the error, and where its traceback is
    assert "toy-mini-x=3.ipynb" in task_log.read_text()
    assert re.search(r"ok   toy-mini-x=1", out) and (tmp_path / "log.txt").read_text().split() == ["1"]


def test_killed_sweep_and_scancel_then_resubmit_runs_only_what_is_missing(user, toy_sweep, tmp_path):
    f = toy_sweep([10, 11, 12, 13, 14, 15], sleep=4.0, slurm={"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10})
    cmd = [sys.executable, "-m", "sparsenb", "sweep", str(f), "--executor", "slurm"]
    sweep = subprocess.Popen(cmd, cwd=ROOT, env=user, stdout=subprocess.DEVNULL, start_new_session=True)
    log = tmp_path / "log.txt"
    _wait(lambda: log.exists() and len(log.read_text().split()) >= 2, 600, "no run finished")
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep dies; its array goes on ...
    sweep.wait()
    assert _squeue(user), "the array should outlive the sweep"
    subprocess.run(["scancel", "--user", "root"], env=user, check=True)  # ... until the user scancels it
    _wait(lambda: not _squeue(user), 60, "scancel left tasks")
    runs = Path(user["SPARSENB_OUTPUTS"]) / "runs" / "toy"
    done_before = len(list(runs.glob(".*.done")))
    logged_before = log.read_text().split()
    assert 2 <= done_before < 6
    again = subprocess.run(cmd, cwd=ROOT, env=user, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{done_before} already done, {6 - done_before} to run" in again.stdout
    logged = log.read_text().split()
    assert sorted(set(logged)) == [str(x) for x in range(10, 16)]
    assert len(logged) - 6 <= len(logged_before) - done_before  # only runs cancelled mid-way ran twice
    assert len(list(runs.glob(".*.done"))) == 6
