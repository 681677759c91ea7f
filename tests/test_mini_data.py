"""The generated mini suite, the transforms, and the two loader backends."""

import numpy as np
import pytest
import torch

from sparsenb import config, data
from sparsenb.data import DataError, mini

SMALL = {"classes": 128, "train_per_class": 3, "val_per_class": 1, "test_per_class": 2}


def test_generation_is_deterministic_and_seeded():
    a = mini.generate("shapes10", "train", SMALL, seed=0)
    b = mini.generate("shapes10", "train", SMALL, seed=0)
    c = mini.generate("shapes10", "train", SMALL, seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    train, test = a, mini.generate("shapes10", "test", SMALL, seed=0)
    assert not np.array_equal(train[0][:5], test[0][:5])


@pytest.mark.parametrize("task", list(mini.TASKS))
def test_every_task_shapes_and_labels(task):
    sizes = {"test_fraction": 0.4, "val_fraction": 0.1} if task == "digits" else dict(SMALL, imbalance=1.0)
    x, y, classes = mini.generate(task, "train", sizes, seed=0)
    assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3)
    assert set(np.unique(y)) == set(range(len(classes))) == set(range(data.info(task).num_classes))
    assert x.std() > 20  # not blank


def test_downstream_classes_never_occur_upstream():
    up, _ = mini.class_factors("upstream", 0)
    key = lambda c: tuple(sorted((k, round(float(v), 4)) for k, v in c.items()))  # noqa: E731
    up_keys = {key(c) for c in up}
    assert len(up_keys) == 128
    for task in ("shapes10", "objects40", "scenes20", "fine_shapes30"):
        down, _ = mini.class_factors(task, 0)
        assert len({key(c) for c in down}) == len(down), task
        assert not up_keys & {key(c) for c in down}, task
    # every upstream appearance is worn by several shapes: no single cue names an object class
    looks = [(c["tex"], c["freq"], c["hue1"], c["hue2"]) for c in up if "tex" in c and "obj" not in c]
    assert min(looks.count(lk) for lk in set(looks)) >= 2
    # glyphs of the fine-grained task are never upstream glyphs
    up_glyphs = {c["glyph"] for c in up if c.get("obj") == 1}
    assert not up_glyphs & {c["glyph"] for c in mini.class_factors("fine_shapes30", 0)[0]}
    # tasks defined by factors upstream never fixes use values off the upstream grid
    freqs = {c["freq"] for c in mini.class_factors("textures16", 0)[0]}
    assert not freqs & {1.5, 3.0}


def test_imbalanced_tasks_and_their_metric():
    counts = mini.class_counts(30, 60, imbalance=5.0, seed=0)
    assert counts.max() == 60 and counts.min() == 12
    x, y, _ = mini.generate("fine_shapes30", "train", {"train_per_class": 60, "test_per_class": 20, "imbalance": 5.0})
    per = np.bincount(y)
    assert per.max() / per.min() == pytest.approx(5.0, rel=0.1)
    assert data.info("fine_shapes30").metric == "mean_per_class" and data.info("fine_shapes30").kind == "specialized"
    kinds = {data.info(n).kind for n in data.names("mini")}
    assert kinds == {"upstream", "general", "specialized"}


def test_digits_are_real_and_split_disjoint():
    sizes = {"test_fraction": 0.4, "val_fraction": 0.1}
    xtr, xva, xte = (mini.generate("digits", s, sizes)[0] for s in ("train", "val", "test"))
    assert len(xtr) + len(xva) + len(xte) == 1797  # scikit-learn's digits, all of them
    assert abs(len(xte) / 1797 - 0.4) < 0.01 and abs(len(xva) / 1797 - 0.1) < 0.01
    seen = [{a.tobytes() for a in x} for x in (xtr, xva, xte)]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


def test_generated_splits_are_disjoint_and_test_sets_resolve_a_point():
    """Validation and test come from their own random streams (no image in two splits); every
    generated downstream task of the profile has >= 2,000 test images (binomial SE <= ~1.1 points)."""
    sizes = {"train_per_class": 4, "val_per_class": 2, "test_per_class": 2}
    xs = [mini.generate("shapes10", s, sizes)[0] for s in ("train", "val", "test")]
    seen = [{a.tobytes() for a in x} for x in xs]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    cfg = config.load("mini")
    for task, spec in cfg.mini_data["tasks"].items():
        n_classes = data.info(task).num_classes
        counts = mini.class_counts(n_classes, spec["test_per_class"], max(1.0, spec.get("imbalance", 1.0) / 3))
        assert counts.sum() >= 2000, (task, counts.sum())
        assert spec["val_per_class"] > 0


