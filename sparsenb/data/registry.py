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
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from .. import files, profiles
from . import mini, paper
from .base import SPLITS, ArrayDataset, DataError, DatasetInfo

REGISTRY: dict[str, DatasetInfo] = {}
for _n, _d in paper.SPECS.items():  # one spec per paper dataset (sparsenb.data.paper)
    REGISTRY[_n] = DatasetInfo(_n, _d.num_classes, _d.metric, _d.kind, "paper", _d.title, _d.train_test)
for _n, _spec in mini.TASKS.items():
    REGISTRY[_n] = DatasetInfo(_n, _spec.num_classes, _spec.metric, _spec.kind, "mini", f"mini {_n} (~{_spec.mirrors})")


def names(profile: str | None = None) -> list[str]:
    """Dataset names, optionally of one profile ("paper" or "mini")."""
    return [n for n, i in REGISTRY.items() if profile in (None, i.profile)]


def info(name: str) -> DatasetInfo:
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(names())}")
    return REGISTRY[name]


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
    with files.atomic(path) as tmp:
        np.savez(tmp, images=images, labels=labels, classes=np.array(classes))
    return ArrayDataset(images, labels, classes, name=name)


def get(name: str, root: str | os.PathLike, split: str = "train", transform=None, cfg=None) -> Dataset:
    """The `split` ("train" | "val" | "test") of dataset `name` under `root`, items (image, label).

    Mini datasets are generated on first use and cached under `root/mini/` (sizes and seed from
    `cfg`, the loaded profile). Paper datasets are read from `root/<name>/` and never
    downloaded; see `sparsenb.data.paper` for the layout each one expects."""
    i = info(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if profiles.get(i.profile).renders_data:
        if cfg is None:
            raise DataError(f"{name} is generated from the mini profile's sizes: pass cfg=config.load('mini')")
        ds = _mini(name, split, root, cfg)
    else:
        if split == "val":
            raise DataError(
                f"{name} has no validation split: the paper profile keeps the paper's train/test "
                "splits and reports the paper's convention (see params/paper.yaml `report`)"
            )
        ds = paper.load(name, Path(root), split)
    ds.transform = transform
    return ds
