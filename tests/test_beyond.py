"""sparsenb.beyond: calibration, who pays for sparsity, robustness and the findings, on small cases
computed by hand and on synthetic predictions whose truth is known by construction."""

import re

import numpy as np
import pandas as pd
import pytest

from sparsenb import config, results, runs
from sparsenb.beyond import calibration, classes, findings, robustness, study

# four examples, three classes: confidences 0.9 (right), 0.78 (wrong), 0.62 (right), 0.5 (wrong), none on a bin edge
PROBS = np.array([[0.9, 0.05, 0.05], [0.78, 0.12, 0.10], [0.28, 0.62, 0.10], [0.2, 0.3, 0.5]])
LABELS = np.array([0, 1, 1, 0])


def test_ece_by_hand():
    # 15 equal-width bins: each example alone, ECE = mean |correct - confidence|
    assert calibration.ece_width(PROBS, LABELS, 15) == pytest.approx((0.1 + 0.78 + 0.38 + 0.5) / 4)
    # 2 equal-mass bins {0.5, 0.62} and {0.78, 0.9}: gaps |0.5 - 0.56| and |0.5 - 0.84|
    bins = calibration.reliability(PROBS, LABELS, 2, "mass")
    assert list(bins["count"]) == [2, 2]
    assert calibration.ece_of(bins) == pytest.approx((0.06 + 0.34) / 2)
    # 2 equal-width bins: all four in [0.5, 1]: |0.5 - 0.7|; torchmetrics agrees with our bins
    assert calibration.ece_width(PROBS, LABELS, 2) == pytest.approx(0.2)
    assert calibration.ece_of(calibration.reliability(PROBS, LABELS, 2, "width")) == pytest.approx(0.2)


def test_nll_and_brier_by_hand():
    assert calibration.nll(PROBS, LABELS) == pytest.approx(-np.log([0.9, 0.12, 0.62, 0.2]).mean())
    brier = np.mean(
        [(0.1**2 + 0.05**2 * 2), (0.78**2 + 0.88**2 + 0.1**2), (0.28**2 + 0.38**2 + 0.1**2), (0.8**2 + 0.3**2 + 0.5**2)]
    )
    assert calibration.brier(PROBS, LABELS) == pytest.approx(brier)
    m = calibration.metrics(PROBS.astype(np.float16), LABELS, 15)  # as stored: float16, renormalised
    assert m["top1"] == 0.5 and m["ece_width"] == pytest.approx(0.44, abs=1e-3)


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_temperature_scaling_recovers_a_known_temperature(rng):
    z = rng.normal(0, 2, (20000, 10))
    labels = np.array([rng.choice(10, p=p) for p in _softmax(z)])  # calibrated by construction
    overconfident = _softmax(3.0 * z)
    t = calibration.fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    before = calibration.metrics(overconfident, labels)
    after = calibration.metrics(calibration.scale(overconfident, t), labels)
    assert after["ece_mass"] < 0.02 < before["ece_mass"] and after["nll"] < before["nll"]
    assert after["top1"] == before["top1"]  # one temperature never changes a prediction


