"""Faults a long build meets, each on tiny inputs: a process killed while it writes a record, the
manifest or a checkpoint; a full disk; two runners on one grid; a runner that died on another host
holding a claim; a checkpoint damaged by hand."""

import errno
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sparsenb import checkpoints, config, files, models, prune, results, sweep, train, weights
from sparsenb.errors import UserError

RUN = {"profile": "mini", "arch": "mini_resnet_s", "method": "gmp", "sparsity": 0.9, "dataset": "shapes10", "seed": 0}


def _wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def _killed_while_writing(write, where: str, tmp_path) -> Path:
    """Run `write()` in a forked child that is SIGKILLed inside files.atomic where its temp file would
    replace the target: `where` = 'whole' (the temp file complete) or 'half' (only its first half on
    disk, as a kill mid-write leaves it). Returns the temp file the kill left behind."""
    ready = tmp_path / "ready"
    pid = os.fork()
    if pid == 0:  # the child: stop where the kill lands, say so, wait for it

        def stop(src, dst):
            if where == "half":
                data = Path(src).read_bytes()
                Path(src).write_bytes(data[: len(data) // 2])
            (tmp_path / "ready.tmp").write_text(str(src))
            os.rename(tmp_path / "ready.tmp", ready)
            time.sleep(120)

        try:
            files.os.replace = stop  # this process's os module only: it is killed or exits below
            write()
        finally:
            os._exit(1)
    try:
        _wait_for(ready.exists, "the child never reached the write")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    left = Path(ready.read_text())
    ready.unlink()
    assert left.exists() and files.unfinished(left)
    return left


def _mini(tmp_path):
    return config.load("mini", {"checkpoint_root": str(tmp_path / "ckpt")})


def _model(seed=0):
    torch.manual_seed(seed)
    return models.build("mini_resnet_s", 4)


@pytest.mark.parametrize("where", ["half", "whole"])
def test_a_record_killed_while_written_is_never_read_as_whole(tmp_path, where):
    root = tmp_path / "results"
    old = results.write("02_linear_ft", RUN, {"best": 0.5, "final": 0.5}, root=root)
    new = {**RUN, "seed": 1}
    write = lambda: results.write("02_linear_ft", new, {"best": 0.6, "final": 0.6}, root=root)  # noqa: E731
    left = _killed_while_writing(write, where, tmp_path)
    assert left.parent == root / "02_linear_ft"
    assert not results.exists("02_linear_ft", new, root)  # the run is still to do
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the temp file is not even named as a damaged record
        assert list(results.load(root=root).run_id) == [old["run_id"]]
    write()  # the restart
    assert results.exists("02_linear_ft", new, root) and len(results.load(root=root)) == 2


@pytest.mark.parametrize("where", ["half", "whole"])
def test_the_manifest_killed_while_written_stays_consistent_with_the_files(tmp_path, where):
    cfg = _mini(tmp_path)
    gmp, dense = checkpoints.checkpoint_path("gmp", 0.9, cfg, 0), checkpoints.checkpoint_path("dense", 0.0, cfg, 0)
    for path in (gmp, dense):
        weights.save_checkpoint(_model(), path, "mini_resnet_s")
    checkpoints.register(cfg, gmp, "gmp", 0.9, 0, {"test_top1": 0.5}, 1.0)
    before = checkpoints.manifest_path(cfg).read_bytes()
    register = lambda: checkpoints.register(cfg, dense, "dense", 0.0, 0, {"test_top1": 0.6}, 1.0)  # noqa: E731
    _killed_while_writing(register, where, tmp_path)
    assert checkpoints.manifest_path(cfg).read_bytes() == before
    assert checkpoints.verify(cfg, "gmp", 0.9, 0) == "ok" and checkpoints.verify(cfg, "dense", 0.0, 0) == "missing"
    register()
    assert len(checkpoints.read_manifest(cfg)) == 2 and checkpoints.verify(cfg, "dense", 0.0, 0) == "ok"


@pytest.mark.parametrize("where", ["half", "whole"])
def test_a_checkpoint_killed_while_written_leaves_the_one_before(tmp_path, where):
    cfg = _mini(tmp_path)
    path = checkpoints.checkpoint_path("gmp", 0.9, cfg, 0)
    weights.save_checkpoint(_model(0), path, "mini_resnet_s")
    checkpoints.register(cfg, path, "gmp", 0.9, 0, {"test_top1": 0.5}, 1.0)
    before = path.read_bytes()
    _killed_while_writing(lambda: weights.save_checkpoint(_model(1), path, "mini_resnet_s"), where, tmp_path)
    assert path.read_bytes() == before and checkpoints.verify(cfg, "gmp", 0.9, 0) == "ok"
    assert all(p == path for p in path.parent.glob("*.pth") if not files.unfinished(p))


def _full_disk(monkeypatch, owner, name: str, file_arg: int, after: int = 0):
    """`owner.name` (whose argument `file_arg` is the file it writes) writes a little to its file and
    fails as a full disk does -- after `after` calls that succeed. Returns: space is back."""
    real, calls = getattr(owner, name), []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) <= after:
            return real(*args, **kwargs)
        target = args[file_arg]
        if hasattr(target, "write"):
            target.write(b"\0" * 10)
        else:
            Path(target).open("w").write("{\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(owner, name, write)
    return lambda: monkeypatch.setattr(owner, name, real)


def test_a_full_disk_is_one_error_naming_the_path_and_the_file_before_stays(tmp_path, monkeypatch):
    root = tmp_path / "results"
    results.write("02_linear_ft", RUN, {"best": 0.5, "final": 0.5}, root=root)
    path = results.path_of("02_linear_ft", results.run_id(RUN), root)
    before = path.read_bytes()
    space_back = _full_disk(monkeypatch, Path, "write_text", 0)
    with pytest.raises(UserError, match=rf"no space left writing {path} .*the file there is intact.*run the same"):
        results.write("02_linear_ft", RUN, {"best": 0.6, "final": 0.6}, root=root)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == [path.name]
    space_back()
    assert results.write("02_linear_ft", RUN, {"best": 0.6, "final": 0.6}, root=root)["best"] == 0.6
    # the manifest: its rows before stay, the next registration goes in
    cfg = _mini(tmp_path)
    ckpt = checkpoints.checkpoint_path("gmp", 0.9, cfg, 0)
    weights.save_checkpoint(_model(), ckpt, "mini_resnet_s")
    checkpoints.register(cfg, ckpt, "gmp", 0.9, 0, {"test_top1": 0.5}, 1.0)
    manifest = checkpoints.manifest_path(cfg).read_bytes()
    space_back = _full_disk(monkeypatch, pd.DataFrame, "to_csv", 1)
    with pytest.raises(UserError, match=f"no space left writing {checkpoints.manifest_path(cfg)} "):
        checkpoints.register(cfg, ckpt, "gmp", 0.9, 0, {"test_top1": 0.7}, 1.0)
    assert checkpoints.manifest_path(cfg).read_bytes() == manifest
    space_back()
    checkpoints.register(cfg, ckpt, "gmp", 0.9, 0, {"test_top1": 0.7}, 1.0)
    assert checkpoints.entry(cfg, "gmp", 0.9, 0)["top1"] == 0.7


def _task(n=32):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 4
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.3 + y.view(-1, 1, 1, 1) * 0.2
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))


