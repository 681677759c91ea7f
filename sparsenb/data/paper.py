"""The paper's 12 downstream datasets and the ImageNet evaluation sets, read from disk.

Nothing is ever downloaded. Each dataset lives under `<data_root>/<name>/` in its official layout
(parsed by torchvision's dataset class where one exists) or, for the datasets the paper's code read
as image folders, as `<data_root>/<name>/{train,test}/<class>/<image>`. The splits follow the
paper's code: Caltech-101 first 30 images per class for train (BACKGROUND_Google dropped, 101
classes; Table 2 says 102), Caltech-256 first 60, DTD partition 1 (train1 + val1 / test1), Aircraft
variants trainval / test, SUN397 partition 01, Flowers train + val / test, Pets trainval / test.

Every dataset comes back as a `FileDataset`: items (PIL RGB image, label), plus `.samples`
(path, label), `.targets`, `.classes`, `.root` -- the same shape whatever the source layout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .base import DataError


class FileDataset(Dataset):
    """Images on disk: items (PIL RGB image or transform(image), label)."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], root, name: str = "", transform=None):
        self.samples = [(str(p), int(y)) for p, y in samples]
        self.targets = np.array([y for _, y in self.samples], np.int64)
        self.classes, self.root, self.name, self.transform = list(classes), str(root), name, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except Exception as e:
            raise DataError(
                f"{self.name}: cannot read image {path} ({type(e).__name__}: {e}); the file is "
                f"missing or corrupt: copy the dataset again"
            ) from e
        return (self.transform(img) if self.transform else img), label


class ArrayFiles(FileDataset):
    """CIFAR-style data held in memory (N, H, W, 3) uint8, with .samples naming the source file."""

    def __init__(self, images: np.ndarray, targets, classes, root, name: str, source: str):
        super().__init__([(f"{source}#{i}", y) for i, y in enumerate(targets)], classes, root, name)
        self.images = images

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])
        return (self.transform(img) if self.transform else img), int(self.targets[i])


class MissingData(DataError):
    """A dataset (or part of it) is not where it was looked for."""


def _missing(name: str, base: Path, what: str = "") -> DataError:
    spec = SPECS.get(name)
    layout, url = (spec.layout, spec.url) if spec else ("", "")
    return MissingData(
        f"dataset {name!r} not found under {base}{(' (' + what + ')') if what else ''}. "
        f"Expected layout: {base}/{layout}. It is published at {url} (sparsenb never downloads "
        f"data): place it there, or set data_root in params/paper.yaml."
    )


def _image_folder(base: Path, split: str, name: str) -> FileDataset:
    d = base / split
    if not d.is_dir():
        raise _missing(name, base, f"no {split}/ folder")
    classes = sorted(p.name for p in d.iterdir() if p.is_dir())
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    samples = [
        (str(f), i) for i, c in enumerate(classes) for f in sorted((d / c).iterdir()) if f.suffix.lower() in exts
    ]
    if not samples:
        raise _missing(name, base, f"no images in {split}/")
    return FileDataset(samples, classes, base, name)


def _tv(cls, name: str, base: Path, **kw):
    """A torchvision dataset with download=False; its missing-data error becomes ours."""
    try:
        return cls(str(base), download=False, **kw)
    except (RuntimeError, FileNotFoundError) as e:
        raise _missing(name, base, str(e).splitlines()[0]) from e


def _pairs(ds, files_attr: str, labels_attr: str = "_labels"):
    return list(zip(map(str, getattr(ds, files_attr)), getattr(ds, labels_attr)))


def _first_n_per_class(base: Path, sub: str, n_train: int, split: str, name: str, drop=(), jpg_only=False):
    """Caltech: classes sorted, images in file-name order, the first n per class are train."""
    d = base / sub
    if not d.is_dir():
        raise _missing(name, base.parent)
    classes = sorted(c.name for c in d.iterdir() if c.is_dir() and c.name not in drop)
    samples = []
    for i, c in enumerate(classes):
        files = sorted(f for f in (d / c).iterdir() if f.is_file() and (not jpg_only or f.suffix == ".jpg"))
        chosen = files[:n_train] if split == "train" else files[n_train:]
        samples += [(str(f), i) for f in chosen]
    return samples, classes


