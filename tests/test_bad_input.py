"""Bad input and faults a new user meets, each refused or said in one line before it can file a result
under a label it does not have: parameters a notebook does not declare (however it is run), a
checkpoint whose sparsity is not its label, the upstream task as a transfer target, runs without
limit, pickles that would run code, an outputs folder that is a file or read-only, a checkpoint of
another architecture, plans with no throughput or unreleased checkpoints, empty grid keys, relative
paths; and a summary folder that holds only what the last summary wrote."""

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from sparsenb import (
    checkpoints,
    config,
    files,
    finetune,
    models,
    paths,
    planning,
    prune,
    report,
    runs,
    specs,
    sweep,
    weights,
)
from sparsenb.config import ConfigError
from sparsenb.weights import CheckpointError

ROOT = paths.ROOT


# --- notebook parameters the notebook does not declare -------------------------------------------


def test_an_injected_parameter_the_notebook_does_not_declare_is_found_in_the_kernel_history(monkeypatch):
    """papermill's injected cell ("# Parameters" + assignments) is read from the kernel's history
    (`In`), so the check works whoever injected it; only the last injected cell counts."""
    import IPython

    shell = type("Shell", (), {})()
    shell.user_ns = {"In": ["", "# Parameters\nsparsty = 0.1\n", 'profile = "mini"\nmethod = "gmp"']}
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    with pytest.raises(ConfigError, match="02_linear_ft has no parameter sparsty; its parameters: profile, method"):
        runs.setup("02_linear_ft")
    shell.user_ns["In"].append('# Parameters\nsparsity = 0.8\nPAPERMILL_INPUT_PATH = "x.ipynb"\n')
    assert runs.injected() == ["sparsity"]  # papermill's --inject-paths names are its own
    runs.setup("02_linear_ft", sparsity=0.8)  # the same kernel, the parameter fixed: runs
    shell.user_ns["In"].append("# Parameters\nfinetune_epochs = 0\nsource = 'results'\n")
    with pytest.raises(ConfigError, match="07_summary has no parameter finetune_epochs; its parameters: source"):
        runs.refuse_undeclared("07_summary")
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # plain Python (a sweep process): nothing injected
    assert runs.injected() == []


def _executed_error(nb_path) -> str:
    nb = json.loads(open(nb_path).read())
    errs = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    return f"{errs[0]['ename']}: {errs[0]['evalue']}" if errs else ""


