"""One downstream run of the study, as notebooks 02 and 03 call it:

    res = finetune.linear(cfg, "acdc", 0.9, "shapes10", seed=21)   # Sec. 3.3
    res = finetune.full(cfg, "gmp", 0.9, "shapes10", seed=21)      # Sec. 3.4

The upstream model comes from `upstream.load` (mini: the reference set, never trained here; paper:
the published checkpoint), the data from `data.get`, every hyperparameter from the profile. Returns the metrics
of the run (best and final accuracy in the dataset's Table-2 metric, the per-epoch curve, ...).
"""

from __future__ import annotations

import functools
import time

from . import checkpoints, data, devices, features, files, metrics, models, prune, train, upstream
from .config import Config
from .data.manifest import split_key
from .data.prepare import beton_for
from .errors import UserError, check_choice

FINETUNES = ("linear", "full")


def _split(cfg: Config, dataset: str, split: str):
    return data.get(dataset, cfg["data_root"], split, cfg=cfg)


def _splits(cfg: Config) -> tuple[str, ...]:
    """Mini: train, val, test (the epoch is chosen on val); paper: the paper's train and test."""
    return ("train", "val", "test") if cfg["profile"] == "mini" else ("train", "test")


def linear_inputs(cfg: Config, method: str, sparsity: float, dataset: str, upstream_seed: int = 0, device=None):
    """What linear finetuning trains on: (backbone, upstream info, evaluation transform, {split:
    (features, labels)}, seconds) -- the frozen backbone (loaded, its sparsity checked against its label) in eval
    mode over every split, features cached; 02_linear_ft and 08's robustness runs share it."""
    model, up = upstream.load(method, sparsity, cfg, upstream_seed, device)
    checkpoints.check_sparsity(model, cfg, method, sparsity, upstream_seed)
    tf = data.transforms.evaluation(
        cfg["image_size"],
        *upstream.norm_stats(cfg),
        bicubic=cfg["profile"] == "paper" and method.startswith("rigl"),
        order=cfg["eval_transform"],
    )
    t0 = time.time()
    feats = {
        s: features.extract_features(
            model,
            _split(cfg, dataset, s),
            tf,
            cfg["feature_cache"],
            batch_size=cfg["eval_batch_size"],
            precision=cfg["precision"],
            num_workers=cfg["num_workers"],
            device=device,
            desc=f"features {s}",
        )
        for s in _splits(cfg)
    }
    return model, up, tf, feats, time.time() - t0


def linear(
    cfg: Config, method: str, sparsity: float, dataset: str, seed: int = 0, upstream_seed: int = 0, device=None
) -> dict:
    """Linear finetuning: features of the frozen backbone (eval mode, resize + centre crop, upstream
    mean/std; bicubic for RigL on the paper profile), cached; a dense linear head trained by SGD."""
    device = device or devices.device_of(cfg)
    meta = data.info(dataset)
    _, up, _, feats, feature_seconds = linear_inputs(cfg, method, sparsity, dataset, upstream_seed, device)
    (xtr, ytr), (xte, yte) = feats["train"], feats["test"]
    res = train.linear_finetune(
        xtr, ytr, xte, yte, meta.num_classes, cfg["linear"], meta.metric, seed, device, val=feats.get("val")
    )
    res.pop("head")
    return {
        "metric": meta.metric,
        **res,
        "report": cfg["report"],
        "feature_seconds": feature_seconds,
        "feature_dim": int(xtr.shape[1]),
        "upstream_top1": up.get("top1"),
        "train_size": len(ytr),
        "test_size": len(yte),
        "val_size": len(feats["val"][1]) if "val" in feats else 0,
    }


