"""Benchmarks (not tests): they print a table and ratios and append one JSON line per run under
outputs/bench/. `python -m sparsenb bench loader [--quick]`."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

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


def engine_bench(quick: bool = False, cores: int = 1, rounds: int = 3) -> dict:
    """sparsenb.enginebench's peer set; its JSON line printed last and appended to engine.jsonl."""
    from . import enginebench

    out = enginebench.run(quick, cores, rounds)
    path = _record(
        "engine",
        {"quick": quick, "measure": "images per CPU-second, median of interleaved rounds", "rounds": rounds, **out},
    )
    print(f"appended to {path}")
    print(json.dumps(out))
    return out


BENCHES = {"loader": loader_bench, "engine": engine_bench, "train": train_bench}


def main(
    what: str, quick: bool = False, steps: int | None = None, compile: bool | None = None, cores: int | None = None
) -> int:
    extra = {"steps": steps, "compile": compile, "cores": cores}
    BENCHES[what](quick=quick, **{k: v for k, v in extra.items() if v is not None})
    return 0