@pytest.mark.slow
def test_papermill_api_cli_and_a_prepared_notebook_refuse_an_undeclared_parameter(tmp_path):
    """02_linear_ft as the issue ran it, through papermill's API, its CLI, and a notebook papermill
    only prepared (-p injected) then executed cell by cell as nbval and JupyterLab do: each stops in
    the setup cell, and no record is written."""
    import nbclient
    import nbformat
    import papermill as pm

    nb = str(ROOT / "notebooks" / "02_linear_ft.ipynb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = {"method": "gmp", "sparsity": 0.9, "dataset": "digits", "sparsty": 0.8}
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(nb, str(tmp_path / "api.ipynb"), parameters=p, kernel_name="python3", progress_bar=False)
    assert e.value.ename == "ConfigError" and "02_linear_ft has no parameter sparsty" in e.value.evalue
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", nb, str(tmp_path / "cli.ipynb"), "-p", "finetune_epochs", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert _executed_error(tmp_path / "cli.ipynb").startswith("ConfigError: 02_linear_ft has no parameter finetune_ep")
    pm.execute_notebook(nb, str(tmp_path / "prep.ipynb"), parameters={"sparsty": 0.8}, prepare_only=True)
    prepared = nbformat.read(tmp_path / "prep.ipynb", as_version=4)
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="has no parameter sparsty"):
        nbclient.NotebookClient(
            prepared, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    assert not (paths.outputs() / "results" / "02_linear_ft").exists() or not any(
        (paths.outputs() / "results" / "02_linear_ft").iterdir()
    )


# --- a checkpoint's sparsity against its label ---------------------------------------------------


def _paper(tmp_path, arch="mini_resnet_x"):
    return config.load("paper", {"checkpoint_root": str(tmp_path / "ck"), "arch": arch, "device": "cpu"})


def _spec(cfg, method, sparsity, dataset):
    """The linear run's spec on a configuration made here (values unchecked: nothing is on disk)."""
    p = {"method": method, "sparsity": sparsity, "dataset": dataset, "seed": 21}
    return specs.build(specs.LinearSpec, cfg, p, checked=False, inputs=False)


def test_a_checkpoint_whose_sparsity_is_not_its_label_is_refused_with_both_numbers(tmp_path):
    cfg = _paper(tmp_path)
    dense = models.build("mini_resnet_x", 10)
    weights.save_checkpoint(dense, tmp_path / "ck" / "gmp" / "0.9.pth", "mini_resnet_x")  # dense, filed as 90%
    for fn in (finetune.linear, finetune.full):  # refused before any data is read (there is none here)
        with pytest.raises(CheckpointError, match=r"gmp/0.9.pth has sparsity 0.0% .* filed as gmp at 90.0%"):
            fn(_spec(cfg, "gmp", 0.9, "cifar10"))
    sparse = prune.magnitude(models.build("mini_resnet_x", 10), 0.9)
    weights.save_checkpoint(sparse, tmp_path / "ck" / "dense" / "0.pth", "mini_resnet_x")  # 90%, filed as dense
    with pytest.raises(CheckpointError, match=r"dense/0.pth has sparsity 90.0% .* filed as dense at 0.0%"):
        finetune.linear(_spec(cfg, "dense", 0.0, "cifar10"))
    half = prune.magnitude(models.build("mini_resnet_x", 10), 0.88)  # 2 points off: refused too
    weights.save_checkpoint(half, tmp_path / "ck" / "acdc" / "0.9.pth", "mini_resnet_x")
    with pytest.raises(CheckpointError, match=r"has sparsity 88.0% .* filed as acdc at 90.0%: more than 1.5 points"):
        checkpoints.check_sparsity(
            weights.load_upstream(tmp_path / "ck" / "acdc" / "0.9.pth", "mini_resnet_x"), cfg, "acdc", 0.9
        )
    assert checkpoints.check_sparsity(sparse, cfg, "gmp", 0.9) == pytest.approx(0.9, abs=1e-3)
    assert [checkpoints.label(m, 0.9) for m in ("dense", "dense_5x", "dense_2x", "dense_2x_scratch", "gmp")] == [
        0.0
    ] * 4 + [0.9]


def test_a_mini_checkpoint_is_checked_against_the_sparsity_it_was_requested_at(tmp_path):
    cfg = config.load("mini", {"checkpoint_root": str(tmp_path / "ck"), "device": "cpu"})
    info = {"test_top1": 0.5, "val_top1": 0.5, "sparsity": 0.9, "seconds": 1.0}
    # in the manifest at 0.9, but the file is dense: the manifest vouches for it, the load measures it
    checkpoints.save(models.build(cfg.arch, 128), cfg, "gmp", 0.9, 0, info, 1.0)
    assert checkpoints.verify(cfg, "gmp", 0.9, 0) == "ok"
    with pytest.raises(CheckpointError, match=r"s0.9-seed0.pth has sparsity 0.0% .* filed as gmp at 90.0%.*upstream.D"):
        finetune.linear(_spec(cfg, "gmp", 0.9, "shapes10"))


# --- the upstream task is not a downstream dataset ------------------------------------------------


@pytest.mark.parametrize("notebook", ["02_linear_ft", "03_full_ft", "05_speedup", "06_extensions"])
def test_the_upstream_task_is_refused_as_a_downstream_dataset(notebook):
    with pytest.raises(
        ConfigError, match=f"dataset 'upstream' is the mini profile's upstream task.*{notebook} transfers to: shapes10"
    ):
        runs.setup(notebook, dataset="upstream")
    runs.setup(notebook, dataset="digits")
    runs.setup("00_data")  # 00_data prepares the upstream task too


def test_records_finetuned_on_the_upstream_task_are_left_out_of_the_summary(tmp_path):
    from test_summary import _rec

    from sparsenb import summary

    _rec(tmp_path, "02_linear_ft", "gmp", 0.9, "upstream", 21, 0.5)  # a record made before it was refused
    _rec(tmp_path, "02_linear_ft", "gmp", 0.9, "shapes10", 21, 0.6)
    tidy = summary.load("results", root=tmp_path)
    assert set(tidy.frame.dataset) == {"shapes10"}
    assert [e["reason"] for e in tidy.excluded] == ["finetuned on the upstream task, not a downstream one"]


# --- runs without limit ----------------------------------------------------------------------------


def test_params_declare_sane_ranges():
    for key, value in (("full.epochs", 10**9), ("linear.lr", -0.1), ("full.batch_size", 0), ("upstream.D", -1)):
        with pytest.raises(ConfigError, match=rf"{key}: {value} is outside its sane range"):
            config.load("mini", {key: value})
    with pytest.raises(ConfigError, match=r"full.epochs: 1000000000 is outside its sane range \[1, 10000\]"):
        runs.setup("03_full_ft", epochs=10**9)


def test_a_run_planned_for_over_an_hour_prints_its_plan_first(monkeypatch, capsys):
    monkeypatch.setattr(planning, "_timed", lambda *a: (0.01, 0.001))  # 10 ms an image, 1 ms a head step
    runs.setup("03_full_ft", epochs=400)  # 400 x (1,000 + 2,300 / 3) images x 10 ms = 1.96 h
    out = capsys.readouterr().out
    assert "plan: 03_full_ft gmp 90% on shapes10: 400 epochs over 1,000 training images" in out
    assert "planned ~2.0 h (03_full_ft: 10.00 ms per training image, timed here)" in out
    runs.setup("03_full_ft", epochs=100)  # 0.5 h: nothing to say
    runs.setup("03_full_ft")  # the profile's own epochs, no records: not even timed
    assert capsys.readouterr().out == ""


def test_a_sweep_planned_for_over_an_hour_prints_its_plan_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(planning, "_timed", lambda *a: (0.01, 0.001))
    f = tmp_path / "long.yaml"
    f.write_text(yaml.safe_dump({"notebooks": ["03_full_ft"], "grid": {"seed": [21, 51], "epochs": [400]}}))
    assert sweep.run_sweep(f, dry_run=True, out_root=tmp_path) == 0
    out = capsys.readouterr().out
    assert "plan: ~3.9 device-hours, estimated from 03_full_ft: 10.00 ms per training image, timed here" in out


def test_records_give_the_time_per_epoch_of_full_finetuning(tmp_path, monkeypatch):
    from sparsenb import results

    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))
    cfg = config.load("mini")
    epochs = cfg["full"]["epochs"]
    for seed, per_epoch in ((21, 10.0), (51, 15.0), (81, 12.5)):  # params' epochs each: median 12.5 s an epoch
        wall = per_epoch * epochs
        spec = runs.spec("03_full_ft", seed=seed)
        results.record(spec, {"best": 0.5, "final": 0.5, "reported": 0.5}, started=0.0)
        path = results.path(spec)
        path.write_text(json.dumps({**json.loads(path.read_text()), "wall_seconds": wall}))
    run = runs.resolve("03_full_ft", epochs=400)[1].config()
    secs, how = planning.run_seconds("03_full_ft", cfg, run)
    assert secs == pytest.approx(400 * 12.5) and how == "03_full_ft: median 12.50 s per epoch of 3 records"


