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
    rec = results.write(
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
        results.write("03_full_ft", cfg, {"sparsity": 0.89999}, root=tmp_path)
    rec = results.write("03_full_ft", cfg, {"sparsity": 0.9, "best": 1.0}, root=tmp_path)
    assert rec["sparsity"] == 0.9


def test_runs_keep_their_predictions_beside_the_record(tmp_path):
    """The reported epoch's class probabilities are stored (float16, hashed in the record) and read
    back checked; a changed file is named; a record without them is None, never guessed."""
    import numpy as np
    import torch

    from sparsenb import train

    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 8, generator=g)
    y = (x[:, 0] > 0).long()
    hp = {
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "batch_size": 16,
        "epochs": 4,
        "milestones": [3],
        "gamma": 0.1,
    }
    res = train.linear_finetune(x[:80], y[:80], x[80:], y[80:], 2, hp, seed=0, device="cpu", val=(x[:40], y[:40]))
    res.pop("head")
    p = res["predictions"]
    assert p["test"]["probs"].dtype == np.float16 and p["test"]["probs"].shape == (40, 2)
    acc = float((p["test"]["probs"].argmax(1) == p["test"]["labels"]).mean())
    assert acc == pytest.approx(res["reported"], abs=1 / 40)  # the reported epoch's predictions
    rec = results.write("02_linear_ft", {"method": "gmp", "seed": 1}, res, root=tmp_path)
    assert "predictions" in rec and set(rec["predictions"]["splits"]) == {"test", "val"}
    back = results.predictions(rec, tmp_path)
    assert np.array_equal(back["test"]["probs"], p["test"]["probs"])
    assert np.array_equal(back["val"]["labels"], y[:40].numpy())
    f = tmp_path / "02_linear_ft" / rec["predictions"]["file"]
    f.write_bytes(f.read_bytes()[:-4] + b"abcd")
    with pytest.raises(results.PredictionsError, match="does not match its sha256"):
        results.predictions(rec, tmp_path)
    assert results.predictions({k: v for k, v in rec.items() if k != "predictions"}, tmp_path) is None


def test_a_record_says_where_it_ran_outside_its_id(tmp_path):
    from sparsenb import runs

    spec = runs.spec("02_linear_ft", method="gmp", sparsity=0.9, overrides={"results_root": str(tmp_path)})
    rec = results.record(spec, {"best": 0.5})
    assert rec["ran_with"] == {"backend": "torch", "device": "cpu", "num_workers": 0}
    assert "ran_with" not in rec["config"] and rec["run_id"] == spec.run_id