def full(
    cfg: Config, method: str, sparsity: float, dataset: str, seed: int = 0, upstream_seed: int = 0, device=None
) -> dict:
    """Full finetuning: a new dense head, every unpruned weight and BN trains, the zero set fixed;
    RandomResizedCrop + flip with the dataset's own mean/std (`full_norm`); lr per dataset from the
    profile. The official path (IST-DASLab/sparse-imagenet-transfer policies/manager.py:109-113,
    214-235, policies/trainers.py:105-137) checked fact by fact in tests/test_conformance.py."""
    device = device or devices.device_of(cfg)
    meta = data.info(dataset)
    model, up = upstream.load(method, sparsity, cfg, upstream_seed, device)
    checkpoints.check_sparsity(model, cfg, method, sparsity, upstream_seed)
    devices.seed_everything(seed)  # the new head's initialisation is part of the run (torch's start seed is random)
    head = models.replace_head(model, meta.num_classes)
    tr, te = _split(cfg, dataset, "train"), _split(cfg, dataset, "test")
    hp = dict(cfg["full"])
    mean, std = full_norm(hp, dataset, tr)
    hp["lr"] = hp["lr_overrides"].get(dataset, hp["lr"])
    common = dict(
        size=cfg["image_size"],
        mean=mean,
        std=std,
        batch_size=hp["batch_size"],
        backend=cfg["backend"],
        num_workers=cfg["num_workers"],
        bicubic=cfg["profile"] == "paper" and method.startswith("rigl"),
        device=device,  # ffcv: batches decoded on the host, normalised on the GPU
        order=cfg["eval_transform"],
    )
    train_loader = data.loader(
        tr,
        "train",
        shuffle=True,
        seed=seed,
        scale=hp["random_resized_crop_scale"],
        beton=beton_for(tr, dataset, "train", cfg),
        **common,
    )
    test_loader = data.loader(te, "eval", beton=beton_for(te, dataset, "test", cfg), **common)
    val_loader = None
    if "val" in _splits(cfg):
        va = _split(cfg, dataset, "val")
        val_loader = data.loader(va, "eval", beton=beton_for(va, dataset, "val", cfg), **common)
    res = train.full_finetune(
        model,
        train_loader,
        test_loader,
        hp,
        meta.metric,
        seed,
        device,
        val_loader=val_loader,
        precision=cfg["precision"],
        compile=cfg["compile"],
    )
    res["achieved_sparsity"] = res.pop("sparsity")
    return {
        "metric": meta.metric,
        **res,
        "report": cfg["report"],
        "lr": hp["lr"],
        "upstream_top1": up.get("top1"),
        "sparsity_before_head": head["sparsity_before"],
        "train_size": len(tr),
        "test_size": len(te),
    }


def full_norm(hp: dict, dataset: str, train_split) -> tuple[tuple, tuple]:
    """Full finetuning's mean/std (train and test splits): the profile's fixed `dataset_stats` when
    it has them (paper: the official scripts' constants), else measured on the train split (mini)."""
    stats = hp.get("dataset_stats")
    if stats is None:
        return data.transforms.channel_stats(train_split)
    if dataset not in stats:
        raise UserError(
            f"full.dataset_stats has no mean/std for {dataset!r} (it has {', '.join(sorted(stats))}); "
            f"add `{dataset}: [[mean R, G, B], [std R, G, B]]` to full.dataset_stats in params/<profile>.yaml"
        )
    mean, std = stats[dataset]
    return tuple(mean), tuple(std)