def _cifar(name: str, base: Path, split: str):
    import pickle

    folder, files, meta, label_key, names_key = {
        "cifar10": (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            "batches.meta",
            "labels",
            "label_names",
        ),
        "cifar100": ("cifar-100-python", ["train"], "meta", "fine_labels", "fine_label_names"),
    }[name]
    d = base / folder
    test_file = "test_batch" if name == "cifar10" else "test"
    chosen = files if split == "train" else [test_file]
    if not all((d / f).is_file() for f in chosen + [meta]):
        raise _missing(name, base)
    xs, ys = [], []
    for f in chosen:
        try:
            with open(d / f, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
        except Exception as e:
            raise DataError(f"{name}: {d / f} is corrupt ({type(e).__name__}: {e}); copy it again") from e
        xs.append(np.asarray(entry["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys += list(entry[label_key])
    with open(d / meta, "rb") as fh:
        classes = pickle.load(fh, encoding="latin1")[names_key]
    return ArrayFiles(np.concatenate(xs), ys, classes, base, name, source=f"{folder}/{'+'.join(chosen)}")


def _sun397(base: Path, split: str) -> FileDataset:
    if (base / "train").is_dir():
        return _image_folder(base, split, "sun397")
    d = base / "SUN397"
    part = d / "Partitions" / ("Training_01.txt" if split == "train" else "Testing_01.txt")
    if not (d / "ClassName.txt").is_file() or not part.is_file():
        raise _missing("sun397", base)
    classes = [ln.strip() for ln in (d / "ClassName.txt").read_text().splitlines() if ln.strip()]
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for ln in part.read_text().splitlines():
        rel = ln.strip()
        if rel:
            samples.append((str(d / rel.lstrip("/")), index[rel.rsplit("/", 1)[0]]))
    return FileDataset(samples, [c.lstrip("/") for c in classes], base, "sun397")


# --- one spec per dataset: Table 2, where it is published, how it lies on disk, how to read it ----


@dataclass(frozen=True)
class PaperDataset:
    name: str
    title: str
    num_classes: int
    metric: str  # "top1" | "mean_per_class" (Table 2)
    kind: str  # "general" | "specialized": the paper's Sec. 3.3 groups
    train_test: tuple[int, int]  # Table 2 sizes
    layout: str  # under <data_root>/<name>/
    url: str  # where it is published (never downloaded)
    read: Callable[[Path, str], FileDataset]  # (base, split) -> the split in the paper's code's way
    image_folders: bool = False  # also read as train/ and test/ image folders when present


def _caltech101(base: Path, split: str) -> FileDataset:
    s, c = _first_n_per_class(
        base / "caltech101", "101_ObjectCategories", 30, split, "caltech101", drop=("BACKGROUND_Google",)
    )
    return FileDataset(s, c, base, "caltech101")


def _caltech256(base: Path, split: str) -> FileDataset:
    s, c = _first_n_per_class(base / "caltech256", "256_ObjectCategories", 60, split, "caltech256", jpg_only=True)
    return FileDataset(s, c, base, "caltech256")


def _dtd(base: Path, split: str) -> FileDataset:
    import torchvision.datasets as tvd

    parts = ["train", "val"] if split == "train" else ["test"]
    dss = [_tv(tvd.DTD, "dtd", base, split=p, partition=1) for p in parts]
    return FileDataset(sum((_pairs(d, "_image_files") for d in dss), []), dss[0].classes, base, "dtd")


def _aircraft(base: Path, split: str) -> FileDataset:
    import torchvision.datasets as tvd

    ds = _tv(
        tvd.FGVCAircraft, "aircraft", base, split="trainval" if split == "train" else "test", annotation_level="variant"
    )
    return FileDataset(_pairs(ds, "_image_files"), ds.classes, base, "aircraft")


def _food101(base: Path, split: str) -> FileDataset:
    import torchvision.datasets as tvd

    ds = _tv(tvd.Food101, "food101", base, split=split)
    return FileDataset(_pairs(ds, "_image_files"), ds.classes, base, "food101")


def _pets(base: Path, split: str) -> FileDataset:
    import torchvision.datasets as tvd

    ds = _tv(tvd.OxfordIIITPet, "pets", base, split="trainval" if split == "train" else "test")
    return FileDataset(_pairs(ds, "_images"), ds.classes, base, "pets")


def _cars(base: Path, split: str) -> FileDataset:
    import torchvision.datasets as tvd

    ds = _tv(tvd.StanfordCars, "cars", base, split=split)
    return FileDataset([(str(p), y) for p, y in ds._samples], ds.classes, base, "cars")


def _flowers(base: Path, split: str) -> FileDataset:
    """Oxford 102 Flowers, official layout: train = trnid + valid (2,040), test = tstid (6,149)."""
    from scipy.io import loadmat

    d = base / "flowers-102"
    if not ((d / "jpg").is_dir() and (d / "setid.mat").is_file() and (d / "imagelabels.mat").is_file()):
        raise _missing("flowers", base)
    ids = loadmat(d / "setid.mat", squeeze_me=True)
    labels = loadmat(d / "imagelabels.mat", squeeze_me=True)["labels"]
    chosen = (
        np.concatenate([np.atleast_1d(ids["trnid"]), np.atleast_1d(ids["valid"])])
        if split == "train"
        else np.atleast_1d(ids["tstid"])
    )
    samples = [(str(d / "jpg" / f"image_{int(i):05d}.jpg"), int(labels[int(i) - 1]) - 1) for i in sorted(chosen)]
    return FileDataset(samples, [str(i) for i in range(1, 103)], base, "flowers")


_OX = "https://www.robots.ox.ac.uk/~vgg/data"
# Caltech-101: Table 2 says 102 classes; the paper's code drops BACKGROUND_Google and keeps 101
# one dataset per entry: a table reads better than the formatter's one-argument-per-line layout
# fmt: off
SPECS: dict[str, PaperDataset] = {d.name: d for d in [
    PaperDataset("sun397", "SUN397", 397, "top1", "general", (19850, 19850),
                 "SUN397/<letter>/<class>/*.jpg + ClassName.txt + Partitions/Training_01.txt, Testing_01.txt "
                 "(or train/ and test/ image folders)",
                 "https://vision.princeton.edu/projects/2010/SUN/", _sun397),
    PaperDataset("aircraft", "FGVC Aircraft", 100, "mean_per_class", "specialized", (6667, 3333),
                 "fgvc-aircraft-2013b/data/{images/,variants.txt,images_variant_trainval.txt,images_variant_test.txt}",
                 f"{_OX}/fgvc-aircraft/", _aircraft),
    PaperDataset("birdsnap", "Birdsnap", 500, "top1", "specialized", (32677, 8171),
                 "train/<class>/*.jpg and test/<class>/*.jpg (image folders)", "http://thomasberg.org/",
                 lambda base, split: _image_folder(base, split, "birdsnap"), image_folders=True),
    PaperDataset("caltech101", "Caltech-101", 101, "mean_per_class", "general", (3060, 6084),
                 "caltech101/101_ObjectCategories/<class>/image_NNNN.jpg",
                 "https://data.caltech.edu/records/mzrjq-6wc02", _caltech101),
    PaperDataset("caltech256", "Caltech-256", 257, "mean_per_class", "general", (15420, 15187),
                 "caltech256/256_ObjectCategories/NNN.<class>/NNN_NNNN.jpg",
                 "https://data.caltech.edu/records/nyy15-4j048", _caltech256),
    PaperDataset("cars", "Stanford Cars", 196, "top1", "specialized", (8144, 8041),
                 "stanford_cars/{devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_train/, "
                 "cars_test_annos_withlabels.mat, cars_test/} (or train/ and test/ image folders)",
                 "https://ai.stanford.edu/~jkrause/cars/car_dataset.html", _cars, image_folders=True),
    PaperDataset("cifar10", "CIFAR-10", 10, "top1", "general", (50000, 10000),
                 "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
                 "https://www.cs.toronto.edu/~kriz/cifar.html", lambda base, split: _cifar("cifar10", base, split)),
    PaperDataset("cifar100", "CIFAR-100", 100, "top1", "general", (50000, 10000),
                 "cifar-100-python/{train,test,meta}", "https://www.cs.toronto.edu/~kriz/cifar.html",
                 lambda base, split: _cifar("cifar100", base, split)),
    PaperDataset("dtd", "Describable Textures (DTD)", 47, "top1", "general", (3760, 1880),
                 "dtd/dtd/{images/<class>/*.jpg, labels/train1.txt, val1.txt, test1.txt}", f"{_OX}/dtd/", _dtd),
    PaperDataset("flowers", "Oxford 102 Flowers", 102, "mean_per_class", "specialized", (2040, 6149),
                 "flowers-102/{jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat} (or train/ and test/ image folders)",
                 f"{_OX}/flowers/102/", _flowers, image_folders=True),
    PaperDataset("food101", "Food-101", 101, "top1", "specialized", (75750, 25250),
                 "food-101/{images/<class>/*.jpg, meta/train.json, meta/test.json}",
                 "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/", _food101),
    PaperDataset("pets", "Oxford-IIIT Pets", 37, "mean_per_class", "specialized", (3680, 3669),
                 "oxford-iiit-pet/{images/*.jpg, annotations/trainval.txt, annotations/test.txt} (or train/ "
                 "and test/ image folders)",
                 f"{_OX}/pets/", _pets, image_folders=True),
]}
# fmt: on


def load(name: str, root: Path, split: str) -> FileDataset:
    """The train or test split of a paper dataset: under `root/<name>/` (one folder per dataset) or,
    for a torchvision root holding every dataset, in torchvision's own layout under `root`. The
    error of a dataset found in neither lists both places and the layout each expects."""
    spec = SPECS[name]
    tried = []
    for base in (Path(root) / name, Path(root)):
        if not base.is_dir():
            tried.append(f"{base} (no such folder)")
            continue
        try:
            if spec.image_folders and base.name == name and (base / "train").is_dir():
                return _image_folder(base, split, name)
            return spec.read(base, split)
        except MissingData as e:
            tried.append(str(e).split(". Expected layout")[0].replace(f"dataset {name!r} not found under ", ""))
    raise DataError(
        f"dataset {name!r} not found; tried {' and '.join(tried)}. Expected: <data_root>/{name}/{spec.layout} "
        f"(one folder per dataset) or <data_root>/ as torchvision's root holding it. It is published at {spec.url} "
        f"(sparsenb never downloads data): place it there, or pass -p data_root (or set SPARSENB_DATA_ROOT)."
    )


# --- ImageNet evaluation sets (Table 3) --------------------------------------------------------------

IMAGENET_SETS = (
    "imagenet_val",
    "imagenet_real",
    "imagenetv2-matched-frequency",
    "imagenetv2-threshold0.7",
    "imagenetv2-top-images",
)


def imagenet_eval(name: str, root: str | os.PathLike) -> FileDataset:
    """An ImageNet evaluation set under `root`:
    - imagenet_val / imagenet_real: `root/imagenet/val/<wnid>/*.JPEG` (labels = sorted wnids); ReaL
      adds `root/imagenet/real.json` (see `real_labels`);
    - imagenetv2-<variant>: `root/imagenetv2-<variant>/<class index 0..999>/*.jpeg` (folder names are
      class indices, not sorted strings)."""
    root = Path(root)
    if name not in IMAGENET_SETS:
        raise DataError(f"unknown ImageNet set {name!r}; valid: {', '.join(IMAGENET_SETS)}")
    if name in ("imagenet_val", "imagenet_real"):
        base = root / "imagenet"
        if not (base / "val").is_dir():
            raise DataError(
                f"ImageNet validation set not found: expected {base}/val/<wnid>/*.JPEG "
                f"(https://image-net.org/download.php; sparsenb never downloads data)"
            )
        return _image_folder(base, "val", name)
    base = root / name
    if not base.is_dir():
        raise DataError(
            f"{name} not found: expected {base}/<class index>/*.jpeg "
            f"(https://github.com/modestyachts/ImageNetV2; sparsenb never downloads data)"
        )
    classes = sorted((p.name for p in base.iterdir() if p.is_dir()), key=int)
    samples = [(str(f), int(c)) for c in classes for f in sorted((base / c).iterdir()) if f.is_file()]
    return FileDataset(samples, [str(i) for i in range(1000)], base, name)


def real_labels(val: FileDataset, real_json: str | os.PathLike) -> list[list[int]]:
    """ReaL reassessed labels aligned with `val.samples`: real.json lists, for the validation images in
    file-name order (ILSVRC2012_val_00000001.JPEG first), the set of correct classes (maybe empty)."""
    real = json.loads(Path(real_json).read_text())
    names = sorted(Path(p).name for p, _ in val.samples)
    if len(real) != len(names):
        raise DataError(f"{real_json} has {len(real)} entries but the validation set has {len(names)} images")
    by_name = dict(zip(names, real))
    return [list(by_name[Path(p).name]) for p, _ in val.samples]