def test_a_training_run_that_fills_the_disk_resumes_from_its_last_good_epoch(tmp_path, monkeypatch):
    opt = {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
    gmp = lambda: prune.make("gmp", 0.9, 1, seed=0, initial=0.05, start=0.1, end=0.8, every=0.1)  # noqa: E731
    straight = _model()
    train.fit(straight, gmp(), _task(), 3, opt, device="cpu")
    snap = tmp_path / "run.partial.pt"
    space_back = _full_disk(monkeypatch, torch, "save", 1, after=1)  # epoch 1 saved, epoch 2's save fails
    with pytest.raises(UserError, match=f"no space left writing {snap} .*the file there is intact"):
        train.fit(_model(), gmp(), _task(), 3, opt, device="cpu", resume=snap)
    space_back()
    assert torch.load(snap, weights_only=False)["step"] == len(_task())  # the state after epoch 1
    again = _model()
    info = train.fit(again, gmp(), _task(), 3, opt, device="cpu", resume=snap)
    assert len(info["curve"]) == 3 and not snap.exists()
    for (k, a), b in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), f"{k} differs from the uninterrupted run"


def test_a_run_another_runner_finished_meanwhile_is_not_run_again(tmp_path, toy_sweep):
    f = toy_sweep([1, 2])
    out = tmp_path / "runs"
    mine, theirs = sweep.expand(sweep.load_sweep(f), out), sweep.expand(sweep.load_sweep(f), out)
    assert sweep.execute_here(theirs[0])[1] == 0  # both listed it as to do; the other runner ran it
    assert sweep.execute_here(mine[0])[1:4:2] == (sweep.SKIPPED, "done by another process")
    assert (tmp_path / "log.txt").read_text().split() == ["1"]


@pytest.mark.slow
def test_two_sweeps_on_one_grid_run_every_run_once(tmp_path, toy_sweep):
    xs = list(range(10, 18))
    f = toy_sweep(xs, sleep=0.2)
    env = {**os.environ, "SPARSENB_OUTPUTS": str(tmp_path / "outputs")}
    cmd = [sys.executable, "-m", "sparsenb", "sweep", str(f)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in "ab"]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted((tmp_path / "log.txt").read_text().split()) == [str(x) for x in xs]  # each once
    assert len(list((tmp_path / "outputs" / "runs" / "toy").glob(".*.done"))) == len(xs)


