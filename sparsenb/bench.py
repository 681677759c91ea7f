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

from . import paths

BENCH_DIR = paths.outputs() / "bench"


def _record(name: str, row: dict) -> Path:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    row = {
        "bench": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        **row,
    }
    path = BENCH_DIR / f"{name}.jsonl"
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    return path


def _throughput(batches, epochs: int) -> float:
    n, t = 0, None
    for e in range(epochs + 1):  # epoch 0 warms up (JIT compilation, page cache)
        if e == 1:
            n, t = 0, time.perf_counter()
        for x, _ in batches:
            n += len(x)
    return n / (time.perf_counter() - t)


def loader_bench(quick: bool = False, size: int = 128, stored: int = 160, workers: int = 2) -> dict:
    """images/s of the ffcv and torch backends on the same generated JPEG images, both doing the
    training pipeline (decode, RandomResizedCrop `size`, flip, normalise)."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    from .data import loader, write_beton
    from .data.mini import generate

    n_per_class = 20 if quick else 100
    images, labels, _ = generate(
        "shapes10", "train", {"train_per_class": n_per_class, "test_per_class": 1}, seed=0, size=stored
    )
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
    row = {
        "images": len(labels),
        "stored_px": stored,
        "crop_px": size,
        "workers": workers,
        "torch_img_s": round(torch_ips, 1),
        "ffcv_img_s": round(ffcv_ips, 1),
        "ffcv_vs_torch": round(ffcv_ips / torch_ips, 2),
        "quick": quick,
    }
    path = _record("loader", row)
    print(f"{'backend':<8}{'images/s':>10}\n{'torch':<8}{torch_ips:>10.0f}\n{'ffcv':<8}{ffcv_ips:>10.0f}")
    print(f"appended to {path}")
    print(json.dumps({"ffcv_vs_torch": row["ffcv_vs_torch"]}))
    return row


# --- inference engines (Sec. 3.6) ----------------------------------------------------------------


def _engine_worker(arch, image_size, batch_size, kind, sparsity, scope, iters, cores, queue):
    """Runs in a fresh process (so peak RSS is this backend's alone): build, prune, compile, time."""
    import resource

    import torch

    from . import engine, models, prune

    torch.set_num_threads(cores)
    torch.manual_seed(0)
    model = models.build(arch, 1000).eval()
    if sparsity:
        prune.magnitude(model, sparsity, scope=scope, include_head=False)
    t = time.perf_counter()
    eng = engine.Engine(model, image_size, batch_size, kind, num_cores=cores)
    compile_s = time.perf_counter() - t
    x = np.random.default_rng(0).standard_normal((batch_size, 3, image_size, image_size)).astype(np.float32)
    eng.run_batch(x)  # warm-up
    t = time.perf_counter()
    for _ in range(iters):
        eng.run_batch(x)
    dt = time.perf_counter() - t
    queue.put(
        {
            "img_s": iters * batch_size / dt,
            "compile_s": compile_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def _measure(**kw) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_engine_worker, kwargs={**kw, "queue": q})
    p.start()
    out = q.get()
    p.join()
    return out


def engine_bench(quick: bool = False, arch: str = "resnet50", image_size: int = 224, batch_size: int = 64) -> dict:
    """images/s of the ResNet50 backbone at 224 px, batch 64: PyTorch eager (channels_last, all cores,
    the allocator settings of the environment), ONNX Runtime dense, DeepSparse dense and DeepSparse
    at 80/90/95% sparsity (uniform per layer and global magnitude; the stem stays dense). Ratios are
    against the fastest dense baseline. Also the mini model at its own resolution."""
    from .engine import cpu_info

    cores = cpu_info()["cores"]
    iters = 2 if quick else 8
    allocator = {
        k: os.environ.get(k)
        for k in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
        if os.environ.get(k)
    }
    sparsities = [0.9] if quick else [0.8, 0.9, 0.95]
    runs = [("torch", 0.0, "-"), ("onnxruntime", 0.0, "-"), ("deepsparse", 0.0, "-")]
    runs += [("deepsparse", s, scope) for s in sparsities for scope in ("uniform", "global")]
    rows = []
    for a, size, bs in [(arch, image_size, batch_size), ("mini_resnet_s", 32, 64)]:
        for kind, s, scope in runs if a == arch else [r for r in runs if r[1] in (0.0, 0.9) and r[2] != "global"]:
            r = _measure(
                arch=a,
                image_size=size,
                batch_size=bs,
                kind=kind,
                sparsity=s,
                scope=scope,
                iters=iters * (20 if a.startswith("mini") else 1),
                cores=cores,
            )
            rows.append(
                {
                    "arch": a,
                    "image_size": size,
                    "batch_size": bs,
                    "engine": kind,
                    "sparsity": s,
                    "scope": scope,
                    **{k: round(v, 2) for k, v in r.items()},
                }
            )
            print(
                f"{a:<14}{kind:<12} sparsity {s:<5} {scope:<8} {r['img_s']:8.1f} img/s   peak RSS "
                f"{r['peak_rss_mb']:6.0f} MB   compile {r['compile_s']:5.1f} s",
                flush=True,
            )
    ratios = {}
    for a in (arch, "mini_resnet_s"):
        sub = [r for r in rows if r["arch"] == a]
        dense = {r["engine"]: r["img_s"] for r in sub if r["sparsity"] == 0.0}
        best = max(dense.values())
        tag = "" if a == arch else "mini_"
        for r in sub:
            if r["sparsity"]:
                key = f"{tag}deepsparse_s{int(r['sparsity'] * 100)}_{r['scope']}"
                ratios[f"{key}_vs_best_dense"] = round(r["img_s"] / best, 2)
        s90 = next(r["img_s"] for r in sub if r["sparsity"] == 0.9 and r["scope"] == "uniform")
        ratios[f"{tag}deepsparse_s90_vs_ort_dense"] = round(s90 / dense["onnxruntime"], 2)
        ratios[f"{tag}deepsparse_s90_vs_torch_dense"] = round(s90 / dense["torch"], 2)
        ratios[f"{tag}best_dense"] = max(dense, key=dense.get)
    path = _record(
        "engine",
        {
            "quick": quick,
            "cores": cores,
            "isa": cpu_info()["isa"],
            "torch_allocator": allocator,
            "torch_settings": "channels_last, torch.set_num_threads(cores), no_grad",
            "rows": rows,
            "ratios": ratios,
        },
    )
    print(f"appended to {path}")
    print(json.dumps(ratios))
    return ratios


def train_bench(
    quick: bool = False,
    arch: str = "resnet50",
    image_size: int = 224,
    batch_size: int = 64,
    sparsity: float = 0.9,
    steps: int | None = None,
) -> dict:
    """Full finetuning throughput of the paper profile (Sec. 3.4): a 90%-sparse ResNet50 with its
    zero set fixed (masks.FixedMask), SGD + momentum, batch 64 at 224 px, on whatever device there
    is. Variants: fp32 (NCHW), fp32 channels_last, bf16 autocast channels_last, and the last with the
    input path included (uint8 batch in pinned memory -> device -> normalised there). Images/s of
    each and the ratio to fp32 are printed; one JSON line goes to outputs/bench/train.jsonl."""
    import torch
    import torch.nn as nn

    from . import masks, models, prune
    from .devices import default_device

    device = default_device()
    if quick:
        image_size, batch_size = 64, 16
    steps, warm = (3, 1) if quick else (steps, 2) if steps else (30, 10)  # `steps`: a CPU can afford few
    g = torch.Generator().manual_seed(0)
    x_u8 = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 100, (batch_size,), generator=g)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
    if device.type == "cuda":
        x_u8 = x_u8.pin_memory()
    variants = [
        ("fp32", False, None, False),
        ("fp32_channels_last", True, None, False),
        ("bf16_channels_last", True, torch.bfloat16, False),
        ("bf16_channels_last+input_path", True, torch.bfloat16, True),
    ]
    rows = {}
    for name, cl, dtype, input_path in variants:
        torch.manual_seed(0)
        model = models.build(arch, 100)
        prune.magnitude(model, sparsity)
        model = model.to(device)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        fixed = masks.FixedMask(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        loss_fn = nn.CrossEntropyLoss()
        x_dev = (x_u8.to(device).float() - mean) / std
        y_dev = y.to(device)

        def step():
            x = ((x_u8.to(device, non_blocking=True).float() - mean) / std) if input_path else x_dev
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(model(x), y_dev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            fixed.step(opt)

        for _ in range(warm):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rows[name] = steps * batch_size / (time.perf_counter() - t)
        assert abs(prune.target_sparsity(model) - sparsity) < 1e-3  # the zero set stayed fixed
    base = rows["fp32"]
    dev = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print(
        f"full finetuning, {arch} {sparsity:.0%} sparse, batch {batch_size}, {image_size} px, {dev}, "
        f"torch {torch.__version__}"
    )
    for name, v in rows.items():
        print(f"  {name:<32} {v:9.1f} img/s   x{v / base:.2f} vs fp32")
    out = {
        "arch": arch,
        "image_size": image_size,
        "batch_size": batch_size,
        "sparsity": sparsity,
        "device": dev,
        "torch": torch.__version__,
        "quick": quick,
        "steps": steps,
        "img_per_s": rows,
        "ratio_vs_fp32": {k: v / base for k, v in rows.items()},
    }
    _record("train", out)
    print(json.dumps(out["ratio_vs_fp32"]))
    return out


BENCHES = {"loader": loader_bench, "engine": engine_bench, "train": train_bench}


def main(what: str, quick: bool = False, steps: int | None = None) -> int:
    BENCHES[what](quick=quick, **({"steps": steps} if steps else {}))
    return 0
