"""Table 4 on the paper profile (issue 35): PASCAL VOC read in the official layout (difficult objects
dropped, the validation split carved from trainval), torchvision FCOS over the published ResNet50
with the backbone's zero set fixed, and notebook 09 end to end through papermill on a tiny stand-in
VOC tree with a random ResNet50 checkpoint in IST's format (as test_paper_e2e does for
classification). Only the epochs and the image size are made tiny (`overrides`); nothing tracked
is edited. A smoke test of the path, not a result."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sparsenb import config, detectors, fcos, models, profiles, prune, results, runs, schema, specs, weights
from sparsenb.data import voc

# (image set, id, [(class, x1, y1, x2, y2, difficult)]): 3 classes, one difficult object (dropped)
TREE = {
    "VOC2007/trainval": [
        ("000001", [("cat", 5, 5, 30, 28, 0), ("dog", 34, 10, 60, 40, 1)]),
        ("000002", [("dog", 8, 8, 40, 36, 0)]),
        ("000003", [("person", 20, 4, 44, 44, 0), ("cat", 2, 30, 18, 46, 0)]),
        ("000004", [("cat", 10, 10, 50, 40, 0)]),
        ("000005", [("person", 4, 2, 30, 46, 0)]),
        ("000006", [("dog", 30, 6, 62, 30, 0)]),
    ],
    "VOC2007/test": [
        ("000007", [("cat", 6, 6, 40, 40, 0)]),
        ("000008", [("dog", 12, 4, 56, 44, 0)]),
        ("000009", [("person", 24, 2, 50, 46, 0), ("dog", 2, 20, 22, 44, 0)]),
        ("000010", [("cat", 30, 12, 60, 44, 0)]),
    ],
    "VOC2012/trainval": [
        ("2012_000001", [("person", 8, 4, 36, 46, 0)]),
        ("2012_000002", [("cat", 4, 14, 34, 44, 0)]),
        ("2012_000003", [("dog", 16, 8, 58, 40, 0)]),
        ("2012_000004", [("cat", 36, 4, 62, 30, 0), ("person", 4, 4, 28, 46, 0)]),
        ("2012_000005", [("dog", 10, 10, 40, 40, 1)]),  # only a difficult object: an image without targets
    ],
}
COLOUR = {"cat": (200, 60, 40), "dog": (40, 180, 60), "person": (50, 70, 210)}
TASK = {
    "train": ["VOC2007/trainval", "VOC2012/trainval"],
    "test": ["VOC2007/test"],
    "val_fraction": 0.2,
    "split_seed": 0,
}


def _xml(objects) -> str:
    parts = [
        f"<object><name>{c}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for c, x1, y1, x2, y2, d in objects
    ]
    return f"<annotation><size><width>64</width><height>48</height><depth>3</depth></size>{''.join(parts)}</annotation>"


def write_voc(root) -> None:
    """A VOC-layout stand-in tree under root/VOCdevkit: 64 x 48 JPEGs (a coloured box per object)."""
    rng = np.random.default_rng(0)
    listed: dict = {}
    for image_set, images in TREE.items():
        year, split = image_set.split("/")
        base = root / "VOCdevkit" / year
        for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (base / d).mkdir(parents=True, exist_ok=True)
        for image_id, objects in images:
            img = (rng.random((48, 64, 3)) * 60 + 90).astype(np.uint8)
            for c, x1, y1, x2, y2, _ in objects:
                img[y1 - 1 : y2, x1 - 1 : x2] = COLOUR[c]
            Image.fromarray(img).save(base / "JPEGImages" / f"{image_id}.jpg")
            (base / "Annotations" / f"{image_id}.xml").write_text(_xml(objects))
        listed.setdefault(year, {})[split] = [i for i, _ in images]
    for year, sets in listed.items():
        for split, ids in sets.items():
            (root / "VOCdevkit" / year / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    write_voc(root)
    return root


# --- the data ---------------------------------------------------------------------------------


def test_voc_annotations_drop_difficult_objects_and_give_class_ids_and_0_based_boxes(tree):
    boxes, labels = voc.parse(tree / "VOCdevkit" / "VOC2007" / "Annotations" / "000001.xml")
    assert labels.tolist() == [voc.CLASSES.index("cat")] and boxes.dtype == np.float32  # the difficult dog dropped
    assert boxes.tolist() == [[4.0, 4.0, 30.0, 28.0]]  # VOC's 1-based corners: x1 - 1, x2 as it is
    items = voc.read_set(str(tree), "VOC2007/trainval")
    assert [it.id for it in items] == [f"VOC2007/00000{i}" for i in range(1, 7)]
    assert items[2].labels.tolist() == [voc.CLASSES.index("person"), voc.CLASSES.index("cat")]
    assert len(voc.CLASSES) == 20 and voc.CLASSES.index("aeroplane") == 0 and voc.CLASSES[-1] == "tvmonitor"
    empty = voc.read_set(str(tree), "VOC2012/trainval")[-1]  # its one object is difficult
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,)
    x, t = voc.Detections(items[:1])[0]
    assert x.shape == (3, 48, 64) and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert torch.equal(t["labels"], torch.tensor([7])) and t["boxes"].shape == (1, 4)


def test_a_flipped_image_carries_its_boxes_along(tree):
    item = voc.read_set(str(tree), "VOC2007/trainval")[0]
    torch.manual_seed(0)
    flipped = [voc.Detections([item], flip=True)[0] for _ in range(8)]
    x0, t0 = voc.Detections([item])[0]
    assert any(torch.equal(x, x0.flip(-1)) for x, _ in flipped)
    for x, t in flipped:
        want = t0["boxes"] if torch.equal(x, x0) else torch.tensor([[64 - 30.0, 4.0, 64 - 4.0, 28.0]])
        assert torch.equal(t["boxes"], want)


def test_the_validation_split_is_carved_from_trainval_disjoint_and_deterministic(tree):
    train, val = voc.carve(100, 0.1, seed=0)
    again = voc.carve(100, 0.1, seed=0)
    assert len(val) == 10 and np.array_equal(val, again[1]) and np.array_equal(train, again[0])
    assert not set(train) & set(val) and set(train) | set(val) == set(range(100))
    assert not np.array_equal(val, voc.carve(100, 0.1, seed=1)[1])
    assert len(voc.carve(10, 0.01, 0)[1]) == 1 and len(voc.carve(10, 0.0, 0)[1]) == 0
    s = voc.splits(tree, TASK)
    assert len(s["val"]) == 2 and len(s["train"]) == 9 and len(s["test"]) == 4
    ids = {k: {it.id for it in v} for k, v in s.items()}
    assert not ids["train"] & ids["val"] and all(i.startswith("VOC2007/") for i in ids["test"])
    assert ids["train"] | ids["val"] == {f"{y}/{i}" for y in ("VOC2007", "VOC2012") for i, _ in TREE[f"{y}/trainval"]}
    assert (
        voc.content_key(tree, TASK) == voc.content_key(tree, TASK) != voc.content_key(tree, {**TASK, "split_seed": 1})
    )


def test_a_missing_voc_tree_is_one_error_naming_the_layout(tmp_path):
    with pytest.raises(voc.MissingVOC, match=r"VOCdevkit/VOC2007/\{Annotations.*VOCdevkit/VOC2012") as e:
        voc.splits(tmp_path, TASK)
    assert "never downloads" in str(e.value) and "ImageSets/Main/trainval.txt" in str(e.value)


# --- the profile, the schema, the spec ----------------------------------------------------------


def test_each_profile_names_its_detector_and_the_schema_checks_its_recipe():
    assert profiles.get("mini").detector == "centernet" and profiles.get("paper").detector == "fcos"
    paper, mini = dict(config.load("paper")), dict(config.load("mini"))
    assert schema.problems(paper, prune.hyperparameters()) == []
    paper["detection"] = {**paper["detection"], "milestones": [1]}
    assert any("detection: unknown key milestones" in p for p in schema.problems(paper, prune.hyperparameters()))
    mini["detection"] = {k: v for k, v in mini["detection"].items() if k != "milestones"}
    assert any(p.startswith("detection.milestones: missing") for p in schema.problems(mini, prune.hyperparameters()))


def test_mini_detection_run_ids_are_unchanged():
    """The mini DetectionSpec's config (and so its run id) is byte-identical to the one before the paper
    path existed (computed from the code of commit c488337 for these parameters)."""
    spec = runs.unchecked("09_detection", method="gmp", sparsity=0.9, task="det_shapes10", seed=0)
    assert spec.run_id == "ea0604d6dd0d"
    assert set(spec.config()) == {
        "arch", "data_seed", "generator", "hp", "method", "overrides", "profile", "seed", "sizes", "sparsity",
        "task", "upstream_recipe", "upstream_seed",
    }  # fmt: skip
    other = runs.unchecked("09_detection", method="gmp", sparsity=0.9, task="det_objects10", seed=21, upstream_seed=1)
    assert other.run_id == "0fcdcb99d655"


def test_the_paper_spec_has_no_mini_keys_and_its_recipe_from_params():
    cfg = config.load("paper")
    p = {"method": "acdc", "sparsity": 0.9, "task": "voc", "seed": 21, "upstream_seed": 0}
    spec = specs.DetectionSpec.of(cfg, p, inputs=False)
    c = spec.config()
    assert not {"data_seed", "generator", "upstream_recipe", "inputs"} & set(c)
    assert c["sizes"] == cfg["detection"]["tasks"]["voc"] and c["hp"]["lr"] == 0.0032 and "tasks" not in c["hp"]
    assert detectors.module_of(spec) is fcos


def test_the_lr_warms_up_linearly_then_falls_by_cosine_to_final_lr():
    hp = {"epochs": 10, "warmup_epochs": 2, "lr": 0.0032, "final_lr": 0.000384}
    f = fcos.lr_factor(hp, steps_per_epoch=5)
    assert f(0) == pytest.approx(0.1) and f(4) == pytest.approx(0.5) and f(9) == pytest.approx(1.0)
    assert f(29) == pytest.approx((1 + 0.12) / 2)  # half way through the cosine (epoch 6 of 2..10)
    assert f(49) == pytest.approx(0.12) and all(f(k) >= f(k + 1) for k in range(9, 49))


@pytest.fixture
def one_thread():
    """One intra-op thread, as a run on a CPU has (devices.one_cpu_thread): two fight the busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fcos_finetuning_keeps_the_backbones_zero_set_and_chooses_the_epoch_on_validation(tree, one_thread):
    torch.manual_seed(0)
    backbone = models.build("resnet18", 10)
    prune.magnitude(backbone, 0.9)
    zeros = {n: (m.weight == 0).clone() for n, m in prune.targets(backbone).items()}
    hp = dict(config.load("paper")["detection"], image_size=64, max_size=96, fpn_channels=64, batch_size=4, epochs=2)
    net = fcos.build(backbone, len(voc.CLASSES), hp, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and not m.training for m in net.backbone.body.modules())
    r = fcos.finetune(net, fcos.loaders(voc.splits(tree, TASK), hp, 0, seed=0), hp, log=lambda *_: None)
    assert r["sparsity_before"] == r["sparsity_after"] == pytest.approx(prune.target_sparsity(backbone))
    assert all(torch.equal(zeros[n], m.weight == 0) for n, m in prune.targets(backbone).items())
    chosen = max(r["curve"], key=lambda row: row["val_map50"])
    assert r["reported_epoch"] == chosen["epoch"] and r["reported"] == chosen["test_map50"]
    assert len(r["curve"]) == 2 and all(0 <= row["test_map50"] <= 1 for row in r["curve"])


