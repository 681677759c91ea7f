"""Split manifests: one row per image (relative path or index, label, sha256 of its bytes), so two
labs can prove they trained and tested on the same split. `digest()` is one hash of a whole split."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import files


def _rows(dataset):
    if hasattr(dataset, "images") and isinstance(dataset.images, np.ndarray):  # generated, in memory
        for i in range(len(dataset)):
            yield f"#{i}", int(dataset.targets[i]), hashlib.sha256(dataset.images[i].tobytes()).hexdigest()
    elif hasattr(dataset, "samples"):  # files on disk
        root = Path(getattr(dataset, "root", "."))
        for path, label in dataset.samples:
            h = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            yield os.path.relpath(path, root), int(label), h
    else:
        raise TypeError(f"cannot list the images of a {type(dataset).__name__}: it needs .samples or .images")


def manifest(dataset) -> pd.DataFrame:
    """The split as a table: item (relative path, or #index for generated data), label, sha256."""
    return pd.DataFrame(list(_rows(dataset)), columns=["item", "label", "sha256"])


def digest(table: pd.DataFrame) -> str:
    """One sha256 over the whole manifest (order-independent)."""
    lines = sorted(f"{r.item}\t{r.label}\t{r.sha256}" for r in table.itertuples())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def write_manifest(dataset, path: str | os.PathLike) -> pd.DataFrame:
    table = manifest(dataset)
    with files.atomic(path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def split_key(dataset) -> str:
    """A cheap content key of a split (no image is read from disk): its class, name, size, labels,
    the bytes of in-memory images and the paths of image files. Derived files (features, .beton)
    are keyed by it, so a changed split never reuses them; `digest` (sha256 of every image) is the
    full proof two labs share a split."""
    h = hashlib.sha1(f"{type(dataset).__name__}:{getattr(dataset, 'name', '')}:{len(dataset)}".encode())
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        h.update(np.asarray(targets, np.int64).tobytes())
    images = getattr(dataset, "images", None)
    if isinstance(images, np.ndarray):
        h.update(hashlib.sha1(images.tobytes()).digest())
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        h.update("\n".join(str(s[0]) for s in samples).encode())
    return h.hexdigest()
