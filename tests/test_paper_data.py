"""The 12 paper datasets and the ImageNet sets, read from tiny fake trees in each on-disk layout."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from sparsenb import data, metrics
from sparsenb.data import DataError


def jpg(path, seed=0, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_every_paper_dataset_is_registered():
    names = data.names("paper")
    assert len(names) == 12
    assert data.info("aircraft").metric == "mean_per_class" and data.info("cifar10").metric == "top1"
    assert {n for n in names if data.info(n).metric == "mean_per_class"} == {
        "aircraft",
        "caltech101",
        "caltech256",
        "flowers",
        "pets",
    }
    # Sec. 3.3: general = Caltech-101/256, CIFAR-10/100, DTD, SUN397; specialized = the other six
    assert {n for n in names if data.info(n).kind == "general"} == {
        "caltech101",
        "caltech256",
        "cifar10",
        "cifar100",
        "dtd",
        "sun397",
    }
    assert {n for n in names if data.info(n).kind == "specialized"} == {
        "aircraft",
        "birdsnap",
        "cars",
        "flowers",
        "food101",
        "pets",
    }
    with pytest.raises(DataError, match="unknown dataset 'imagenet21k'; valid: sun397, aircraft"):
        data.info("imagenet21k")


def test_missing_root_names_dataset_layout_and_source(tmp_path):
    with pytest.raises(DataError) as e:
        data.get("dtd", tmp_path, "train")
    msg = str(e.value)
    assert "'dtd'" in msg and "labels/train1.txt" in msg and "robots.ox.ac.uk" in msg and "never downloads" in msg


def test_image_folder_datasets(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for c in ("b_cls", "a_cls"):
            for i in range(n):
                jpg(tmp_path / "birdsnap" / split / c / f"{i}.jpg", i)
    tr, te = data.get("birdsnap", tmp_path, "train"), data.get("birdsnap", tmp_path, "test")
    assert tr.classes == ["a_cls", "b_cls"] and len(tr) == 6 and len(te) == 4
    img, y = tr[0]
    assert img.mode == "RGB" and y == 0
    assert data.digest(data.manifest(tr)) == data.digest(data.manifest(data.get("birdsnap", tmp_path, "train")))
    assert data.manifest(tr).item.iloc[0] == "train/a_cls/0.jpg"  # relative paths


def test_caltech101_first_30_background_dropped(tmp_path):
    d = tmp_path / "caltech101" / "caltech101" / "101_ObjectCategories"
    for c in ("BACKGROUND_Google", "accordion", "Faces"):
        for i in range(1, 36):
            jpg(d / c / f"image_{i:04d}.jpg", i)
    tr, te = data.get("caltech101", tmp_path, "train"), data.get("caltech101", tmp_path, "test")
    assert tr.classes == ["Faces", "accordion"]
    assert len(tr) == 60 and len(te) == 10
    assert all(p.endswith(tuple(f"image_{i:04d}.jpg" for i in range(1, 31))) for p, _ in tr.samples)
    assert all(p.endswith(tuple(f"image_{i:04d}.jpg" for i in range(31, 36))) for p, _ in te.samples)


def test_caltech256_first_60(tmp_path):
    d = tmp_path / "caltech256" / "caltech256" / "256_ObjectCategories"
    for k, c in enumerate(("001.ak47", "257.clutter")):
        for i in range(1, 63):
            jpg(d / c / f"{k + 1:03d}_{i:04d}.jpg", i)
    (d / "001.ak47" / "greg").mkdir()  # stray entries are ignored
    tr, te = data.get("caltech256", tmp_path, "train"), data.get("caltech256", tmp_path, "test")
    assert len(tr) == 120 and len(te) == 4 and tr.classes == ["001.ak47", "257.clutter"]


def _cifar_tree(root, name):
    rng = np.random.default_rng(0)
    if name == "cifar10":
        d = root / "cifar10" / "cifar-10-batches-py"
        d.mkdir(parents=True)
        for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            with open(d / f, "wb") as fh:
                pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 9]}, fh)
        with open(d / "batches.meta", "wb") as fh:
            pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    else:
        d = root / "cifar100" / "cifar-100-python"
        d.mkdir(parents=True)
        for f, n in (("train", 6), ("test", 3)):
            with open(d / f, "wb") as fh:
                pickle.dump(
                    {
                        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                        "fine_labels": list(range(n)),
                        "coarse_labels": [0] * n,
                    },
                    fh,
                )
        with open(d / "meta", "wb") as fh:
            pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)]}, fh)


@pytest.mark.parametrize("name,n_train,n_test", [("cifar10", 20, 4), ("cifar100", 6, 3)])
def test_cifar(tmp_path, name, n_train, n_test):
    _cifar_tree(tmp_path, name)
    tr, te = data.get(name, tmp_path, "train"), data.get(name, tmp_path, "test")
    assert len(tr) == n_train and len(te) == n_test
    img, y = tr[3]
    assert img.size == (32, 32) and y == tr.targets[3]
    assert len(data.manifest(te)) == n_test


def test_dtd_partition1_train_plus_val(tmp_path):
    d = tmp_path / "dtd" / "dtd" / "dtd"
    lines = {"train1": [], "val1": [], "test1": [], "train2": []}
    for c in ("banded", "zigzagged"):
        for i in range(6):
            jpg(d / "images" / c / f"{c}_{i}.jpg", i)
        lines["train1"] += [f"{c}/{c}_0.jpg", f"{c}/{c}_1.jpg"]
        lines["val1"] += [f"{c}/{c}_2.jpg"]
        lines["test1"] += [f"{c}/{c}_3.jpg", f"{c}/{c}_4.jpg", f"{c}/{c}_5.jpg"]
        lines["train2"] += [f"{c}/{c}_5.jpg"]
    (d / "labels").mkdir()
    for k, v in lines.items():
        (d / "labels" / f"{k}.txt").write_text("\n".join(v) + "\n")
    tr, te = data.get("dtd", tmp_path, "train"), data.get("dtd", tmp_path, "test")
    assert len(tr) == 6 and len(te) == 6 and tr.classes == ["banded", "zigzagged"]
    assert not {p for p, _ in tr.samples} & {p for p, _ in te.samples}


def test_aircraft_variant_trainval(tmp_path):
    d = tmp_path / "aircraft" / "fgvc-aircraft-2013b" / "data"
    (d / "images").mkdir(parents=True)
    variants = ["707-320", "A310"]
    (d / "variants.txt").write_text("\n".join(variants) + "\n")
    rows = {"trainval": [], "test": []}
    for i in range(8):
        jpg(d / "images" / f"{i:07d}.jpg", i)
        rows["trainval" if i < 6 else "test"].append(f"{i:07d} {variants[i % 2]}")
    for k, v in rows.items():
        (d / f"images_variant_{k}.txt").write_text("\n".join(v) + "\n")
    tr, te = data.get("aircraft", tmp_path, "train"), data.get("aircraft", tmp_path, "test")
    assert len(tr) == 6 and len(te) == 2 and list(tr.targets) == [0, 1, 0, 1, 0, 1]


def test_food101(tmp_path):
    d = tmp_path / "food101" / "food-101"
    meta = {"train": {}, "test": {}}
    for c in ("apple_pie", "waffles"):
        for i in range(5):
            jpg(d / "images" / c / f"{i}.jpg", i)
        meta["train"][c] = [f"{c}/{i}" for i in range(3)]
        meta["test"][c] = [f"{c}/{i}" for i in range(3, 5)]
    (d / "meta").mkdir()
    for k, v in meta.items():
        (d / "meta" / f"{k}.json").write_text(json.dumps(v))
    tr, te = data.get("food101", tmp_path, "train"), data.get("food101", tmp_path, "test")
    assert len(tr) == 6 and len(te) == 4 and tr.classes == ["apple_pie", "waffles"]


def test_pets_trainval(tmp_path):
    d = tmp_path / "pets" / "oxford-iiit-pet"
    rows = {"trainval": [], "test": []}
    for k, (breed, cid) in enumerate((("Abyssinian", 1), ("american_bulldog", 2))):
        for i in range(1, 5):
            jpg(d / "images" / f"{breed}_{i}.jpg", i)
            rows["trainval" if i <= 3 else "test"].append(f"{breed}_{i} {cid} {k + 1} 1")
    (d / "annotations").mkdir()
    for k, v in rows.items():
        (d / "annotations" / f"{k}.txt").write_text("\n".join(v) + "\n")
    tr, te = data.get("pets", tmp_path, "train"), data.get("pets", tmp_path, "test")
    assert len(tr) == 6 and len(te) == 2 and tr.classes == ["Abyssinian", "American Bulldog"]


def test_flowers_train_plus_val(tmp_path):
    from scipy.io import savemat

    d = tmp_path / "flowers" / "flowers-102"
    for i in range(1, 11):
        jpg(d / "jpg" / f"image_{i:05d}.jpg", i)
    savemat(d / "imagelabels.mat", {"labels": np.array([[1, 1, 2, 2, 3, 3, 1, 2, 3, 102]])})
    savemat(
        d / "setid.mat",
        {"trnid": np.array([[1, 3]]), "valid": np.array([[5]]), "tstid": np.array([[2, 4, 6, 7, 8, 9, 10]])},
    )
    tr, te = data.get("flowers", tmp_path, "train"), data.get("flowers", tmp_path, "test")
    assert len(tr) == 3 and list(tr.targets) == [0, 1, 2]
    assert len(te) == 7 and te.targets[-1] == 101


def test_cars_image_folders_and_sun397_partitions(tmp_path):
    for split in ("train", "test"):
        jpg(tmp_path / "cars" / split / "AM General Hummer SUV 2000" / "00001.jpg")
    assert len(data.get("cars", tmp_path, "train")) == 1
    d = tmp_path / "sun397" / "SUN397"
    (d / "ClassName.txt").parent.mkdir(parents=True)
    (d / "ClassName.txt").write_text("/a/abbey\n/b/bar\n")
    for c in ("a/abbey", "b/bar"):
        for i in range(3):
            jpg(d / c / f"sun_{i}.jpg", i)
    (d / "Partitions").mkdir()
    (d / "Partitions" / "Training_01.txt").write_text("/a/abbey/sun_0.jpg\n/b/bar/sun_0.jpg\n/b/bar/sun_1.jpg\n")
    (d / "Partitions" / "Testing_01.txt").write_text("/a/abbey/sun_1.jpg\n/a/abbey/sun_2.jpg\n")
    tr, te = data.get("sun397", tmp_path, "train"), data.get("sun397", tmp_path, "test")
    assert list(tr.targets) == [0, 1, 1] and list(te.targets) == [0, 0] and tr.classes == ["a/abbey", "b/bar"]


def test_corrupt_image_is_a_clear_error(tmp_path):
    for split in ("train", "test"):
        jpg(tmp_path / "birdsnap" / split / "a" / "0.jpg")
    (tmp_path / "birdsnap" / "train" / "a" / "0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot read image .*0.jpg"):
        data.get("birdsnap", tmp_path, "train")[0]


def test_imagenet_val_real_and_v2(tmp_path):
    val = tmp_path / "imagenet" / "val"
    names = []
    for k, wnid in enumerate(("n01440764", "n01443537")):
        for i in range(2):
            name = f"ILSVRC2012_val_{2 * i + k + 1:08d}.JPEG"
            jpg(val / wnid / name, k)
            names.append(name)
    ds = data.imagenet_eval("imagenet_val", tmp_path)
    assert len(ds) == 4 and ds.classes == ["n01440764", "n01443537"]
    # real.json is in file-name order: val_1 (class 0), val_2 (class 1), val_3, val_4
    real = [[0], [1, 0], [], [1]]
    (tmp_path / "imagenet" / "real.json").write_text(json.dumps(real))
    labels = data.real_labels(ds, tmp_path / "imagenet" / "real.json")
    by_name = {p.split("/")[-1]: lab for (p, _), lab in zip(ds.samples, labels)}
    assert by_name["ILSVRC2012_val_00000002.JPEG"] == [1, 0] and by_name["ILSVRC2012_val_00000003.JPEG"] == []
    preds = [0 if "00000002" in p or "00000001" in p else 0 for p, _ in ds.samples]  # always class 0
    assert metrics.real_accuracy(preds, labels) == pytest.approx(2 / 3)  # val_3 excluded
    v2 = tmp_path / "imagenetv2-matched-frequency"
    for c in (0, 2, 10):
        jpg(v2 / str(c) / "a.jpeg", c)
    ds2 = data.imagenet_eval("imagenetv2-matched-frequency", tmp_path)
    assert list(ds2.targets) == [0, 2, 10]  # folder names are class indices, not sort order
    with pytest.raises(DataError, match="imagenetv2-top-images not found"):
        data.imagenet_eval("imagenetv2-top-images", tmp_path)


def test_a_torchvision_root_holding_every_dataset_is_found(tmp_path):
    """The usual setup: one torchvision root with each dataset in torchvision's own layout
    (root/cifar-10-batches-py, root/caltech101/101_ObjectCategories, ...), not root/<name>/..."""
    _cifar_tree(tmp_path, "cifar10")
    tv_root = tmp_path / "torchvision"
    tv_root.mkdir()
    (tmp_path / "cifar10" / "cifar-10-batches-py").rename(tv_root / "cifar-10-batches-py")
    assert len(data.get("cifar10", tv_root, "train")) == 20 and len(data.get("cifar10", tv_root, "test")) == 4
    for i in range(3):
        jpg(tv_root / "caltech101" / "101_ObjectCategories" / f"class{i}" / f"image_{i:04d}.jpg", seed=i)
    assert len(data.get("caltech101", tv_root, "train")) == 3  # root/caltech101 is torchvision's, not ours


def test_a_dataset_in_neither_layout_lists_both_places(tmp_path):
    (tmp_path / "dtd").mkdir()
    with pytest.raises(
        DataError,
        match=r"dataset 'dtd' not found; tried .*dtd .* and .*Expected: <data_root>/dtd/"
        r"dtd/dtd/.* or <data_root>/ as torchvision's root",
    ):
        data.get("dtd", tmp_path, "train")