@pytest.fixture
def dead_host_lock():
    """`make(path, renewed_ago)`: the lock of `path` as a file server keeps it for a runner that died
    on another host -- held (here by a process standing in for the server), its note naming the dead
    runner, its lease last renewed `renewed_ago` seconds ago."""
    holders = []

    def make(path, renewed_ago: float) -> Path:
        lock = Path(f"{path}.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        code = (
            "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); f.truncate(0); "
            "f.write('pid 4242 on deadhost'); f.flush(); print('held', flush=True); time.sleep(600)"
        )
        holders.append(subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True))
        assert holders[-1].stdout.readline().strip() == "held"
        t = time.time() - renewed_ago
        os.utime(lock, (t, t))
        return lock

    yield make
    for h in holders:
        h.kill()
        h.wait()


def test_a_claim_whose_lease_ran_out_is_taken_over(tmp_path, dead_host_lock):
    target = tmp_path / "run.ipynb"
    lock = dead_host_lock(target, renewed_ago=files.LEASE_S / 2)
    assert files.claim(target) is None  # within its lease: left to its holder
    old = time.time() - 2 * files.LEASE_S
    os.utime(lock, (old, old))
    mine = files.claim(target, note="pid 1 on here")
    assert mine is not None and files.holder(target) == "pid 1 on here"
    assert Path(f"{lock}.stale").read_text() == "pid 4242 on deadhost"  # kept for the record
    assert files.claim(target) is None  # the new claim holds
    mine.close()
    again = files.claim(target)
    assert again is not None
    again.close()


def test_a_held_claim_renews_its_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "LEASE_S", 0.2)  # renewed every 0.05 s
    held = files.claim(tmp_path / "x")
    lock = tmp_path / "x.lock"
    old = time.time() - 100
    os.utime(lock, (old, old))
    _wait_for(lambda: lock.stat().st_mtime > old + 50, "the claim was not renewed")
    monkeypatch.setattr(files, "LEASE_S", 600.0)
    assert files.claim(tmp_path / "x") is None
    held.close()


def test_a_sweep_takes_over_a_run_whose_runner_died_on_another_host(tmp_path, toy_sweep, dead_host_lock, capsys):
    f = toy_sweep([40, 41])
    out = tmp_path / "runs"
    dead_host_lock(sweep.expand(sweep.load_sweep(f), out)[0].output, renewed_ago=2 * files.LEASE_S)
    assert sweep.run_sweep(f, out_root=out) == 0
    assert sorted((tmp_path / "log.txt").read_text().split()) == ["40", "41"]
    assert "busy" not in capsys.readouterr().out


def test_a_checkpoint_damaged_by_hand_is_named_by_verify_and_made_again_by_build(tmp_path, monkeypatch, capsys):
    from sparsenb import __main__ as cli
    from sparsenb import upstream

    monkeypatch.setenv("SPARSENB_CHECKPOINT_ROOT", str(tmp_path / "ckpt"))
    cfg = config.load("mini")
    made = []

    def make(method, sparsity, cfg, seed=0, device=None):  # what upstream.build does for a missing model
        assert checkpoints.verify(cfg, method, sparsity, seed) == "missing", "built over a damaged file"
        path = checkpoints.checkpoint_path(method, sparsity, cfg, seed)
        weights.save_checkpoint(_model(len(made)), path, "mini_resnet_s")
        checkpoints.register(cfg, path, method, sparsity, seed, {"test_top1": 0.5, "sparsity": sparsity}, 1.0)
        made.append((method, sparsity, seed))

    monkeypatch.setattr(upstream, "reference_set", lambda cfg: [("dense", 0.0, 0), ("gmp", 0.9, 0)])
    monkeypatch.setattr(upstream, "_make", make)
    assert cli.main(["upstream", "build"]) == 0 and len(made) == 2
    path = checkpoints.checkpoint_path("gmp", 0.9, cfg, 0)
    damaged = bytearray(path.read_bytes())
    damaged[-20] ^= 0xFF
    path.write_bytes(bytes(damaged))
    capsys.readouterr()
    assert cli.main(["upstream", "verify"]) == 1
    assert f"corrupt  {path}" in capsys.readouterr().out
    assert cli.main(["upstream", "build"]) == 0
    assert made[2:] == [("gmp", 0.9, 0)]  # exactly the damaged one
    assert Path(f"{path}.corrupt").read_bytes() == bytes(damaged)
    assert cli.main(["upstream", "verify"]) == 0
