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


def _record(name: str, row: dict) -> Path:
    bench_dir = paths.outputs() / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    row = {
        "bench": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        **row,
    }
    path = bench_dir / f"{name}.jsonl"
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
    from .data import loader, write_beton

    n_per_class = 20 if quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = _jpeg_folder(tmp / "jpg", n_per_class, stored)
        labels = folder.targets
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
    rows = []
    for a, size, bs, kind, s, scope in _engine_runs(quick, arch, image_size, batch_size):
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
        row = {"arch": a, "image_size": size, "batch_size": bs, "engine": kind, "sparsity": s, "scope": scope}
        rows.append({**row, **{k: round(v, 2) for k, v in r.items()}})
        print(
            f"{a:<14}{kind:<12} sparsity {s:<5} {scope:<8} {r['img_s']:8.1f} img/s   peak RSS "
            f"{r['peak_rss_mb']:6.0f} MB   compile {r['compile_s']:5.1f} s",
            flush=True,
        )
    ratios = {k: v for a in (arch, "mini_resnet_s") for k, v in _engine_ratios(rows, a, a != arch).items()}
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


def _engine_runs(quick: bool, arch: str, image_size: int, batch_size: int) -> list[tuple]:
    """(arch, image size, batch size, engine, sparsity, scope) of every measurement of `engine_bench`:
    every engine dense and DeepSparse sparse on `arch`; the mini model dense and at 90% uniform."""
    sparsities = [0.9] if quick else [0.8, 0.9, 0.95]
    runs = [("torch", 0.0, "-"), ("onnxruntime", 0.0, "-"), ("deepsparse", 0.0, "-")]
    runs += [("deepsparse", s, scope) for s in sparsities for scope in ("uniform", "global")]
    mini = runs if arch == "mini_resnet_s" else [r for r in runs if r[1] in (0.0, 0.9) and r[2] != "global"]
    return [(arch, image_size, batch_size, *r) for r in runs] + [("mini_resnet_s", 32, 64, *r) for r in mini]


def _engine_ratios(rows: list[dict], arch: str, mini: bool) -> dict:
    """The ratios of `arch`'s rows: each sparse rate against the best dense engine, DeepSparse at
    90% against ONNX Runtime and PyTorch dense, and which dense engine is fastest."""
    sub = [r for r in rows if r["arch"] == arch]
    dense = {r["engine"]: r["img_s"] for r in sub if r["sparsity"] == 0.0}
    best = max(dense.values())
    tag = "mini_" if mini else ""
    ratios = {}
    for r in sub:
        if r["sparsity"]:
            key = f"{tag}deepsparse_s{int(r['sparsity'] * 100)}_{r['scope']}"
            ratios[f"{key}_vs_best_dense"] = round(r["img_s"] / best, 2)
    s90 = next(r["img_s"] for r in sub if r["sparsity"] == 0.9 and r["scope"] == "uniform")
    ratios[f"{tag}deepsparse_s90_vs_ort_dense"] = round(s90 / dense["onnxruntime"], 2)
    ratios[f"{tag}deepsparse_s90_vs_torch_dense"] = round(s90 / dense["torch"], 2)
    ratios[f"{tag}best_dense"] = max(dense, key=dense.get)
    return ratios


