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