def test_get_caches_and_regenerates_damaged_cache(tmp_path):
    cfg = config.load("mini", {"mini_data.tasks.shapes10.train_per_class": 4})
    a = data.get("shapes10", tmp_path, "train", cfg=cfg)
    files = list((tmp_path / "mini").glob("shapes10-train-*.npz"))
    assert len(files) == 1 and len(a) == 40
    files[0].write_bytes(b"garbage")
    b = data.get("shapes10", tmp_path, "train", cfg=cfg)
    assert np.array_equal(a.images, b.images)
    assert (
        len(data.get("shapes10", tmp_path, "val", cfg=cfg)) == 10 * cfg.mini_data["tasks"]["shapes10"]["val_per_class"]
    )
    with pytest.raises(DataError, match="no validation split"):
        data.get("cifar10", tmp_path, "val")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        data.get("shapes10", tmp_path, "valid", cfg=cfg)


def test_unknown_config_keys_list_valid_ones():
    with pytest.raises(config.ConfigError, match="unknown config key 'linear.epoch'.*epochs"):
        config.load("mini", {"linear.epoch": 3})
    with pytest.raises(config.ConfigError, match="unknown profile 'huge'; valid: mini, mini_converged, paper"):
        config.load("huge")


def test_transforms_follow_the_paper():
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    ev = data.transforms.evaluation(224)(img)
    assert ev.shape == (3, 224, 224) and ev.dtype == torch.float32
    tr = data.transforms.train_augment(224, (0.5,) * 3, (0.25,) * 3)(img)
    assert tr.shape == (3, 224, 224)
    assert data.transforms.resize_size(224) == 256 and data.transforms.resize_size(32) == 37
    assert "BICUBIC" in repr(data.transforms.evaluation(224, bicubic=True))
    mean, std = data.transforms.channel_stats(
        data.ArrayDataset(np.full((4, 8, 8, 3), 51, np.uint8), np.zeros(4, int), ["a"])
    )
    assert mean == pytest.approx((0.2,) * 3, abs=1e-6) and std == pytest.approx((0.0,) * 3, abs=1e-3)


@pytest.fixture(scope="module")
def small_ds():
    x, y, c = mini.generate("shapes10", "train", {"train_per_class": 8, "test_per_class": 1}, size=64)
    return data.ArrayDataset(x, y, c, name="shapes10-64")


@pytest.mark.slow
@pytest.mark.parametrize("raw,tol", [(True, 0.01), (False, 0.04)])
def test_ffcv_and_torch_backends_agree(tmp_path, small_ds, raw, tol):
    beton = data.write_beton(small_ds, tmp_path / "d.beton", raw=raw)
    kw = dict(mode="eval", size=48, batch_size=100, mean=(0, 0, 0), std=(1, 1, 1))
    xt, yt = next(iter(data.loader(small_ds, **kw)))
    xf, yf = next(iter(data.loader(backend="ffcv", beton=beton, **kw)))
    assert torch.equal(yt, yf)
    diff = (xt - xf).abs().mean().item()
    assert diff < tol, f"mean |torch - ffcv| = {diff:.4f} (raw={raw})"
    # training pipeline: same shapes, same label multiset, similar pixel statistics
    kw["mode"] = "train"
    yt = torch.cat([y for _, y in data.loader(small_ds, shuffle=True, **kw)])
    xs, ys = zip(*data.loader(backend="ffcv", beton=beton, shuffle=True, **kw))
    assert sorted(torch.cat(ys).tolist()) == sorted(yt.tolist())
    assert torch.cat(xs).shape == (80, 3, 48, 48)
    assert abs(torch.cat(xs).mean().item() - xt.mean().item()) < 0.05


def test_ffcv_pipelines_normalise_on_the_gpu_and_keep_rigl_bicubic(tmp_path, small_ds, capsys):
    """On a GPU the uint8 batch goes to the device first and is normalised there, channels_last (built
    here, run where a GPU is); on the CPU normalisation stays before the tensor. RigL's bicubic resize,
    which ffcv's decoders cannot do, makes that split read through torch (said once)."""
    from ffcv.transforms import NormalizeImage, ToDevice, ToTensor, ToTorchImage

    kinds = lambda ops: [type(op) for op in ops]  # noqa: E731
    gpu = data.loaders.ffcv_pipelines("train", 32, (0.5,) * 3, (0.25,) * 3, (0.08, 1), device="cuda:0")
    assert kinds(gpu["image"])[-4:] == [ToTensor, ToDevice, ToTorchImage, NormalizeImage]
    assert gpu["image"][1].__class__.__name__ == "RandomHorizontalFlip" and gpu["image"][4].channels_last
    assert gpu["image"][3].device == torch.device("cuda:0") and gpu["image"][3].non_blocking
    assert kinds(gpu["label"])[-1] is ToDevice
    cpu = data.loaders.ffcv_pipelines("eval", 32, (0.5,) * 3, (0.25,) * 3, (0.08, 1), device="cpu")
    assert kinds(cpu["image"])[1:] == [NormalizeImage, ToTensor, ToTorchImage] and ToDevice not in kinds(cpu["label"])
    beton = tmp_path / "d.beton"
    kw = dict(mode="eval", size=48, batch_size=100, mean=(0, 0, 0), std=(1, 1, 1))
    xb, _ = next(iter(data.loader(small_ds, backend="ffcv", beton=beton, bicubic=True, **kw)))
    assert "bicubic resize (RigL) is not available in ffcv" in capsys.readouterr().out and not beton.exists()
    xt, _ = next(iter(data.loader(small_ds, bicubic=True, **kw)))
    assert torch.equal(xb, xt)


