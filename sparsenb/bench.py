"""Benchmarks (not tests): they print a table and ratios and append one JSON line per run under
outputs/bench/. `python -m sparsenb bench loader [--quick]`."""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from .config import ROOT

BENCH_DIR = ROOT / "outputs" / "bench"


def _record(name: str, row: dict) -> Path:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    row = {"bench": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node(),
           "cpus": os.cpu_count(), **row}
    path = BENCH_DIR / f"{name}.jsonl"
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    return path


def _throughput(batches, epochs: int) -> float:
    n, t = 0, None
    for e in range(epochs + 1):            # epoch 0 warms up (JIT compilation, page cache)
        if e == 1:
            n, t = 0, time.perf_counter()
        for x, _ in batches:
            n += len(x)
    return n / (time.perf_counter() - t)


def loader_bench(quick: bool = False, size: int = 128, stored: int = 160, workers: int = 2) -> dict:
    """images/s of the ffcv and torch backends on the same generated JPEG images, both doing the
    training pipeline (decode, RandomResizedCrop `size`, flip, normalise)."""
    from torchvision.datasets import ImageFolder
    from PIL import Image

    from .data import loader, write_beton
    from .data.mini import generate

    n_per_class = 20 if quick else 100
    images, labels, _ = generate("shapes10", "train", {"train_per_class": n_per_class, "test_per_class": 1},
                                 seed=0, size=stored)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, (img, y) in enumerate(zip(images, labels)):
            d = tmp / "jpg" / f"c{y:02d}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:05d}.jpg", quality=90)
        folder = ImageFolder(str(tmp / "jpg"))
        beton = write_beton(folder, tmp / "d.beton", jpeg_quality=90, num_workers=workers)
        epochs = 1 if quick else 3
        common = dict(mode="train", size=size, batch_size=64, shuffle=True, num_workers=workers, drop_last=False)
        torch_ips = _throughput(loader(folder, backend="torch", **common), epochs)
        ffcv_ips = _throughput(loader(backend="ffcv", beton=beton, **common), epochs)
    row = {"images": len(labels), "stored_px": stored, "crop_px": size, "workers": workers,
           "torch_img_s": round(torch_ips, 1), "ffcv_img_s": round(ffcv_ips, 1),
           "ffcv_vs_torch": round(ffcv_ips / torch_ips, 2), "quick": quick}
    path = _record("loader", row)
    print(f"{'backend':<8}{'images/s':>10}\n{'torch':<8}{torch_ips:>10.0f}\n{'ffcv':<8}{ffcv_ips:>10.0f}")
    print(f"appended to {path}")
    print(json.dumps({"ffcv_vs_torch": row["ffcv_vs_torch"]}))
    return row


def main(what: str, quick: bool = False) -> int:
    {"loader": loader_bench}[what](quick=quick)
    return 0
