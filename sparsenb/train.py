"""Downstream training: linear finetuning on cached features, full finetuning with fixed masks.

    X, y = train.extract_features(model, dataset, transform, cache_dir=...)
    res = train.linear_finetune(Xtr, ytr, Xte, yte, num_classes, cfg.linear, metric="top1", seed=21)
    res = train.full_finetune(model, train_loader, test_loader, cfg.full, metric="top1", seed=21)
    res["best"], res["final"], res["curve"]

Hyperparameters come from params/<profile>.yaml (sections `linear` and `full`).
"""
from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from . import masks as masklib
from . import metrics
from .data.loaders import loader as data_loader
from .data.transforms import Evaluation
from .models import backbone
from .progress import bar, log


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sgd(params, hp) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp["milestones"]), gamma=hp["gamma"])
    return opt, sched


# --- evaluation ------------------------------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, loader, device=None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) over a loader, model in eval mode."""
    device = device or default_device()
    model.eval()
    ys, ps = [], []
    for x, y in loader:
        out = model(x.to(device, non_blocking=True))
        ps.append(out.argmax(1).cpu())
        ys.append(y)
    return torch.cat(ys).numpy(), torch.cat(ps).numpy()


def evaluate(model: nn.Module, loader, metric: str = "top1", device=None) -> float:
    y, p = predict(model, loader, device)
    return metrics.score(y, p, metric)


# --- features --------------------------------------------------------------------------------

def model_digest(model: nn.Module) -> str:
    """sha1 over every tensor of the state dict (names, shapes, values)."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _dataset_digest(dataset) -> str:
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


@torch.no_grad()
def extract_features(model: nn.Module, dataset, transform, cache_dir: str | Path | None = None,
                     batch_size: int = 256, num_workers: int = 0, device=None,
                     desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate-layer features of every item of `dataset` under `transform` (no augmentation),
    with the backbone in eval mode (upstream BN statistics). Cached under `cache_dir` by a key of
    model weights + dataset + transform, so a second call with the same three is a file read."""
    device = device or default_device()
    path = None
    if cache_dir is not None:
        key = hashlib.sha1(f"{model_digest(model)}|{_dataset_digest(dataset)}|{transform!r}".encode()).hexdigest()
        path = Path(cache_dir) / f"{key[:20]}.pt"
        if path.exists():
            try:
                d = torch.load(path, weights_only=True)
                return d["features"], d["labels"]
            except Exception:
                path.unlink()  # damaged cache entry: recompute
    net = backbone(model).to(device).eval()
    old = getattr(dataset, "transform", None)
    try:
        if isinstance(transform, Evaluation):   # in-memory datasets: whole batches as tensors
            loader = data_loader(dataset, "eval", transform.size, transform.mean, transform.std, batch_size,
                                 num_workers=num_workers, bicubic=transform.bicubic)
        else:
            dataset.transform = transform
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        feats, labels = [], []
        for x, y in bar(loader, desc=desc):
            feats.append(net(x.to(device)).float().cpu())
            labels.append(torch.as_tensor(y))
        feat, lab = torch.cat(feats), torch.cat(labels).long()
    finally:
        dataset.transform = old
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save({"features": feat, "labels": lab}, tmp)
        os.replace(tmp, path)
    return feat, lab


# --- linear finetuning -------------------------------------------------------------------------