# --- pickles that would run code -----------------------------------------------------------------


class _Payload:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize(
    "payload, name",
    [
        (_Payload(os.system, "true"), "posix.system"),
        (_Payload(print, "hello"), "builtins.print"),
        (_Payload(subprocess.Popen, ["true"]), "subprocess.Popen"),
        (_Payload(eval, "1 + 1"), "builtins.eval"),
        (_Payload(exec, "x = 1"), "builtins.exec"),
        (_Payload(shutil.rmtree, "/nonexistent-sparsenb-test"), "shutil.rmtree"),
    ],
)
@pytest.mark.parametrize("how", ["zip", "legacy", "plain pickle"])
def test_a_pickle_that_would_run_code_is_refused_naming_what_it_calls(tmp_path, payload, name, how):
    sd = models.build("mini_resnet_s", 10).state_dict()
    p = tmp_path / "evil.pth"
    if how == "plain pickle":  # protocol 5: the global is named by STACK_GLOBAL
        p.write_bytes(pickle.dumps({"state_dict": sd, "x": payload}, protocol=5))
    else:
        torch.save({"state_dict": sd, "x": payload}, p, _use_new_zipfile_serialization=how == "zip")
    with pytest.raises(CheckpointError) as e:
        weights.load_upstream(p, "mini_resnet_s")
    msg = str(e.value)
    assert f"{p} would run code when loaded: its pickle calls {name}" in msg and "refused for that reason" in msg
    assert "weights_only" not in msg and "trust" not in msg and "\n" not in msg and "corrupt" not in msg