def _jpeg_folder(root: Path, n_per_class: int, stored: int):
    """Generated images (shapes10) saved as JPEG files in ImageFolder's layout: what a real
    downstream dataset looks like on disk."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    from .data.mini import generate

    images, labels, _ = generate(
        "shapes10", "train", {"train_per_class": n_per_class, "test_per_class": 1}, seed=0, size=stored
    )
    for i, (img, y) in enumerate(zip(images, labels)):
        d = root / f"c{y:02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.jpg", quality=90)
    return ImageFolder(str(root))


def _images_per_s(run, batch_size: int, warm: int, steps: int, device) -> float:
    """images/s of `run(n)` (n training or forward steps of `batch_size` images): `warm` steps
    first (cuDNN autotuning, torch.compile's compilation, allocator warm-up), then `steps` timed."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    run(warm)
    sync()
    t = time.perf_counter()
    run(steps)
    sync()
    return steps * batch_size / (time.perf_counter() - t)


# name: (channels_last, precision, torch.compile); "fp32" is the baseline of every ratio
TRAIN_VARIANTS = {
    "fp32": (False, "fp32", False),
    "fp32_channels_last": (True, "fp32", False),
    "bf16_channels_last": (True, "bf16", False),
    "bf16_channels_last+compile": (True, "bf16", True),
}


def _sparse_model(arch: str, sparsity: float):
    """`arch` with a 10-class head, its backbone magnitude-pruned to `sparsity` (seeded)."""
    import torch

    from . import models, prune

    torch.manual_seed(0)
    return prune.magnitude(models.build(arch, 10), sparsity)


def _trainer(arch: str, sparsity: float, variant: tuple, device):
    """The full finetuning step every run takes (`train.FullTrainer`, the paper profile's recipe)
    on a fresh sparse model, in one variant of TRAIN_VARIANTS."""
    from . import config, train

    channels_last, precision, compile = variant
    hp = dict(config.load("paper")["full"])
    return train.FullTrainer(
        _sparse_model(arch, sparsity), hp, device, channels_last=channels_last, precision=precision, compile=compile
    )


def _full_rates(arch, sparsity, variants, x, y, warm, steps, device) -> dict[str, float]:
    """images/s of full finetuning on images already on the device, per variant; the zero set checked."""
    from . import prune

    full = {}
    for name, variant in variants.items():
        ft = _trainer(arch, sparsity, variant, device)
        full[name] = _images_per_s(lambda n: ft.epoch([(x, y)] * n), len(y), warm, steps, device)
        assert abs(prune.target_sparsity(ft.model) - sparsity) < 1e-3  # the zero set stayed fixed
    return full


def _feature_rates(arch, sparsity, variants, names, x, warm, steps, device) -> dict[str, float]:
    """images/s of the backbone's forward pass (feature extraction), per variant in `names`."""
    import torch

    from .features import backbone

    feats = {}
    for name in names:
        channels_last, precision, compile = variants[name]
        model = _sparse_model(arch, sparsity).to(device)
        model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        feat = backbone(model).eval()
        net = torch.compile(feat) if compile else feat
        xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        dtype = {"bf16": torch.bfloat16}.get(precision)

        def forward(n):
            for _ in range(n):
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    net(xin)

        feats[name] = _images_per_s(forward, len(x), warm, steps, device)
    return feats


def _fed_rates(arch, sparsity, variant, image_size, batch_size, warm, steps, device) -> tuple[dict, int]:
    """images/s of the full finetuning step fed by each loader (torch, ffcv) from JPEG files; and
    the workers they used."""
    import itertools

    from .data import loader, write_beton

    rates, workers = {}, min(8, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _jpeg_folder(Path(tmp) / "jpg", max(2, batch_size * (warm + steps) // 10 + 1), image_size + 32)
        beton = write_beton(folder, Path(tmp) / "d.beton", jpeg_quality=90, num_workers=min(4, os.cpu_count() or 1))
        common = dict(mode="train", size=image_size, batch_size=batch_size, shuffle=True, drop_last=True)
        for backend in ("torch", "ffcv"):
            ft = _trainer(arch, sparsity, variant, device)
            batches = iter(loader(folder, backend=backend, beton=beton, num_workers=workers, device=device, **common))
            rates[backend] = _images_per_s(
                lambda n, b=batches: ft.epoch(itertools.islice(b, n)), batch_size, warm, steps, device
            )
    return rates, workers


def train_bench(
    quick: bool = False,
    arch: str = "resnet50",
    image_size: int | None = None,
    batch_size: int | None = None,
    sparsity: float = 0.9,
    steps: int | None = None,
    compile: bool | None = None,
) -> dict:
    """The paper profile's GPU work, images/s on whatever device there is, for fp32 eager NCHW (the
    baseline) and the tuned paths, ratios printed in one run, one JSON line to outputs/bench/train.jsonl:
    - full finetuning (Sec. 3.4) of a 90%-sparse ResNet50 with its zero set fixed: the step every run
      takes (`train.FullTrainer.epoch`, the one `train.full_finetune` runs, with the paper's recipe),
      batch 64 at 224 px, on images already on the device: fp32, channels_last, bf16 autocast +
      channels_last, and that through torch.compile (`compile`: default on a GPU; compiling ResNet50
      on a 2-core CPU takes minutes);
    - feature extraction (linear finetuning, Sec. 3.3): the backbone's forward pass, fp32 vs tuned;
    - both loaders feeding the tuned full finetuning from JPEG files: torch (decode + augment on the
      CPU, normalised there) and ffcv (.beton, normalised on the GPU) -- the end-to-end rate a run gets.
    The tuned path is the fastest variant measured here. `quick`: 64 px, batch 16 unless given."""
    import torch

    from .devices import default_device

    device = default_device()
    compile = device.type == "cuda" if compile is None else compile
    image_size, batch_size = image_size or (64 if quick else 224), batch_size or (16 if quick else 64)
    steps, warm = (steps or 3, 1) if quick else (steps, 2) if steps else (30, 10)  # `steps`: a CPU affords few
    x, y = _train_batch(batch_size, image_size, device)
    variants = {k: v for k, v in TRAIN_VARIANTS.items() if compile or not v[2]}
    full = _full_rates(arch, sparsity, variants, x, y, warm, steps, device)
    tuned = max(full, key=full.get)
    feats = _feature_rates(arch, sparsity, variants, ("fp32", tuned), x, warm, steps, device)
    loaders, workers = _fed_rates(arch, sparsity, variants[tuned], image_size, batch_size, warm, steps, device)
    dev = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    out = {
        "arch": arch,
        "image_size": image_size,
        "batch_size": batch_size,
        "sparsity": sparsity,
        "device": dev,
        "torch": torch.__version__,
        "quick": quick,
        "steps": steps,
        "tuned": tuned,
        "tf32_convs": bool(torch.backends.cudnn.allow_tf32),  # PyTorch's default: "fp32" convs on TF32 cores
        "img_per_s": full,
        "ratio_vs_fp32": {k: v / full["fp32"] for k, v in full.items()},
        "features_img_per_s": feats,
        "loader_img_per_s": loaders,
    }
    _record("train", out)
    _print_train(out, workers)
    return out


def _train_batch(batch_size: int, image_size: int, device):
    """One batch of random images (normalised) and labels, on the device."""
    import torch

    g = torch.Generator().manual_seed(0)
    x_u8 = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
    return ((x_u8.float() - 127.5) / 64).to(device), y


def _print_train(out: dict, workers: int) -> None:
    """The table of `train_bench` (each rate and its ratio to fp32), then its headline ratios."""
    full, feats, fed, tuned = out["img_per_s"], out["features_img_per_s"], out["loader_img_per_s"], out["tuned"]
    print(
        f"{out['arch']} {out['sparsity']:.0%} sparse, batch {out['batch_size']}, {out['image_size']} px, "
        f"{out['device']}, torch {out['torch']}"
    )
    _print_rates("full finetuning (images on the device)", full, full["fp32"], "vs fp32")
    _print_rates("feature extraction (forward only)", feats, feats["fp32"], "vs fp32")
    title = f"full finetuning fed by each loader from JPEG files ({tuned}, {workers} workers)"
    _print_rates(title, fed, full["fp32"], "vs fp32 on device")
    ratios = {
        "tuned_vs_fp32": full[tuned] / full["fp32"],
        "features_tuned_vs_fp32": feats[tuned] / feats["fp32"],
        "ffcv_vs_torch_fed": fed["ffcv"] / fed["torch"],
    }
    print(json.dumps(ratios))


def _print_rates(title: str, rates: dict[str, float], base: float, against: str) -> None:
    print(title)
    for name, v in rates.items():
        print(f"  {name:<32} {v:9.1f} img/s   x{v / base:.2f} {against}")


BENCHES = {"loader": loader_bench, "engine": engine_bench, "train": train_bench}


def main(what: str, quick: bool = False, steps: int | None = None, compile: bool | None = None) -> int:
    BENCHES[what](
        quick=quick, **({"steps": steps} if steps else {}), **({"compile": compile} if compile is not None else {})
    )
    return 0