def run_config(
    cfg,
    finetune: str,
    method: str,
    sparsity: float,
    dataset: str,
    seed: int,
    upstream_seed: int = 0,
    with_inputs: bool = True,
) -> dict:
    """What identifies a downstream run (its hash is the run id): the key fields, every
    hyperparameter it depends on and (paper, `with_inputs`) digests of the files it reads."""
    check_choice("finetune", finetune, FINETUNES)
    check_choice("method", method, prune.METHODS)
    data.info(dataset)
    out = {
        "profile": cfg["profile"],
        "arch": cfg["arch"],
        "finetune": finetune,
        "method": method,
        "sparsity": float(sparsity),
        "dataset": dataset,
        "seed": int(seed),
        "upstream_seed": int(upstream_seed),
        "hp": dict(cfg[finetune]),
        "image_size": cfg["image_size"],
    }
    if cfg["precision"] != "fp32":  # numerics differ: another run (fp32 runs keep their ids)
        out["precision"] = cfg["precision"]
    if cfg["eval_transform"] != "crop_resize":  # another preprocessing: another run (mini ids unchanged)
        out["eval_transform"] = cfg["eval_transform"]
    if cfg["compile"] and finetune == "full":  # fused kernels round differently: another run too
        out["compile"] = True
    if cfg["profile"] == "mini":  # generated data and models: their recipes say what they are
        out["mini_data"] = cfg["mini_data"]
        out["upstream_recipe"] = checkpoints.recipe_key(cfg, method)
    elif with_inputs:  # files on disk: a digest of each, so a run on other data or checkpoint is another run
        out["inputs"] = inputs(cfg, method, sparsity, dataset)
    return out


def inputs(cfg: Config, method: str, sparsity: float, dataset: str) -> dict:
    """The sha256 of the upstream checkpoint and the content key of every split a paper run reads."""
    path = checkpoints.checkpoint_path(method, sparsity, cfg)
    st = path.stat()
    return {
        "checkpoint_sha256": _sha256(str(path), st.st_size, st.st_mtime_ns),
        "splits": {s: _split_key(dataset, str(cfg["data_root"]), s) for s in _splits(cfg)},
    }


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # a sweep asks once per run: hash each file once
    return files.sha256(path)


@functools.lru_cache(maxsize=None)
def _split_key(dataset: str, data_root: str, split: str) -> str:
    return split_key(data.get(dataset, data_root, split))


def scratch_run_config(cfg: Config, sparsity: float, dataset: str, seed: int) -> dict:
    """What identifies a from-scratch + GMP baseline run (06_extensions' record)."""
    return {
        **run_config(cfg, "full", "gmp", sparsity, dataset, seed),
        "baseline": "scratch_gmp",
        "hp": dict(cfg["scratch"]),
    }


def scratch_gmp(cfg: Config, sparsity: float, dataset: str, seed: int = 0, device=None) -> dict:
    """The baseline the paper argues against (Sec. 3.1, App. A): no upstream model -- train the
    architecture from random initialisation on the downstream task, pruning it with GMP to
    `sparsity` along the way (hyperparameters: profile section `scratch`)."""
    device = device or devices.device_of(cfg)
    meta = data.info(dataset)
    hp = cfg["scratch"]
    devices.seed_everything(seed)
    model = models.build(cfg["arch"], meta.num_classes)
    trs, tes = _split(cfg, dataset, "train"), _split(cfg, dataset, "test")
    mean, std = data.transforms.channel_stats(trs)
    train_loader = data.loader(
        trs,
        "train",
        cfg["image_size"],
        mean,
        std,
        hp["batch_size"],
        shuffle=True,
        seed=seed,
        scale=cfg["full"]["random_resized_crop_scale"],
    )
    test_loader = data.loader(
        tes, "eval", cfg["image_size"], mean, std, cfg["eval_batch_size"], order=cfg["eval_transform"]
    )
    method = prune.make("gmp", sparsity, 1, **hp["gmp"]) if sparsity else prune.make("dense", 0, 1)
    opt = {
        "lr": hp["lr"],
        "momentum": cfg["full"]["momentum"],
        "nesterov": False,
        "weight_decay": cfg["full"]["weight_decay"],
    }
    info = train.fit(model, method, train_loader, hp["epochs"], opt, device, desc=f"scratch+gmp {sparsity:g} {dataset}")
    y, p = train.predict(model, test_loader, device)
    acc = metrics.score(y, p, meta.metric)
    return {
        "metric": meta.metric,
        "best": acc,
        "final": acc,
        "reported": acc,
        "curve": info["curve"],
        "achieved_sparsity": info["sparsity"],
        "train_seconds": info["seconds"],
    }
