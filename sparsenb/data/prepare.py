"""`prepare(name, cfg)`: what notebook 00_data does for one dataset -- both splits loaded (generated
and cached for the mini suite), split manifests written, FFCV `.beton` files written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from .. import paths, profiles
from . import transforms as tr
from .loaders import write_beton
from .manifest import digest, split_key, write_manifest
from .registry import get, info


def max_resolution(name: str, cfg) -> int | None:
    """Images kept in a .beton at most this large (longer side): mini images as they are; paper
    images at twice the training resolution (decoding stays cheap, crops keep their detail)."""
    return profiles.get(info(name).profile).beton_resolution(cfg["image_size"])


def eval_ready(name: str, split: str, cfg) -> bool:
    """Whether a split's .beton stores the official evaluation crops (raw, `image_size` square): the
    test and validation splits of a profile evaluating in the official order (`eval_transform`
    resize_crop), so ffcv's test batches are the official pipeline's pixels (`loaders.ffcv_pipelines`)."""
    return split != "train" and cfg["eval_transform"] == "resize_crop"


def beton_path(dataset, name: str, split: str, cfg) -> Path:
    """Where the .beton of a split lives: under the profile's `beton_cache` (never the user's data
    folder), named by a key of the split's content and how it is stored, so a changed split,
    resolution or evaluation crop never reuses an old file."""
    how = f"eval-crop-{cfg['image_size']}-raw" if eval_ready(name, split, cfg) else max_resolution(name, cfg)
    key = hashlib.sha1(f"{split_key(dataset)}|{how}".encode()).hexdigest()[:12]
    return Path(cfg["beton_cache"]) / f"{name}-{split}-{key}.beton"


def _write(dataset, path: Path, name: str, split: str, cfg) -> None:
    if eval_ready(name, split, cfg):  # bilinear: RigL's bicubic splits read through torch (loaders.loader)
        write_beton(dataset, path, raw=True, prepare=tr.eval_geometry(cfg["image_size"]))
    else:
        write_beton(dataset, path, max_resolution=max_resolution(name, cfg))


def beton_for(dataset, name: str, split: str, cfg) -> Path | None:
    """The split's .beton for the ffcv backend, written first if missing; None for the torch backend."""
    if cfg["backend"] != "ffcv":
        return None
    path = beton_path(dataset, name, split, cfg)
    if not path.exists():
        _write(dataset, path, name, split, cfg)
    return path


def prepare(name: str, cfg, betons: bool = True, out_dir: str | Path | None = None) -> pd.DataFrame:
    """Load both splits of `name`, write their manifests under `out_dir` (default
    outputs/data/<name>/) and, with `betons`, their `.beton` files. Returns one row per split."""
    meta = info(name)
    out_dir = Path(out_dir) if out_dir else paths.outputs() / "data" / name
    rows = []
    for split in profiles.get(meta.profile).splits:
        ds = get(name, cfg["data_root"], split, cfg=cfg)
        table = write_manifest(ds, out_dir / f"manifest-{split}.csv")
        beton = None
        if betons:
            beton = beton_path(ds, name, split, cfg)
            if not beton.exists():
                _write(ds, beton, name, split, cfg)
        rows.append(
            {
                "dataset": name,
                "split": split,
                "images": len(ds),
                "classes": meta.num_classes,
                "metric": meta.metric,
                "kind": meta.kind,
                "manifest_sha256": digest(table)[:16],
                "beton": str(beton) if beton else None,
            }
        )
    return pd.DataFrame(rows)