def test_code_globals_reads_the_pickle_without_running_it(tmp_path, capsys):
    p = tmp_path / "x.pth"
    torch.save({"x": _Payload(print, "RAN")}, p)
    assert weights.code_globals(p) == ["builtins.print"] and "RAN" not in capsys.readouterr().out
    torch.save(models.build("mini_resnet_s", 10).state_dict(), p)
    assert weights.code_globals(p) == []


# --- the outputs folder -----------------------------------------------------------------------------


def test_an_outputs_root_that_is_a_file_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path / "afile"))
    with pytest.raises(ConfigError, match=r"outputs root .*afile \(SPARSENB_OUTPUTS\) is a file, not a folder"):
        runs.setup("02_linear_ft")
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path / "afile" / "sub"))
    with pytest.raises(ConfigError, match=r"is under a file, .*afile, not a folder"):
        paths.outputs()
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump({"notebooks": ["02_linear_ft"], "grid": {"method": ["gmp"]}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPARSENB_OUTPUTS": str(tmp_path / "afile")}
    proc = subprocess.run([sys.executable, "-m", "sparsenb", "sweep", str(f)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "is a file" in proc.stderr
    assert "damaged" not in proc.stdout


def test_a_read_only_outputs_folder_is_one_line(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(ro))
    if (
        os.geteuid() == 0
    ):  # root writes into a folder without write permission: refuse the writes as a read-only mount does

        def refuse(path=None, *a, dir=None, **k):
            raise OSError(errno.EROFS, "Read-only file system", str(dir or path))

        monkeypatch.setattr(paths.tempfile, "TemporaryFile", refuse)
        monkeypatch.setattr(files, "open", refuse, raising=False)
    else:
        ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=rf"cannot write .*ro.* \(.+\): make the outputs folder {ro} writable"):
            runs.setup("02_linear_ft")
        with pytest.raises(ConfigError, match=r"cannot write .*summary.* \(.+\): make the outputs folder"):
            paths.output("summary", "results")  # 07_summary's folder
        with pytest.raises(ConfigError, match=r"cannot write .*\.lock .*: make the outputs folder"):
            with files.locked(ro / "results.csv"):
                pass
    finally:
        ro.chmod(0o755)


# --- a checkpoint of another architecture ----------------------------------------------------------


def test_a_checkpoint_of_another_architecture_names_the_way_to_set_it(tmp_path, monkeypatch):
    torch.save(models.build("resnet18", 1000).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError) as e:
        weights.load_upstream(tmp_path / "r18.pth", "resnet50")
    msg = str(e.value)
    assert "looks like a 'resnet18' checkpoint" in msg and "pass arch=" not in msg
    assert "params/<profile>.yaml" in msg and """-p overrides '{"arch": "resnet18"}'""" in msg
    cfg, spec = runs.resolve("02_linear_ft", overrides='{"arch": "resnet18"}')  # the way it names works for 02
    assert cfg.arch == "resnet18" and spec.arch == "resnet18" and spec.overrides == {"arch": "resnet18"}


# --- sweep plans, grids and paths -------------------------------------------------------------------


def test_a_plan_without_a_throughput_says_so_and_how_to_measure_it(tmp_path, monkeypatch, capsys):
    from sparsenb.__main__ import main

    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))  # no bench/train.jsonl here
    f = tmp_path / "p.yaml"
    grid = {"method": ["acdc", "gmp"], "sparsity": [0.9], "dataset": ["pets"], "seed": [21]}
    f.write_text(yaml.safe_dump({"notebooks": ["03_full_ft"], "profile": "paper", "grid": grid}))
    pl = sweep.plan(sweep.load_sweep(f))
    assert (pl["runs"], pl["todo"], pl["hours"], pl["unknown"]) == (1, 1, None, 1)
    assert main(["sweep", str(f), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "1 runs, 1 to do, device-hours unknown" in out and "0.0 device-hours" not in out
    assert "1 runs without an estimate; 03_full_ft: no throughput known: measure it" in out
    assert (
        "python -m sparsenb bench train" in out
        and "not planned, no checkpoint under checkpoint_root and none released: gmp 0.9" in out
    )


def test_an_empty_grid_key_is_named(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text(yaml.safe_dump({"notebooks": ["02_linear_ft"], "grid": {"method": [], "dataset": ["digits"]}}))
    with pytest.raises(ConfigError, match=r"e.yaml: grid key method is an empty list, which makes 0 runs"):
        sweep.load_sweep(f)


def test_a_relative_checkpoint_root_says_which_folder_it_used(capsys):
    cfg = config.load("paper", {"checkpoint_root": "my_checkpoints_bi"})
    assert cfg.checkpoint_root == str(ROOT / "my_checkpoints_bi")
    out = capsys.readouterr().out
    assert (
        f"checkpoint_root 'my_checkpoints_bi' (-p checkpoint_root) is relative: using {ROOT / 'my_checkpoints_bi'}"
        in out
    )
    with pytest.raises(ConfigError, match=f"with a checkpoint under {ROOT / 'my_checkpoints_bi' / 'gmp'}"):
        runs.setup("02_linear_ft", profile="paper", checkpoint_root="my_checkpoints_bi", dataset="pets")


# --- the summary folder -----------------------------------------------------------------------------


def test_a_summary_writes_its_folder_whole(tmp_path):
    from test_summary import _rec

    recs, out = tmp_path / "recs", tmp_path / "out"
    for seed in (21, 51):
        for method, sp, acc in (("dense", 0.0, 0.8), ("gmp", 0.8, 0.78)):
            _rec(recs, "02_linear_ft", method, sp, "shapes10", seed, acc)
    damaged = recs / "02_linear_ft" / "damaged.json"
    damaged.write_text("{not json")
    (out).mkdir()
    (out / "07_summary.ipynb").write_text("{}")  # not a summary product: kept
    first = report.write("results", out, root=recs)
    assert {"table1", "findings", "excluded_records", "figure2"} <= set(first) and first.removed == []
    assert "damaged.json" in (out / "excluded_records.csv").read_text()
    damaged.unlink()  # repaired
    again = report.write("results", out, root=recs)
    assert "excluded_records" not in again and again.removed == ["excluded_records.csv", "excluded_records.md"]
    assert not (out / "excluded_records.csv").exists()
    for rec in (recs / "02_linear_ft").glob("*.json"):
        rec.unlink()
    empty = report.write("results", out, root=recs)
    assert empty == {} and sorted(p.name for p in out.iterdir()) == ["07_summary.ipynb"]
    assert "table1.csv" in empty.removed and "figure2.png" in empty.removed
    assert empty.describe().startswith(
        f"wrote under {out}: nothing (no runs to summarise); removed, no longer produced"
    )


def test_an_upstream_seed_outside_the_reference_set_is_refused_before_any_work():
    """Finetuning never adds a model to the reference set: `-p upstream_seed 7` is refused by name."""
    for nb in ("02_linear_ft", "03_full_ft"):
        with pytest.raises(
            ConfigError, match=r"upstream seed 7 is not in the reference set; its upstream seeds are \[0, 1, 2\]"
        ):
            runs.setup(nb, upstream_seed=7)
