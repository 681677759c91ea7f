"""The paper profile end to end, as the README tells a user to run it: notebooks 00-05 and 07 through
papermill with `-p profile paper` and the machine parameters (`-p data_root`, `-p checkpoint_root`),
on tiny stand-in trees in the official layouts (Oxford-IIIT Pets, ImageNet val + ReaL + V2) and
random ResNet50 checkpoints in IST's format. Only the epochs and the resolution are made tiny
(every notebook's `overrides` parameter); nothing tracked is edited. A smoke test of the path, not a result."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sparsenb import models, paths, prune, results, runs, weights

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

BREEDS = ["Abyssinian", "Bengal", "american_bulldog", "beagle"]


def _jpg(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(value))
    Image.fromarray((rng.random((40, 48, 3)) * 60 + value).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    pets = root / "data" / "pets" / "oxford-iiit-pet"
    rows = {"trainval": [], "test": []}
    for k, breed in enumerate(BREEDS):
        for i in range(1, 9):
            _jpg(pets / "images" / f"{breed}_{i}.jpg", 40 * k + i)
            rows["trainval" if i <= 6 else "test"].append(f"{breed}_{i} {k + 1} {1 if k < 2 else 2} {k + 1}")
    for split, r in rows.items():
        (pets / "annotations").mkdir(parents=True, exist_ok=True)
        (pets / "annotations" / f"{split}.txt").write_text("\n".join(r) + "\n")
    val = root / "data" / "imagenet" / "val"
    for c, wnid in enumerate(["n01440764", "n01443537"]):
        for i in range(2):
            _jpg(val / wnid / f"ILSVRC2012_val_{2 * c + i + 1:08d}.JPEG", 50 * c + i)
    (root / "data" / "imagenet" / "real.json").write_text(json.dumps([[0], [0, 1], [1], []]))
    for variant in ("matched-frequency", "threshold0.7", "top-images"):
        for c in (0, 1):
            _jpg(root / "data" / f"imagenetv2-{variant}" / str(c) / "a.jpeg", 30 * c)
    torch.manual_seed(0)
    for method, sparsity in (("dense", 0.0), ("gmp", 0.9)):
        m = models.build("resnet50", 1000)
        if sparsity:
            prune.magnitude(m, sparsity)
        weights.save_checkpoint(
            m, root / "ckpt" / method / f"{sparsity:g}.pth", "resnet50", compact=True, method=method, sparsity=sparsity
        )
    return root


@pytest.fixture
def paper_env(world, monkeypatch):
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(world / "outputs"))
    monkeypatch.setenv("SPARSENB_PROGRESS", "0")
    return {"profile": "paper", "data_root": str(world / "data"), "checkpoint_root": str(world / "ckpt")}


TINY = {
    "image_size": 64,
    "eval_batch_size": 16,
    "linear.epochs": 2,
    "linear.milestones": [1],
    "full.epochs": 1,
    "full.milestones": [1],
    "speedup.epochs": 1,
    "speedup.milestones": [1],
}


def _run(notebook: str, where, **params):
    out = where / "executed" / f"{notebook}.ipynb"
    out.parent.mkdir(exist_ok=True)
    return runs.execute_notebook(notebook, out, {"overrides": TINY, **params})


def test_paper_profile_runs_every_notebook(world, paper_env):
    where = dict(data_root=paper_env["data_root"], checkpoint_root=paper_env["checkpoint_root"], overrides=TINY)
    _run("00_data", world, profile="paper", dataset="pets", data_root=where["data_root"], num_workers="1")
    assert not (world / "data" / "pets" / "beton").exists()  # .beton files go to the cache, not the data

    _run("01_upstream", world, profile="paper", method="gmp", sparsity=0.9, **where)
    _, spec = runs.setup("01_upstream", profile="paper", method="gmp", sparsity=0.9, **where)
    up = json.loads(results.path(spec).read_text())
    assert up["checkpoint_format"] == "ist" and up["achieved_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert all(0 <= up[k] <= 1 for k in ("imagenet_val", "imagenet_real", "imagenetv2_mean"))

    for nb in ("02_linear_ft", "03_full_ft"):
        _run(nb, world, profile="paper", method="gmp", sparsity=0.9, dataset="pets", **where)
        _, spec = runs.setup(nb, profile="paper", method="gmp", sparsity=0.9, dataset="pets", **where)
        rec = json.loads(results.path(spec).read_text())
        assert rec["config"]["inputs"]["checkpoint_sha256"] and set(rec["config"]["inputs"]["splits"]) == {
            "train",
            "test",
        }
        assert rec["report"] == "best" and 0 <= rec["best"] <= 1 and rec["test_size"] == 8
    assert rec["achieved_sparsity"] == pytest.approx(0.9, abs=0.01)  # 03: the zero set held

    _run("04_structure", world, profile="paper", checkpoint_root=where["checkpoint_root"])
    own = world / "outputs" / "cache" / "overrides" / paths.slug(TINY)  # every run here has overrides: its own root
    table = (own / "structure" / "paper" / "pruned_filters.csv").read_text()
    assert "gmp" in table and "dense" in table

    _run("05_speedup", world, profile="paper", dataset="pets", methods="dense,gmp", sparsity=0.9, **where)
    assert (own / "speedup" / "paper" / "pets-0.9.csv").exists()

    # the paper profile's records summarised on their own (one folder per profile and architecture)
    import nbformat

    nb = nbformat.read(_run("07_summary", world, source="results"), 4)
    assert (own / "summary" / "results-paper-resnet50" / "table1.csv").exists()
    assert not (own / "summary" / "results").exists() and not (world / "outputs" / "summary").exists()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "results: profile paper, arch resnet50" in printed

    # 08 on the paper profile: a robustness run of GMP (linear head retrained, corrupted test images on
    # the fly: nothing new next to the data or in the feature cache), then the summary against dense
    _run("02_linear_ft", world, profile="paper", method="dense", sparsity=0.0, dataset="pets", **where)
    data_before = sorted(p for p in (world / "data").rglob("*"))
    cache_before = sorted((world / "outputs" / "cache" / "features").rglob("*"))
    nb = nbformat.read(
        _run(
            "08_beyond_accuracy",
            world,
            profile="paper",
            mode="run",
            method="gmp",
            sparsity=0.9,
            dataset="pets",
            **where,
        ),
        4,
    )
    assert sorted(p for p in (world / "data").rglob("*")) == data_before
    assert sorted((world / "outputs" / "cache" / "features").rglob("*")) == cache_before
    out = own / "summary" / "beyond-paper-resnet50"
    rob = (out / "robustness.csv").read_text()
    assert all(c in rob for c in ("gaussian_noise", "defocus_blur", "contrast", "jpeg_compression"))
    import pandas as pd

    cal = pd.read_csv(out / "calibration.csv")
    assert set(cal.method) == {"dense", "gmp"} and cal.temperature.isna().all()  # paper runs have no val split
    assert (cal.ece_mass.between(0, 1)).all() and "sparse_less_robust" in (out / "findings.md").read_text()
    assert len(pd.read_csv(out / "disagreement.csv")) == 1  # GMP's linear run against dense, same seed
