"""The run contract refuses bad input before any work, with one error naming the fix: unknown
notebook parameters (also as sweep grid keys), sparsities the profile does not make, dense at a
sparsity, negative seeds, datasets of another profile."""

import dataclasses

import pytest
import yaml

from sparsenb import config, results, runs, specs, sweep
from sparsenb.config import ConfigError


@pytest.mark.parametrize(
    "params, message",
    [
        ({"arch": "resnet18"}, "has no parameter arch; its parameters: profile, method, sparsity"),
        ({"method": "dense"}, "dense models have sparsity 0: pass -p sparsity 0"),
        ({"sparsity": 1.5}, r"sparsity must be a fraction in \[0, 1\)"),
        ({"sparsity": 0.85}, "gmp at sparsity 0.85: the sparsities the mini profile makes are 0.8, 0.9, 0.95"),
        ({"seed": -1}, "seed must be a whole number >= 0"),
        ({"upstream_seed": 1.5}, "upstream_seed must be a whole number >= 0"),
        ({"dataset": "cifar10"}, "unknown dataset of the mini profile 'cifar10'; valid: shapes10, objects40"),
        ({"method": "snip"}, "unknown method 'snip'; valid: dense"),
        ({"epochs": -2}, "epochs must be a whole number >= 0"),
    ],
)
def test_bad_values_are_refused_naming_the_fix(params, message):
    with pytest.raises(ConfigError, match=message):
        runs.setup("02_linear_ft", **params)


def test_defaults_come_from_the_notebook_and_match_what_it_records():
    cfg, spec = runs.setup("03_full_ft", method="acdc")
    d = runs.defaults("03_full_ft")
    assert (d["sparsity"], d["dataset"], d["seed"], d["overrides"]) == (0.9, "shapes10", 21, {})
    assert isinstance(spec, specs.FullSpec) and spec.cfg is cfg
    assert (spec.method, spec.sparsity, spec.dataset, spec.seed, spec.upstream_seed) == ("acdc", 0.9, "shapes10", 21, 0)
    assert spec.hp == dict(cfg["full"]) and spec.run_id == results.run_id(spec.config())
    assert runs.setup("02_linear_ft", method="dense", sparsity=0)[1].sparsity == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 51  # a run is what it was built as


def test_overrides_are_a_recorded_parameter_in_the_run_id(tmp_path, monkeypatch):
    """A parameter like any other: it changes the configuration, is kept in the record and makes
    another run id; the environment changes only where things are, never what is computed."""
    monkeypatch.setenv("SPARSENB_OVERRIDES", '{"linear.epochs": 1}')  # no longer read by anything
    plain = runs.spec("02_linear_ft")
    assert plain.hp["epochs"] == config.load("mini")["linear"]["epochs"] and plain.overrides == {}
    short = runs.spec("02_linear_ft", overrides={"linear.epochs": 2, "linear.milestones": [1]})
    assert short.hp["epochs"] == 2 and short.cfg["linear"]["epochs"] == 2
    assert short.config()["overrides"] == {"linear.epochs": 2, "linear.milestones": [1]}
    assert short.run_id != plain.run_id and results.cell_hash(short.config()) != results.cell_hash(plain.config())
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))
    rec = results.record(short, {"best": 0.5, "final": 0.5, "reported": 0.5})
    assert rec["config"]["overrides"] == short.overrides and results.done(short) and not results.done(plain)
    with pytest.raises(ConfigError, match="overrides must be a mapping of dotted config keys"):
        runs.spec("02_linear_ft", overrides=["linear.epochs", 2])
    with pytest.raises(ConfigError, match="unknown config key 'linear.epoch'"):
        runs.spec("02_linear_ft", overrides={"linear.epoch": 2})


def test_one_results_root_for_notebooks_sweep_and_summary(tmp_path, monkeypatch):
    """`results.root_of(cfg)`: where a spec's record goes, where the sweep looks, what the summary reads."""
    from sparsenb import summary

    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))
    over = {"results_root": str(tmp_path / "elsewhere")}
    spec = runs.spec("02_linear_ft", overrides=over)
    assert results.root_of(spec.cfg) == tmp_path / "elsewhere" == results.path(spec).parent.parent
    results.record(spec, {"best": 0.5, "final": 0.5, "reported": 0.5})
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"notebooks": ["02_linear_ft"], "parameters": {"overrides": over}}))
    (run,) = sweep.expand(sweep.load_sweep(f), tmp_path)
    assert run.record == spec and run.finished()
    tidy = summary.load("results", overrides=over)
    assert len(tidy.frame) == 1 and tidy.excluded == []
    assert len(summary.load("results").frame) == 0  # the default root holds no record