def linear_finetune(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                    num_classes: int, hp: dict, metric: str = "top1", seed: int = 0, device=None,
                    val: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Train a dense nn.Linear head (PyTorch default init) on fixed features with SGD + momentum,
    weight decay and a step schedule (hp: lr, momentum, weight_decay, batch_size, epochs,
    milestones, gamma). Evaluated on the validation (if given) and test features after every epoch.

    Returns `summary` of the curve ('reported': test at the epoch chosen on validation, ...) + 'head'."""
    device = device or default_device()
    g = seed_everything(seed)
    head = nn.Linear(train_x.shape[1], num_classes).to(device)
    opt, sched = _sgd(head.parameters(), hp)
    loss_fn = nn.CrossEntropyLoss()
    train_x, train_y = train_x.to(device), train_y.to(device)
    evals = {"test": (test_x.to(device), test_y.numpy())}
    if val is not None:
        evals["val"] = (val[0].to(device), val[1].numpy())
    n, bs = len(train_y), int(hp["batch_size"])
    curve = []
    t0 = time.time()
    for epoch in range(1, int(hp["epochs"]) + 1):
        head.train()
        perm = torch.randperm(n, generator=g).to(device)
        total = torch.zeros((), device=device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = loss_fn(head(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        sched.step()
        head.eval()
        row = {"epoch": epoch, "loss": float(total) / n}
        with torch.no_grad():
            for name, (x, y) in evals.items():
                row["accuracy" if name == "test" else "val_accuracy"] = metrics.score(
                    y, head(x).argmax(1).cpu().numpy(), metric)
        curve.append(row)
        if epoch == 1 or epoch % max(1, int(hp["epochs"]) // 10) == 0 or epoch == int(hp["epochs"]):
            log(f"linear epoch {epoch:>3}/{hp['epochs']}  loss {row['loss']:.4f}  {metric} {row['accuracy']:.4f}"
                + (f"  val {row['val_accuracy']:.4f}" if "val_accuracy" in row else "") + f"  ({time.time() - t0:.1f} s)")
    return summary(curve, time.time() - t0, head=head.state_dict())


def summary(curve: list[dict], seconds: float, **extra) -> dict:
    """Both reporting conventions of a run from its per-epoch curve:
    - 'reported': test accuracy at the epoch with the best validation accuracy (first of ties) --
      the mini profile's convention: nothing is chosen on the test set;
    - 'best' (+ 'best_epoch'): the highest test accuracy over epochs, the paper code's convention;
    - 'final': test accuracy after the last epoch.
    Without a validation curve, 'reported' is 'final' (no choice made at all)."""
    best = max(curve, key=lambda r: r["accuracy"])
    out = {"best": best["accuracy"], "best_epoch": best["epoch"], "final": curve[-1]["accuracy"],
           "curve": curve, "train_seconds": seconds}
    if all("val_accuracy" in r for r in curve):
        chosen = max(curve, key=lambda r: r["val_accuracy"])
        out.update(reported=chosen["accuracy"], reported_epoch=chosen["epoch"], val_accuracy=chosen["val_accuracy"])
    else:
        out.update(reported=curve[-1]["accuracy"], reported_epoch=curve[-1]["epoch"])
    return {**out, **extra}


# --- full finetuning ---------------------------------------------------------------------------

def full_finetune(model: nn.Module, train_loader, test_loader, hp: dict, metric: str = "top1", seed: int = 0,
                  device=None, fixed_masks: dict | None = None, channels_last: bool = True, val_loader=None) -> dict:
    """Finetune every unpruned weight, BN included, with the zero set of the backbone fixed: the
    mask (from `weight != 0` unless given) is enforced by `masks.FixedMask` on every step, so pruned
    weights get no gradient, momentum or weight-decay drift. The head should already be the new
    dense one (`models.replace_head`) and is not masked.

    Returns `summary` of the curve (validation evaluated too when `val_loader` is given) and
    'sparsity' (of the prunable backbone layers: every conv but the stem)."""
    device = device or default_device()
    seed_everything(seed)
    fm_masks = fixed_masks if fixed_masks is not None else masklib.from_weights(model, include_head=False)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fixed = masklib.FixedMask(model, fm_masks)
    opt, sched = _sgd(model.parameters(), hp)
    loss_fn = nn.CrossEntropyLoss()
    curve = []
    t0 = time.time()
    for epoch in range(1, int(hp["epochs"]) + 1):
        model.train()
        total, n = 0.0, 0
        for x, y in bar(train_loader, desc=f"epoch {epoch}"):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            fixed.step(opt)
            total += loss.item() * len(y)
            n += len(y)
        sched.step()
        row = {"epoch": epoch, "loss": total / max(n, 1), "accuracy": evaluate(model, test_loader, metric, device)}
        if val_loader is not None:
            row["val_accuracy"] = evaluate(model, val_loader, metric, device)
        curve.append(row)
        log(f"full epoch {epoch:>3}/{hp['epochs']}  loss {row['loss']:.4f}  {metric} {row['accuracy']:.4f}"
            + (f"  val {row['val_accuracy']:.4f}" if "val_accuracy" in row else "") + f"  ({time.time() - t0:.1f} s)")
    from .prune import target_sparsity

    return summary(curve, time.time() - t0, sparsity=target_sparsity(model, include_head=False))


# --- online linear finetuning (Sec. 3.6) ----------------------------------------------------------

def online_linear_finetune(embed, train_loader, test_loader, feature_dim: int, num_classes: int, hp: dict,
                           metric: str = "top1", seed: int = 0) -> dict:
    """Linear finetuning where every training batch (augmented) goes through the frozen backbone
    `embed` (a callable images -> features: an `engine.Engine` or a torch module) on every step,
    and the dense head trains in PyTorch. Returns the usual summary plus 'epoch_seconds' (the
    training part of each epoch: feature extraction + head update)."""
    seed_everything(seed)
    head = nn.Linear(feature_dim, num_classes)
    opt, sched = _sgd(head.parameters(), hp)
    loss_fn = nn.CrossEntropyLoss()
    curve, epoch_seconds = [], []
    t_all = time.time()
    for epoch in range(1, int(hp["epochs"]) + 1):
        t0 = time.time()
        total, n = 0.0, 0
        head.train()
        for x, y in bar(train_loader, desc=f"online epoch {epoch}"):
            with torch.no_grad():
                f = embed(x)
            loss = loss_fn(head(f), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            n += len(y)
        sched.step()
        epoch_seconds.append(time.time() - t0)
        head.eval()
        ys, ps = [], []
        with torch.no_grad():
            for x, y in test_loader:
                ps.append(head(embed(x)).argmax(1))
                ys.append(y)
        acc = metrics.score(torch.cat(ys).numpy(), torch.cat(ps).numpy(), metric)
        curve.append({"epoch": epoch, "loss": total / max(n, 1), "accuracy": acc, "seconds": epoch_seconds[-1]})
        log(f"online epoch {epoch:>3}/{hp['epochs']}  loss {total / max(n, 1):.4f}  {metric} {acc:.4f}  "
            f"epoch {epoch_seconds[-1]:.2f} s")
    return summary(curve, time.time() - t_all, epoch_seconds=float(np.mean(epoch_seconds)))
