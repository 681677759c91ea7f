"""Run records: stable ids, atomic writes, a tidy DataFrame."""

import json

import pytest

from sparsenb import results


def test_record_and_load(tmp_path):
    cfg = {
        "profile": "mini",
        "method": "gmp",
        "sparsity": 0.9,
        "dataset": "shapes10",
        "seed": 21,
        "finetune": "linear",
        "linear": {"epochs": 3},
    }
    rec = results.record(
        "02_linear_ft", cfg, {"best": 0.8, "final": 0.75, "curve": [{"epoch": 1}]}, started=0.0, root=tmp_path
    )
    assert rec["run_id"] == results.run_id(dict(reversed(list(cfg.items()))))  # key order does not matter
    assert results.exists("02_linear_ft", cfg, root=tmp_path)
    assert not results.exists("02_linear_ft", {**cfg, "seed": 51}, root=tmp_path)
    df = results.load(root=tmp_path)
    assert len(df) == 1 and df.loc[0, "method"] == "gmp" and df.loc[0, "best"] == 0.8
    assert df.loc[0, "versions"]["torch"] and df.loc[0, "config"]["linear"]["epochs"] == 3
    assert not list(tmp_path.rglob("*.tmp*"))
    # a stray, half-written foreign file is skipped by name, not fatal
    (tmp_path / "02_linear_ft" / "junk.json").write_text("{")
    with pytest.warns(UserWarning, match=r"junk.json \(not readable as JSON"):
        assert len(results.load("02_linear_ft", root=tmp_path)) == 1
    assert json.loads(results.path_of("02_linear_ft", rec["run_id"], tmp_path).read_text())["final"] == 0.75


def test_metrics_cannot_overwrite_the_run_identity(tmp_path):
    import pytest

    cfg = {"method": "gmp", "sparsity": 0.9}
    with pytest.raises(ValueError, match="achieved_sparsity"):
        results.record("03_full_ft", cfg, {"sparsity": 0.89999}, root=tmp_path)
    rec = results.record("03_full_ft", cfg, {"sparsity": 0.9, "best": 1.0}, root=tmp_path)
    assert rec["sparsity"] == 0.9