def test_speedup_runs_are_identified_by_their_upstream_models_and_batch(monkeypatch):
    spec = runs.spec("05_speedup", methods="dense,dense_5x,gmp", upstream_seed=1)
    rows = {(r.method, r.engine): r for r in spec.records()}
    assert set(rows) == {(m, e) for m in ("dense", "dense_5x") for e in ("torch", "deepsparse")} | {
        ("gmp", "deepsparse")
    }
    assert rows["dense_5x", "torch"].sparsity == 0.0 and rows["gmp", "deepsparse"].sparsity == 0.9  # is_sparse
    gmp = rows["gmp", "deepsparse"].config()
    assert gmp["upstream_seed"] == 1 and gmp["batch_size"] == 64
    from sparsenb import checkpoints

    assert gmp["upstream_recipe"] == checkpoints.recipe_key(spec.cfg, "gmp")
    assert runs.spec("05_speedup", batch_size=32).records()[0].run_id != runs.spec("05_speedup").records()[0].run_id
    with pytest.raises(ConfigError, match="upstream seed 7 is not in the reference set"):
        runs.spec("05_speedup", upstream_seed=7)


def test_speedup_runs_several_tasks_in_turn_one_record_per_task_method_and_engine(monkeypatch):
    from sparsenb import speedup

    spec = runs.spec("05_speedup", dataset="shapes10, digits,shapes10", methods="dense,gmp")
    assert spec.datasets == ("shapes10", "digits") and speedup.stem(spec) == "shapes10+digits-0.9"
    recs = spec.records()
    assert [(r.dataset, r.method, r.engine) for r in recs] == [
        (d, m, e)
        for d in spec.datasets
        for m, e in [("dense", "torch"), ("dense", "deepsparse"), ("gmp", "deepsparse")]
    ]
    # each record is the one a run of its task alone writes: the same run ids as before
    alone = {r.run_id for d in spec.datasets for r in runs.spec("05_speedup", dataset=d, methods="dense,gmp").records()}
    assert {r.run_id for r in recs} == alone and len(alone) == 6
    for bad, message in [
        ("shapes10,cifar10", "unknown dataset of the mini profile 'cifar10'"),
        ("digits,upstream", "'upstream' is the mini profile's upstream task"),
        (" , ", "dataset names no task"),
    ]:
        with pytest.raises(ConfigError, match=message):
            runs.spec("05_speedup", dataset=bad)

    # speed-up and accuracy gap are against the dense-like runs of the same task
    seconds = {"dense": {"shapes10": (2.0, 4.0), "digits": (10.0, 5.0)}, "gmp": {"shapes10": (1.0,), "digits": (1.0,)}}
    acc = {("shapes10", "dense"): 0.5, ("shapes10", "gmp"): 0.6, ("digits", "dense"): 0.9, ("digits", "gmp"): 0.8}

    def fake(spec, dataset, method, engine):
        sec = seconds[method][dataset][spec.engines(method).index(engine)]
        return dict(dataset=dataset, method=method, engine=engine, epoch_seconds=sec, reported=acc[dataset, method])

    monkeypatch.setattr(speedup, "_row", fake)
    df = speedup.run(spec).set_index(["dataset", "method", "engine"])
    assert df.loc[("shapes10", "gmp", "deepsparse"), "speedup"] == pytest.approx(2.0)
    assert df.loc[("digits", "gmp", "deepsparse"), "speedup"] == pytest.approx(5.0)
    assert df.loc[("shapes10", "gmp", "deepsparse"), "accuracy_gap"] == pytest.approx(10.0)
    assert df.loc[("digits", "gmp", "deepsparse"), "accuracy_gap"] == pytest.approx(-10.0)


