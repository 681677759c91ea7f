"""The run contract, checked on what notebooks write: a notebook executed as a sweep executes it
(papermill, parameters injected) writes the record whose run id `runs.setup` predicts -- the id the
sweep uses to skip a finished run -- with the metrics its section promises. (nbval checks that every
notebook runs; these check what two of them recorded.)"""

import json
import os

import pytest

from conftest import build_upstream
from sparsenb import results, runs

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


TINY = {"upstream.D": 0.5, "upstream.methods.lth_t.round_budget": 0.5, "linear.milestones": [1]}


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Everything under a temporary outputs root; the runs get TINY as their `overrides` (half-epoch
    upstream models, two linear epochs)."""
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("SPARSENB_PROGRESS", "0")
    return tmp_path


def _execute(notebook: str, where, **params):
    out = where / "executed" / f"{notebook}.ipynb"
    out.parent.mkdir(exist_ok=True)
    return runs.execute_notebook(notebook, out, params)


def test_linear_notebook_writes_the_predicted_record(tiny):
    params = {"method": "acdc", "sparsity": 0.9, "dataset": "shapes10", "seed": 51, "epochs": 2, "overrides": TINY}
    with pytest.raises(Exception, match="finetuning never trains one"):  # load-only: the model is not built yet
        _execute("02_linear_ft", tiny, **params)
    build_upstream([("acdc", 0.9, 0)], {"linear.milestones": [1]})
    _execute("02_linear_ft", tiny, **params)
    _, spec = runs.setup("02_linear_ft", **params)  # what the sweep predicts, defaults from the notebook
    rec = json.loads(results.path(spec).read_text())
    assert rec["run_id"] == spec.run_id and rec["config"] == spec.config() and rec["config"]["overrides"] == TINY
    assert (rec["method"], rec["sparsity"], rec["dataset"], rec["seed"]) == ("acdc", 0.9, "shapes10", 51)
    assert rec["config"]["upstream_seed"] == 0 and rec["report"] == "reported"
    assert len(rec["curve"]) == 2 and all(0 <= r["accuracy"] <= 1 and 0 <= r["val_accuracy"] <= 1 for r in rec["curve"])
    chosen = max(rec["curve"], key=lambda r: r["val_accuracy"])  # the epoch is chosen on validation
    assert rec["reported"] == chosen["accuracy"] and rec["reported_epoch"] == chosen["epoch"]
    assert rec["test_size"] >= 2000 and rec["val_size"] > 0


def test_upstream_notebook_record_and_figure(tiny):
    _execute("01_upstream", tiny, method="gmp", sparsity=0.8, seed=0, overrides=TINY)
    cfg, spec = runs.setup("01_upstream", method="gmp", sparsity=0.8, seed=0, overrides=TINY)
    rec = json.loads(results.path(spec).read_text())
    assert rec["config"]["recipe"] == spec.recipe and rec["method"] == "gmp"
    assert rec["achieved_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert 0 < rec["val_top1"] <= 1 and 0 < rec["top1"] <= 1 and rec["epochs"] == 2 * cfg.upstream.D
    assert os.path.exists(os.path.join(cfg.checkpoint_root, "layers", "gmp-0.8-seed0.png"))


def test_a_cell_of_upstream_seeds_writes_the_single_runs_records(tiny):
    """A sweep with cell_over runs 02 once for upstream seeds 0 and 1 (one kernel): the records are
    those of the single runs (same run ids); with one record gone, the cell runs that seed alone."""
    import yaml

    from sparsenb import sweep

    build_upstream([("dense", 0.0, 0), ("dense", 0.0, 1)], {"linear.milestones": [1]})
    params = {"method": "dense", "sparsity": 0.0, "dataset": "digits", "epochs": 2, "overrides": TINY}
    grid = {"notebooks": ["02_linear_ft"], "cell_over": ["upstream_seed"], "grid": {"upstream_seed": [0, 1]}}
    (tiny / "cells.yaml").write_text(yaml.safe_dump({**grid, "parameters": params}))
    assert sweep.run_sweep(tiny / "cells.yaml", out_root=tiny / "runs") == 0
    single = [runs.spec("02_linear_ft", upstream_seed=u, **params) for u in (0, 1)]
    recs = [results.read(results.path(s)) for s in single]
    assert all(recs) and [r["config"] for r in recs] == [s.config() for s in single]
    assert len(list(results.path(single[0]).parent.glob("*.json"))) == 2  # nothing else recorded
    kept = results.path(single[0]).read_text()
    results.path(single[1]).unlink()
    assert sweep.run_sweep(tiny / "cells.yaml", out_root=tiny / "runs") == 0
    assert results.path(single[0]).read_text() == kept and results.read(results.path(single[1]))
    executed = (tiny / "runs" / "cells" / "02_linear_ft-mini-upstream_seed=0+1.ipynb").read_text()
    assert "upstream_seed = [1]" in executed