def test_gini_disagreement_modal_pies():
    assert classes.gini([1, 1, 1, 1]) == 0 and classes.gini([0, 0, 0, 1]) == pytest.approx(0.75)
    assert classes.gini([1, 2, 3, 4]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="non-negative"):
        classes.gini([-1, 1])
    assert classes.disagreement([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    assert list(classes.modal([[0, 1, 2], [0, 2, 2], [1, 2, 0]])) == [0, 2, 2]
    sparse, dense = [[1, 1, 2], [1, 1, 2], [0, 1, 2]], [[0, 1, 2], [0, 1, 2], [0, 0, 2]]
    assert list(classes.pies(sparse, dense)) == [True, False, False]
    assert list(classes.pies([[0], [1]], [[1], [2]])) == [False]  # tied modes {0, 1} and {1, 2} share 1
    # dense seed j against the modal labels of the others (ties: any of them): 0, 0, 1/3 of the examples
    assert classes.seed_baseline(dense) == pytest.approx(1 / 9)
    assert list(classes.per_class([0, 1, 1, 2], [0, 1, 2, 2], 4)[:3]) == [1.0, 1.0, 0.5]


# --- a synthetic study with known truth --------------------------------------------------------

DATASETS = {"shapes10": 10, "textures16": 16, "scenes20": 20}
SEEDS = (21, 51, 81)


def _preds(z0, labels, seed, method, rng):
    """Control: softmax of the true logits plus seed noise (calibrated); GMP (linear): noisier logits
    (its own errors), 2.5x sharper and class 0 pushed down (a cost on one class); GMP (full): like
    the control. Effects alike on every task, so that 3 tasks can show them."""
    z = z0 + rng.normal(0, 0.3, z0.shape)
    if method == "gmp_linear":
        z = z + rng.normal(0, 1.0, z0.shape)  # its own errors on every task alike: disagreement, PIEs
        z[labels == 0, 0] -= 4.0
        z = 2.5 * z
    return {"labels": labels, "probs": _softmax(z)}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = _synthetic(tmp_path_factory.mktemp("results"))
    loaded = study.load(root)
    return root, loaded.frame, loaded.skipped


def _synthetic(root):
    rng = np.random.default_rng(0)

    def run(nb, method, sp, ds, seed):
        return runs.spec(nb, method=method, sparsity=sp, dataset=ds, seed=seed).config()

    for ds, k in DATASETS.items():
        z0 = {s: rng.normal(0, 2.5, (n, k)) for s, n in (("test", 1500), ("val", 600))}
        y = {s: np.array([rng.choice(k, p=p) for p in _softmax(z)]) for s, z in z0.items()}
        for ft, nb in (("linear", "02_linear_ft"), ("full", "03_full_ft")):
            for method, sp in (("gmp", 0.9), ("dense_2x", 0.0)):
                for seed in SEEDS:
                    kind = f"{method}_{ft}"
                    preds = {s: _preds(z0[s], y[s], seed, kind, rng) for s in z0}
                    results.write(nb, run(nb, method, sp, ds, seed), {"reported": 0.5, "predictions": preds}, root=root)
    # one record from before runs kept predictions, one of another configuration
    old = run("02_linear_ft", "acdc", 0.9, "shapes10", 21)
    results.write("02_linear_ft", old, {"reported": 0.5}, root=root)
    other = {**run("02_linear_ft", "acdc", 0.8, "shapes10", 21), "hp": {"lr": 1}}
    results.write("02_linear_ft", other, {"reported": 0.5}, root=root)
    return root


def test_study_loads_runs_and_names_what_it_skips(synthetic):
    runs = synthetic[1]
    assert len(runs) == len(DATASETS) * 2 * 2 * len(SEEDS)
    reasons = sorted(s["reason"] for s in synthetic[2])
    assert reasons == ["made before runs kept their predictions", "made with another configuration"]
    assert runs.temperature.notna().all()  # mini runs keep val: temperature fitted on it
    assert study.control("gmp", "mini") == "dense_2x" and study.control("gmp", "paper") == "dense"
    assert study.control("dense_2x", "mini") is None


def test_per_class_cost_lands_on_the_damaged_class(synthetic):
    runs = synthetic[1]
    worst = study.class_intervals(study.per_class(runs))
    lin = worst[worst.finetune == "linear"]
    first = lin.groupby("dataset").head(1)
    assert (first.cls == 0).all() and (first.ci_high < 0).all() and (first.seeds == len(SEEDS)).all()


def test_findings_verdicts_on_known_truth(synthetic):
    runs = synthetic[1]
    f = findings.table(runs, margin=0.01).set_index("key")
    assert f.loc["sparse_worse_calibrated_linear", "verdict"] == "agrees"
    assert f.loc["sparse_worse_calibrated_full", "verdict"] != "agrees"
    assert f.loc["full_ft_repairs_calibration", "verdict"] == "agrees"
    assert f.loc["per_class_cost_concentrated", "verdict"] == "agrees"
    assert f.loc["sparse_disagrees_beyond_seed_noise", "verdict"] == "agrees"
    assert f.loc["transfer_pies_exceed_seed_noise", "verdict"] == "agrees"
    assert f.loc["sparse_less_robust", "verdict"] == "inconclusive" and f.loc["sparse_less_robust", "tasks"] == 0
    done = f[f.tasks > 0]
    assert (done.tasks == len(DATASETS)).all() and len(done) == len(f) - 1
    assert (done.ci_low <= done.estimate).all() and (done.estimate <= done.ci_high).all()
    # full finetuning's sparse runs are the control's in distribution: no worse after scaling
    full = findings.table(runs[runs.finetune == "full"], margin=0.01).set_index("key")
    assert full.loc["calibration_no_worse_after_ts", "verdict"] == "agrees"


def test_full_repairs_calibration_pairs_the_modes_on_one_upstream_model():
    """A linear and a full run on the same upstream model are paired, so the interval crosses tasks
    with upstream models; an upstream model's own shift (alike in both modes) cancels. A finding whose
    values pool the upstream models (transfer-PIEs) says so instead of the one-model caveat."""
    from sparsenb.beyond import evidence

    rng = np.random.default_rng(0)
    pairs = pd.DataFrame(
        dict(finetune=ft, dataset=f"t{t}", method="gmp", sparsity=0.9, upstream_seed=u, seed=21,
             diff=(0.05 if ft == "linear" else 0.01) + 0.03 * u + rng.normal(0, 0.002))
        for ft in ("linear", "full") for t in range(4) for u in range(3)
    )  # fmt: skip
    d = findings.gap_by_mode(pairs)
    assert len(d) == 12 and sorted(set(d.upstream_seed)) == [0, 1, 2]
    assert d["diff"].to_numpy() == pytest.approx(0.04, abs=0.01)
    e = evidence.test(d, "greater")
    assert e["verdict"] == "agrees" and "(" not in e["text"], e["text"]  # 3 upstream models: no caveat
    one = evidence.test(d[d.upstream_seed == 0].drop(columns="upstream_seed"), "greater", pooled=True)
    assert one["text"].endswith(f"({evidence.POOLED})")


def test_findings_on_no_runs_are_inconclusive():
    f = findings.table(pd.DataFrame(), None)
    assert (f.verdict == "inconclusive").all() and f.key.is_unique and (f.evidence == "no paired results").all()


# --- robustness ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[::8, ::8])  # 64 x 64 x 3 uint8, shipped with scikit-image


def test_imagecorruptions_on_a_known_image(astronaut):
    x = astronaut.astype(float)
    # contrast: (x - mean) * c + mean per channel, c = 0.4 at severity 1 (Hendrycks & Dietterich's constant)
    want = np.clip((x - x.mean((0, 1))) * 0.4 + x.mean((0, 1)), 0, 255)
    assert np.abs(robustness.corrupt(astronaut, "contrast", 1, 0) - want).max() <= 1
    # gaussian noise: seeded (the same image twice; another seed differs), sd 0.08 x 255 at severity 1
    a, b = (robustness.corrupt(astronaut, "gaussian_noise", 1, s) for s in (3, 3))
    assert (a == b).all() and (a != robustness.corrupt(astronaut, "gaussian_noise", 1, 4)).any()
    mid = (x > 60) & (x < 195)
    assert np.std(a[mid] - x[mid]) == pytest.approx(0.08 * 255, rel=0.1)
    # severities order the damage for every corruption the profiles use
    for name in config.load("mini")["beyond"]["corruptions"]:
        err = [np.abs(robustness.corrupt(astronaut, name, s, 0).astype(float) - x).mean() for s in (1, 3, 5)]
        assert 0 < err[0] < err[1] < err[2], name


def test_corrupted_dataset_is_the_evaluation_view(astronaut):
    from sparsenb.data.base import ArrayDataset
    from sparsenb.data.transforms import evaluation

    ds = ArrayDataset(np.stack([astronaut[:32, :32]] * 3), np.array([0, 1, 2]), ["a", "b", "c"])
    ev = evaluation(32, (0.5,) * 3, (0.25,) * 3)
    item, label = robustness.Corrupted(ds, ev, "contrast", 5, indices=[2])[0]
    assert item.shape == (3, 32, 32) and label == 2
    clean = ev(ds[2][0])
    assert item.std() < 0.2 * clean.std()  # contrast 5 keeps 5% of the deviations from the mean
    assert list(robustness.subset(10, 0, 0)) == list(range(10)) and len(robustness.subset(10, 4, 0)) == 4


def test_robustness_pairs_and_record_frame(tmp_path):
    def spec(method, sp, ds, seed):
        return runs.spec("08_beyond_accuracy", mode="run", method=method, sparsity=sp, dataset=ds, seed=seed)

    for method, sp, rel in (("gmp", 0.9, 0.6), ("dense_2x", 0.0, 0.8)):
        for ds in DATASETS:
            for seed in SEEDS:
                run = spec(method, sp, ds, seed).config()
                rows = [
                    {"corruption": "contrast", "severity": s, "accuracy": rel * 0.9, "relative": rel + 0.01 * seed % 3}
                    for s in (1, 3, 5)
                ]
                results.write(study.ROBUSTNESS, run, {"clean": 0.9, "corrupted": rows}, root=tmp_path)
    rob = study.robustness(tmp_path)
    assert len(rob) == 2 * len(DATASETS) * len(SEEDS) * 3
    f = findings.table(pd.DataFrame(), rob).set_index("key")
    assert f.loc["sparse_less_robust", "verdict"] == "agrees"
    assert f.loc["sparse_less_robust", "estimate"] == pytest.approx(-20, abs=1)
    with pytest.raises(Exception, match="sparsit"):
        spec("gmp", 0.5, "shapes10", 21)
    assert spec("gmp", 0.9, "shapes10", 21).config()["corruptions"] == list(
        config.load("mini")["beyond"]["corruptions"]
    )


@pytest.mark.slow
@pytest.mark.notebooks
def test_notebook_run_mode_records_robustness_and_writes_nothing_corrupted(tmp_path, monkeypatch):
    """08 in run mode on the notebooks' upstream model (gmp 90%, seed 0, built at the test scale by
    conftest's `build_upstream`): one robustness record, the summary with it, no corrupted file."""
    from conftest import NOTEBOOK_OVERRIDES, NOTEBOOK_UPSTREAM, build_upstream
    from sparsenb import data, paths, runs

    overrides = {**NOTEBOOK_OVERRIDES, "beyond.max_test_images": 200}
    cfg = build_upstream(NOTEBOOK_UPSTREAM, overrides)
    for split in ("train", "val", "test"):  # the generated task's cache, made on first use
        data.get("shapes10", cfg["data_root"], split, cfg=cfg)
    data_before = sorted(paths.resolve(cfg["data_root"]).rglob("*"))
    runs.execute_notebook("08_beyond_accuracy", tmp_path / "08.ipynb", {"mode": "run", "overrides": overrides})
    assert sorted(paths.resolve(cfg["data_root"]).rglob("*")) == data_before
    rob = study.robustness(cfg["results_root"])
    mine = rob[(rob.method == "gmp") & (rob.dataset == "shapes10") & (rob.seed == 21)]
    assert len(mine) == 4 * 3 and mine.clean.between(0, 1).all() and mine.relative.notna().all()
    own = paths.output("summary", "beyond", overrides=overrides)  # a run with overrides: beside its records
    assert (own / "robustness.csv").exists()
    md = (own / "findings.md").read_text()
    assert md.startswith("# Beyond accuracy") and "95% interval" in md and "sparse_less_robust" in md
    assert not re.search(r"\d\.\d{2}", md.split("\n\n", 3)[-1]), "findings.md numbers are rounded to 0.1"


def test_beyond_findings_are_holm_adjusted_across_their_own_family():
    import pandas as pd

    from sparsenb.beyond import findings

    t = pd.DataFrame({"verdict": ["agrees", "agrees", "inconclusive"], "p": [0.01, 0.04, float("nan")]})
    out = findings.holm(t)
    assert out.p_holm.fillna(-1).tolist() == [0.02, 0.04, -1]
    assert out.verdict_holm.tolist() == ["agrees", "agrees", "inconclusive"]
    assert findings.holm(t.assign(p=[0.03, 0.04, 0.2])).verdict_holm.tolist() == ["inconclusive"] * 3