def test_truncated_beton_is_a_clear_error(tmp_path, small_ds):
    beton = data.write_beton(small_ds, tmp_path / "d.beton")
    data.check_beton(beton)
    raw = beton.read_bytes()
    bad = tmp_path / "bad.beton"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated or corrupt|not a readable .beton"):
        data.loader(backend="ffcv", beton=bad, size=48)
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="delete it and write it again"):
        data.check_beton(bad)
    with pytest.raises(DataError, match="no .beton at"):
        data.check_beton(tmp_path / "none.beton")
    assert not list(tmp_path.glob("*.tmp*"))


def test_prepare_writes_manifests_and_betons(tmp_path):
    def sized(train_per_class):
        task = "mini_data.tasks.textures16"
        return config.load(
            "mini",
            {
                "data_root": str(tmp_path / "data"),
                f"{task}.train_per_class": train_per_class,
                f"{task}.val_per_class": 1,
                f"{task}.test_per_class": 2,
            },
        )

    cfg = sized(3)
    table = data.prepare("textures16", cfg, out_dir=tmp_path / "out")
    assert list(table.split) == ["train", "val", "test"] and list(table.images) == [48, 16, 32]
    assert (tmp_path / "out" / "manifest-train.csv").exists()
    for b in table.beton:
        data.check_beton(b)
    again = data.prepare("textures16", cfg, out_dir=tmp_path / "out")
    assert list(again.manifest_sha256) == list(table.manifest_sha256) and list(again.beton) == list(table.beton)
    # .beton files live in the cache (never in data_root), named by the split's content
    assert all(str(b).startswith(cfg.beton_cache) for b in table.beton) and not (tmp_path / "data" / "beton").exists()
    changed = data.prepare("textures16", sized(4), out_dir=tmp_path / "out2")
    assert changed.beton[0] != table.beton[0] and changed.beton[2] == table.beton[2]  # train changed, test not


def test_a_corrupt_image_fails_the_beton_write_naming_it(tmp_path):
    """An image that cannot be read while ffcv's writer processes run: one DataError naming it,
    no hang (the alarm would fire), no temporary file left beside the data."""
    import signal

    from PIL import Image

    from sparsenb.data.paper import FileDataset

    samples = []
    for i in range(6):
        p = tmp_path / f"img{i}.jpg"
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(p)
        samples.append((str(p), i % 2))
    (tmp_path / "img3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    ds = FileDataset(samples, ["a", "b"], tmp_path, "toy")
    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("the beton write hung"))
    signal.alarm(120)
    try:
        with pytest.raises(
            DataError,
            match=r"1 item\(s\) of toy could not be read .*item 3: DataError: toy: cannot "
            r"read image .*img3.jpg",
        ):
            data.write_beton(ds, tmp_path / "out" / "toy.beton", num_workers=2)
    finally:
        signal.alarm(0)
    assert not list((tmp_path / "out").iterdir())


def test_ffcv_workers_are_clamped_to_the_cores_here():
    from sparsenb.data.loaders import usable_workers

    assert usable_workers(10_000) == len(__import__("os").sched_getaffinity(0)) and usable_workers(0) == 1


def test_loaders_never_change_the_dataset_they_read(small_ds):
    """A loader reads its split through its own transform (a view of the dataset): the dataset given
    keeps its transform, and two loaders over one dataset keep theirs (train and eval)."""
    from torch.utils.data import Dataset

    class Images(Dataset):  # images on disk are read image by image (the DataLoader path, not ArrayBatches)
        def __init__(self, base):
            self.base, self.transform = base, "mine"

        def __len__(self):
            return 8

        def __getitem__(self, i):
            img, y = self.base[i]
            return (self.transform(img) if callable(self.transform) else img), y

    ds = Images(small_ds)
    train = data.loader(ds, "train", 32, batch_size=4, shuffle=True)
    ev = data.loader(ds, "eval", 24, batch_size=4)
    assert ds.transform == "mine"
    assert next(iter(train))[0].shape == (4, 3, 32, 32) and next(iter(ev))[0].shape == (4, 3, 24, 24)
