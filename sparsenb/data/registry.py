"""One registry for every dataset of the study: the 12 downstream tasks of the paper's Table 2,
and the generated mini suite.

    sparsenb.data.names()                       # all names
    sparsenb.data.info("aircraft").metric       # "mean_per_class"
    ds = sparsenb.data.get("shapes10", root, "train")   # a torch Dataset of (PIL image, label)
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from . import mini


class DataError(RuntimeError):
    """A dataset that is missing, incomplete or corrupt; the message says what to do."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    metric: str            # "top1" | "mean_per_class" (Table 2)
    kind: str              # "general" | "specialized" | "upstream"
    profile: str           # "paper" | "mini"
    title: str
    train_test: tuple[int, int] | None = None   # Table 2 sizes (paper datasets)


_PAPER = [
    # name, classes, metric, kind, title, (train, test) from Table 2; kind as the paper's Sec. 3.3
    # groups them: general = Caltech-101/256, CIFAR-10/100, DTD, SUN397; the rest specialized
    ("sun397", 397, "top1", "general", "SUN397", (19850, 19850)),
    ("aircraft", 100, "mean_per_class", "specialized", "FGVC Aircraft", (6667, 3333)),
    ("birdsnap", 500, "top1", "specialized", "Birdsnap", (32677, 8171)),
    # Caltech-101: Table 2 says 102 classes; the paper's code drops BACKGROUND_Google and keeps 101
    ("caltech101", 101, "mean_per_class", "general", "Caltech-101", (3060, 6084)),
    ("caltech256", 257, "mean_per_class", "general", "Caltech-256", (15420, 15187)),
    ("cars", 196, "top1", "specialized", "Stanford Cars", (8144, 8041)),
    ("cifar10", 10, "top1", "general", "CIFAR-10", (50000, 10000)),
    ("cifar100", 100, "top1", "general", "CIFAR-100", (50000, 10000)),
    ("dtd", 47, "top1", "general", "Describable Textures (DTD)", (3760, 1880)),
    ("flowers", 102, "mean_per_class", "specialized", "Oxford 102 Flowers", (2040, 6149)),
    ("food101", 101, "top1", "specialized", "Food-101", (75750, 25250)),
    ("pets", 37, "mean_per_class", "specialized", "Oxford-IIIT Pets", (3680, 3669)),
]
_MINI_CLASSES = {"upstream": 128, "shapes10": 10, "objects40": 40, "textures16": 16, "scenes20": 20,
                 "fine_shapes30": 30, "fine_colors24": 24, "digits": 10}

REGISTRY: dict[str, DatasetInfo] = {}
for _n, _c, _m, _k, _t, _s in _PAPER:
    REGISTRY[_n] = DatasetInfo(_n, _c, _m, _k, "paper", _t, _s)
for _n, _spec in mini.TASKS.items():
    REGISTRY[_n] = DatasetInfo(_n, _MINI_CLASSES[_n], _spec.metric, _spec.kind, "mini",
                               f"mini {_n} (~{_spec.mirrors})")

SPLITS = ("train", "val", "test")   # "val": mini tasks only (the paper's datasets have train/test)


def names(profile: str | None = None) -> list[str]:
    """Dataset names, optionally of one profile ("paper" or "mini")."""
    return [n for n, i in REGISTRY.items() if profile in (None, i.profile)]


def info(name: str) -> DatasetInfo:
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(names())}")
    return REGISTRY[name]


class ArrayDataset(Dataset):
    """Images held in memory as uint8 (N, H, W, 3); items are (PIL image or transform(image), label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], transform=None,
                 name: str = ""):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.targets, self.classes = images, np.asarray(labels, np.int64), list(classes)
        self.transform, self.name = transform, name

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])
        return (self.transform(img) if self.transform else img), int(self.targets[i])


def mini_cache_path(name: str, split: str, root: str | os.PathLike, sizes: dict, seed: int, size: int) -> Path:
    key = json.dumps({"sizes": sizes, "seed": seed, "size": size, "v": mini.GENERATOR_VERSION}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return Path(root) / "mini" / f"{name}-{split}-{digest}.npz"


def _mini(name: str, split: str, root, cfg) -> ArrayDataset:
    md = cfg["mini_data"]
    sizes = md["upstream"] if name == "upstream" else md["digits"] if name == "digits" else md["tasks"][name]
    path = mini_cache_path(name, split, root, sizes, md["seed"], cfg["image_size"])
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return ArrayDataset(z["images"], z["labels"], list(z["classes"]), name=name)
        except Exception as e:  # a half-written or damaged cache file: regenerate it
            print(f"regenerating damaged cache {path} ({type(e).__name__}: {e})")
    images, labels, classes = mini.generate(name, split, sizes, md["seed"], cfg["image_size"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, images=images, labels=labels, classes=np.array(classes))
    os.replace(tmp, path)
    return ArrayDataset(images, labels, classes, name=name)


def get(name: str, root: str | os.PathLike, split: str = "train", transform=None, cfg=None) -> Dataset:
    """The `split` ("train" | "val" | "test") of dataset `name` under `root`, items (image, label).

    Mini datasets are generated on first use and cached under `root/mini/` (sizes and seed from
    `cfg`, the mini profile by default). Paper datasets are read from `root/<name>/` and never
    downloaded; see `sparsenb.data.paper` for the layout each one expects."""
    i = info(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if i.profile == "mini":
        if cfg is None:
            from .. import config
            cfg = config.load("mini")
        ds = _mini(name, split, root, cfg)
    else:
        if split == "val":
            raise DataError(f"{name} has no validation split: the paper profile keeps the paper's train/test "
                            "splits and reports the paper's convention (see params/paper.yaml `report`)")
        from . import paper
        ds = paper.load(name, Path(root), split)
    ds.transform = transform
    return ds
