"""`prepare(name, cfg)`: what notebook 00_data does for one dataset -- both splits loaded (generated
and cached for the mini suite), split manifests written, FFCV `.beton` files written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import paths
from .loaders import write_beton
from .manifest import digest, write_manifest
from .registry import get, info


def beton_path(name: str, split: str, cfg) -> Path:
    return Path(cfg["data_root"]) / "beton" / f"{name}-{split}-{cfg['image_size']}.beton"


def prepare(name: str, cfg, betons: bool = True, out_dir: str | Path | None = None) -> pd.DataFrame:
    """Load both splits of `name`, write their manifests under `out_dir` (default
    outputs/data/<name>/) and, with `betons`, their `.beton` files. Returns one row per split."""
    meta = info(name)
    out_dir = Path(out_dir) if out_dir else paths.outputs() / "data" / name
    rows = []
    for split in ("train", "val", "test") if meta.profile == "mini" else ("train", "test"):
        ds = get(name, cfg["data_root"], split, cfg=cfg)
        table = write_manifest(ds, out_dir / f"manifest-{split}.csv")
        beton = None
        if betons:
            beton = beton_path(name, split, cfg)
            if not beton.exists():
                write_beton(ds, beton, max_resolution=None if meta.profile == "mini" else 2 * cfg["image_size"])
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
