"""Features of a frozen backbone, computed once and cached: linear finetuning (Sec. 3.3) trains
its head on them. The cache key is a digest of the weights, the dataset and the transform, so a
changed model or split never reuses stale features.

    X, y = features.extract_features(model, dataset, transform, cache_dir=cfg.feature_cache)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from . import files
from .data.loaders import loader as data_loader
from .data.manifest import split_key
from .data.transforms import Evaluation
from .devices import Precision, default_device
from .models import backbone
from .progress import bar


def model_digest(model: nn.Module) -> str:
    """sha1 over every tensor of the state dict (names, shapes, values)."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset,
    transform,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    device=None,
    desc: str = "features",
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate-layer features of every item of `dataset` under `transform` (no augmentation),
    with the backbone in eval mode (upstream BN statistics). Cached under `cache_dir` by a key of
    model weights + dataset + transform, so a second call with the same three is a file read."""
    device = device or default_device()
    path = None if cache_dir is None else _cache_path(model, dataset, transform, precision, cache_dir)
    if path is not None and path.exists():
        try:
            d = torch.load(path, weights_only=True)
            return d["features"], d["labels"]
        except Exception:
            path.unlink()  # damaged cache entry: recompute
    net = backbone(model).to(device).eval()
    on_gpu = torch.device(device).type == "cuda"  # channels_last and pinned batches (CPU: NCHW, as recorded)
    if on_gpu:
        net = net.to(memory_format=torch.channels_last)
    prec = Precision(precision, device)
    old = getattr(dataset, "transform", None)
    try:
        if isinstance(transform, Evaluation):  # in-memory datasets: whole batches as tensors
            loader = data_loader(
                dataset,
                "eval",
                transform.size,
                transform.mean,
                transform.std,
                batch_size,
                num_workers=num_workers,
                bicubic=transform.bicubic,
                order=transform.order,
            )
        else:
            dataset.transform = transform
            loader = DataLoader(
                dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=on_gpu
            )
        feats, labels = [], []
        for x, y in bar(loader, desc=desc):
            with prec.autocast():
                x = x.to(device, non_blocking=True)
                feats.append(net(x.contiguous(memory_format=torch.channels_last) if on_gpu else x).float().cpu())
            labels.append(torch.as_tensor(y))
        feat, lab = torch.cat(feats), torch.cat(labels).long()
    finally:
        dataset.transform = old
    if path is not None:
        files.torch_save({"features": feat, "labels": lab}, path)
    return feat, lab


def _cache_path(model: nn.Module, dataset, transform, precision: str, cache_dir: str | Path) -> Path:
    """Where the features of (model weights, dataset, transform, precision) are cached."""
    how = f"{transform!r}" + ("" if precision == "fp32" else f"|{precision}")
    key = hashlib.sha1(f"{model_digest(model)}|{split_key(dataset)}|{how}".encode()).hexdigest()
    return Path(cache_dir) / f"{key[:20]}.pt"