# --- notebook 09 on the paper profile, end to end -----------------------------------------------


@pytest.fixture(scope="module")
def world(tree, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_detection")
    torch.manual_seed(0)
    m = models.build("resnet50", 1000)
    prune.magnitude(m, 0.9)
    weights.save_checkpoint(
        m, root / "ckpt" / "acdc" / "0.9.pth", "resnet50", compact=True, method="acdc", sparsity=0.9
    )
    return {"data_root": str(tree), "checkpoint_root": str(root / "ckpt"), "root": root}


TINY = {
    "detection.image_size": 64,
    "detection.max_size": 96,
    "detection.fpn_channels": 64,
    "detection.batch_size": 4,
    "detection.tasks.voc.val_fraction": 0.2,
}


@pytest.mark.notebooks
@pytest.mark.slow
def test_notebook_09_runs_the_paper_profile_on_a_voc_tree(world, monkeypatch):
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(world["root"] / "outputs"))
    monkeypatch.setenv("SPARSENB_PROGRESS", "0")
    params = dict(profile="paper", task="voc", method="acdc", sparsity=0.9, epochs=2, device="cpu", num_workers="0")
    where = {k: world[k] for k in ("data_root", "checkpoint_root")}
    out = world["root"] / "09_detection.ipynb"
    runs.execute_notebook("09_detection", out, {**params, **where, "overrides": TINY})
    _, spec = runs.setup("09_detection", **params, **where, overrides=TINY)
    rec = json.loads(results.path(spec).read_text())
    assert (rec["method"], rec["sparsity"], rec["dataset"], rec["upstream_seed"]) == ("acdc", 0.9, "voc", 0)
    assert rec["config"]["task"] == "voc" and rec["config"]["overrides"] == TINY and rec["config"]["hp"]["epochs"] == 2
    inputs = rec["config"]["inputs"]
    assert inputs["checkpoint_sha256"] and inputs["voc"] == voc.content_key(world["data_root"], spec.sizes)
    assert 0 <= rec["map50"] <= 1 and 0 <= rec["map50_95"] <= 1 and 0 <= rec["map75"] <= 1
    assert rec["achieved_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert abs(rec["sparsity_before"] - rec["achieved_sparsity"]) < 1e-6  # the zero set held
    chosen = max(rec["curve"], key=lambda r: r["val_map50"])  # the reported epoch: chosen on validation
    assert rec["reported_epoch"] == chosen["epoch"] and rec["map50"] == rec["reported"] == chosen["test_map50"]
    assert rec["best"] == max(r["test_map50"] for r in rec["curve"]) and rec["final"] == rec["curve"][-1]["test_map50"]
    assert (rec["train_size"], rec["val_size"], rec["test_size"], rec["test_objects"]) == (9, 2, 4, 5)
    assert [ex["image"] for ex in rec["examples"]] == [f"VOC2007/0000{i:02d}" for i in range(7, 11)]
    assert rec["curve"][0]["lr"] == pytest.approx(0.0032 / 3 / 2)  # warm-up: 1 of 2 epochs x 3 steps done
    figures = world["root"] / "outputs" / "cache" / "overrides"
    assert {p.name for p in figures.rglob("09_detection/*.png")} == {
        f"{rec['run_id']}.png",
        f"{rec['run_id']}-boxes.png",
    }
    # no VOC tree where data_root points: one error naming the layout, before any work
    with pytest.raises(voc.MissingVOC, match="Expected layout"):
        runs.setup("09_detection", **params, checkpoint_root=world["checkpoint_root"], data_root=str(world["root"]))