def test_a_misspelled_sweep_key_is_refused_when_the_sweep_is_expanded(tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text(yaml.safe_dump({"notebooks": ["02_linear_ft"], "grid": {"methods": ["gmp", "acdc"]}}))
    with pytest.raises(ConfigError, match="02_linear_ft has no parameter methods; its parameters: profile, method"):
        sweep.expand(sweep.load_sweep(f), tmp_path)
    f.write_text(yaml.safe_dump({"notebooks": ["02_linear_ft"], "grid": {"method": ["gmp"], "sparsity": [0.7]}}))
    with pytest.raises(ConfigError, match="gmp at sparsity 0.7"):
        sweep.expand(sweep.load_sweep(f), tmp_path)


@pytest.mark.slow
def test_yaml_syntax_errors_name_the_file_and_the_cli_prints_one_line(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("notebooks: [02_linear_ft]\ngrid: {method: [gmp, acdc}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line 2, column \d+: not valid YAML"):
        sweep.load_sweep(bad)
    proc = subprocess.run(
        [sys.executable, "-m", "sparsenb", "sweep", str(bad), "--dry-run"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"sparsenb sweep: error: {bad}: line 2, column 26: not valid YAML "
        "(expected ',' or ']', but got '}'); fix the file"
    ]
    debug = subprocess.run(
        [sys.executable, "-m", "sparsenb", "--debug", "sweep", str(bad)], capture_output=True, text=True
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_paper_run_ids_hold_digests_of_the_checkpoint_and_the_data(tmp_path):
    """A run on other data or another checkpoint is another run (a smoke run on fake data can never
    mark the real one done); its cell stays the same (the summary needs neither file)."""
    from test_paper_data import _cifar_tree

    from sparsenb import files, models, weights

    _cifar_tree(tmp_path / "data", "cifar10")
    ck = tmp_path / "ck" / "gmp" / "0.9.pth"
    weights.save_checkpoint(models.build("mini_resnet_x", 10), ck, "mini_resnet_x")
    where = {"profile": "paper", "data_root": str(tmp_path / "data"), "checkpoint_root": str(tmp_path / "ck")}
    run = runs.setup("02_linear_ft", method="gmp", sparsity=0.9, dataset="cifar10", **where)[1].config()
    assert run["inputs"]["checkpoint_sha256"] == files.sha256(ck)
    assert set(run["inputs"]["splits"]) == {"train", "test"}
    weights.save_checkpoint(models.build("mini_resnet_x", 10), ck, "mini_resnet_x")  # another (random) model
    other = runs.setup("02_linear_ft", method="gmp", sparsity=0.9, dataset="cifar10", **where)[1].config()
    assert results.run_id(other) != results.run_id(run) and results.cell_hash(other) == results.cell_hash(run)
    with pytest.raises(ConfigError, match=r"gmp at sparsity 0.8: the sparsities with a checkpoint under .* are 0.9"):
        runs.setup("02_linear_ft", method="gmp", sparsity=0.8, dataset="cifar10", **where)


def test_sweep_plan_counts_runs_hours_and_the_slurm_array(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "train.jsonl").write_text(json.dumps({"device": "GPU X", "img_per_s": {"fp32": 1000.0}}))
    spec = {
        "name": "p",
        "notebooks": ["03_full_ft"],
        "profile": "paper",
        "grid": {"method": ["gmp", "acdc"], "sparsity": [0.9], "dataset": ["pets", "dtd"], "seed": [21, 51]},
        "slurm": {
            "gpus_per_node": 1,
            "cpus_per_task": 8,
            "mem_gb": 32,
            "timeout_min": 600,
            "slurm_array_parallelism": 2,
        },
    }
    pl = sweep.plan(spec)  # no checkpoints or data here: the grid is counted, nothing known done
    assert (pl["runs"], pl["todo"]) == (4, 4) and "unknown" in pl["note"]
    assert pl["not_runnable"] == ["gmp 0.9"]  # GMP's checkpoints were never released: listed, not planned
    epochs = 150  # params/paper.yaml full.epochs
    expect = sum(2 * epochs * (n / 1000 + m / 3000) for n, m in ((3680, 3669), (3760, 1880))) / 3600
    assert pl["hours"] == pytest.approx(expect) and pl["estimated_from"] == [
        "03_full_ft: bench train on GPU X (1000 img/s)"
    ]
    assert pl["slurm_array"] == "sbatch --array=0-3%2 --gpus-per-node=1 --cpus-per-task=8 --mem=32G --time=600"


def test_the_params_schema_refuses_unknown_missing_and_mistyped_keys():
    from sparsenb import config

    cfg = dict(config.load("mini"))
    bad = {**cfg, "learning_rate": 0.1, "linear": {k: v for k, v in cfg["linear"].items() if k != "gamma"}}
    bad["full"] = {**cfg["full"], "epochs": "8"}
    bad["num_workers"] = "many"
    with pytest.raises(ConfigError) as e:
        config.validate(bad, "params/mini.yaml")
    msg = str(e.value)
    assert "<top level>: unknown key learning_rate; valid: profile, arch" in msg
    assert "linear.gamma: missing (a float)" in msg and "full.epochs: expected int, got '8'" in msg
    assert "num_workers: 'many' is none of int, 'auto'" in msg
    paper = dict(config.load("paper"))
    config.validate(paper)  # the paper profile has no mini sections, and needs none
    with pytest.raises(ConfigError, match="mini_data: missing"):
        config.validate({**cfg, "mini_data": None})
