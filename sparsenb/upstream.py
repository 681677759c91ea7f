"""Upstream models. Mini profile: train the dense model on the generated upstream task and prune it
with one of our implementations of the paper's methods, cached as checkpoints in the same (IST)
format the paper profile loads. Paper profile: the published checkpoint of (method, sparsity).

    model, info = upstream.get("acdc", 0.9, cfg)      # trains (or loads from the cache) and evaluates
    upstream.checkpoint_path("acdc", 0.9, cfg)
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import time
from pathlib import Path

import torch
import torch.nn as nn

from . import data, masks, models, prune, train
from .config import check_choice
from .progress import bar, log

METHODS = ("dense", "gmp", "woodfisher", "acdc", "rigl_erk_1x", "rigl_erk_5x", "str", "lth_t", "structured")


# --- data ----------------------------------------------------------------------------------------

_NORM: dict[str, tuple] = {}


def norm_stats(cfg) -> tuple[tuple, tuple]:
    """The upstream task's mean/std: the mini profile's "ImageNet mean/std" (paper: ImageNet's)."""
    if cfg["profile"] != "mini":
        return data.transforms.IMAGENET_MEAN, data.transforms.IMAGENET_STD
    key = json.dumps([cfg["data_root"], cfg["mini_data"], cfg["image_size"]], sort_keys=True)
    if key not in _NORM:
        _NORM[key] = data.transforms.channel_stats(data.get("upstream", cfg["data_root"], "train", cfg=cfg))
    return _NORM[key]


def loaders(cfg, batch_size: int, seed: int = 0):
    mean, std = norm_stats(cfg)
    tr = data.get("upstream", cfg["data_root"], "train", cfg=cfg)
    te = data.get("upstream", cfg["data_root"], "test", cfg=cfg)
    size, scale = cfg["image_size"], cfg["upstream"]["crop_scale"]
    return (data.loader(tr, "train", size, mean, std, batch_size, shuffle=True, seed=seed, drop_last=True,
                        scale=scale),
            data.loader(te, "eval", size, mean, std, 512))


# --- training loop -----------------------------------------------------------------------------

def fit(model: nn.Module, method: prune.methods.Method, train_loader, epochs: float, lr: float, momentum: float,
        weight_decay: float, device=None, test_loader=None, desc: str = "", grad_clip: float | None = None) -> dict:
    """SGD (momentum, weight decay, cosine learning rate to zero) for `epochs` (may be fractional)
    epochs, calling the method's hooks around every step; ends with method.finish().

    `grad_clip` bounds the gradient norm (after the method masked it). It matters when weights come
    back to life (AC/DC's decompressed phases, RigL's growth): behind BatchNorm the gradient of a
    pruned weight in a very sparse layer is huge (it scales with 1 / the layer's output std), and one
    unclipped step blows the weights up by 100x, which freezes training at chance level."""
    device = device or train.default_device()
    model.to(device).to(memory_format=torch.channels_last)
    steps_per_epoch = len(train_loader)
    total = max(1, int(round(epochs * steps_per_epoch)))
    method.total_steps = total
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    method.start(model, opt)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + torch.cos(torch.tensor(s / total * 3.14159265)).item()))
    loss_fn = nn.CrossEntropyLoss()
    step, t0, curve = 0, time.time(), []
    model.train()
    while step < total:
        running, n = 0.0, 0
        for x, y in bar(train_loader, desc=desc):
            if step >= total:
                break
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(x), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            method.after_backward(step)
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            method.after_step(step)
            sched.step()
            step += 1
            running += loss.item() * len(y)
            n += len(y)
        row = {"epoch": round(step / steps_per_epoch, 2), "loss": running / max(n, 1)}
        if method.masks is not None or method.name != "dense":
            row["sparsity"] = prune.target_sparsity(model)
        curve.append(row)
        log(f"{desc} epoch {row['epoch']:.2f}/{epochs}  loss {row['loss']:.3f}"
            + (f"  sparsity {row['sparsity']:.3f}" if "sparsity" in row else "") + f"  ({time.time() - t0:.0f} s)")
    method.finish()
    out = {"steps": total, "seconds": time.time() - t0, "curve": curve, "sparsity": prune.target_sparsity(model)}
    if test_loader is not None:
        out["top1"] = train.evaluate(model, test_loader, "top1", device)
    return out


# --- checkpoints -------------------------------------------------------------------------------

def _key(cfg, method: str, sparsity: float, seed: int) -> str:
    up = cfg["upstream"]
    relevant = {"arch": cfg["arch"], "data": cfg["mini_data"]["upstream"], "seed_data": cfg["mini_data"]["seed"],
                "dense": up["dense"], "method": up["methods"].get(method, {}), "sparse": up.get("sparse", {}),
                "crop_scale": up["crop_scale"], "grad_clip": up.get("grad_clip"),
                "v": 2,                                       # v: bump when a method changes
                "generator": data.mini.GENERATOR_VERSION}
    if method == "lth_t":
        relevant["gmp"] = up["methods"].get("gmp", {})
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]


def checkpoint_path(method: str, sparsity: float, cfg, seed: int = 0) -> Path:
    """Mini: <checkpoint_root>/<arch>/<method>-s<sparsity>-seed<seed>-<hparams hash>.pth;
    paper: <checkpoint_root>/<method>/<sparsity>.pth (the published checkpoints, placed by hand)."""
    check_choice("method", method, METHODS)
    root = Path(cfg["checkpoint_root"])
    if cfg["profile"] == "paper":
        return root / method / f"{sparsity:g}.pth"
    return root / cfg["arch"] / f"{method}-s{sparsity:g}-seed{seed}-{_key(cfg, method, sparsity, seed)}.pth"


def _save(model, path, cfg, method, sparsity, seed, info) -> None:
    models.save_checkpoint(model, path, cfg["arch"], method=method, sparsity=sparsity, seed=seed,
                           dataset="mini-upstream", top1=info.get("top1"))
    path.with_suffix(".json").write_text(json.dumps({"method": method, "sparsity": sparsity, "seed": seed, **info},
                                                    indent=1, default=float))


def info_of(path: Path) -> dict:
    side = path.with_suffix(".json")
    return json.loads(side.read_text()) if side.exists() else {}


@contextlib.contextmanager
def _making(path: Path):
    """Held while a checkpoint is made: runs in parallel (a sweep with --jobs 2) that need the same
    model wait for the first to finish it and then load it, instead of training it twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def get(method: str, sparsity: float, cfg, seed: int = 0, device=None) -> tuple[nn.Module, dict]:
    """The upstream model of (method, sparsity): loaded from the cache, or (mini) made now."""
    check_choice("method", method, METHODS)
    path = checkpoint_path(method, sparsity, cfg, seed)
    if path.exists():
        return models.load_upstream(path, cfg["arch"]), info_of(path)
    if cfg["profile"] == "paper":
        models.load_upstream(path, cfg["arch"])    # raises the clear "no checkpoint at ..." error
    if method == "dense" or sparsity == 0:
        return _dense(cfg, seed, device)
    # one LTH-T trajectory makes every sparsity: one lock for all of them
    with _making(checkpoint_path(method, 0.0, cfg, seed) if method == "lth_t" else path):
        if not path.exists():
            if method == "lth_t":
                _lth(cfg, seed, device)
            else:
                _sparse(method, sparsity, cfg, seed, device)
    return models.load_upstream(path, cfg["arch"]), info_of(path)


def _dense(cfg, seed, device):
    path = checkpoint_path("dense", 0.0, cfg, seed)
    with _making(path):
        if not path.exists():
            _train_dense(path, cfg, seed, device)
    return models.load_upstream(path, cfg["arch"]), info_of(path)


def _train_dense(path, cfg, seed, device) -> None:
    hp = cfg["upstream"]["dense"]
    train.seed_everything(seed)
    model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
    tr, te = loaders(cfg, hp["batch_size"], seed)
    info = fit(model, prune.make("dense", 0.0, 1), tr, hp["epochs"], hp["lr"], hp["momentum"], hp["weight_decay"],
               device, te, desc="dense", grad_clip=cfg["upstream"].get("grad_clip"))
    _save(model, path, cfg, "dense", 0.0, seed, info)


def _sparse(method, sparsity, cfg, seed, device):
    up = cfg["upstream"]
    mhp = dict(up["methods"].get(method, {}))
    base = up["dense"] if method in ("acdc", "str", "rigl_erk_1x", "rigl_erk_5x") else up["sparse"]
    epochs = base["epochs"] * mhp.pop("epoch_multiplier", 1)
    lr = mhp.pop("lr", base["lr"])
    train.seed_everything(seed)
    tr, te = loaders(cfg, up["dense"]["batch_size"], seed)
    m = prune.make(method, sparsity, 1, seed=seed, **mhp)
    if m.from_dense:
        model, _ = _dense(cfg, seed, device)
    else:
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
    if method == "woodfisher":
        m.grad_fn = _grad_fn(cfg, seed, mhp.get("fisher_batch", 16))
    info = fit(model, m, tr, epochs, lr, up["dense"]["momentum"], up["dense"]["weight_decay"], device, te,
               desc=f"{method} {sparsity:g}", grad_clip=up.get("grad_clip"))
    if method == "rigl_erk_1x" or method == "rigl_erk_5x":
        info["mask_changes"] = m.changed
    _save(model, checkpoint_path(method, sparsity, cfg, seed), cfg, method, sparsity, seed, info)


def _grad_fn(cfg, seed, batch):
    mean, std = norm_stats(cfg)
    ds = data.get("upstream", cfg["data_root"], "train", cfg=cfg)
    it = {"it": None}
    loader = data.loader(ds, "train", cfg["image_size"], mean, std, batch, shuffle=True, seed=seed + 1,
                         scale=cfg["upstream"]["crop_scale"])
    loss_fn = nn.CrossEntropyLoss()

    def grad_fn(model):
        try:
            x, y = next(it["it"])
        except (StopIteration, TypeError):
            it["it"] = iter(loader)
            x, y = next(it["it"])
        device = next(model.parameters()).device
        loss_fn(model(x.to(device)), y.to(device)).backward()
    return grad_fn


def lth_masks(model: nn.Module, dense_state: dict, loader, sparsities, rate: float, round_epochs: float,
              hp: dict, device=None, test_loader=None) -> dict[float, dict]:
    """Iterative magnitude pruning with rewinding to the dense weights: each round trains the masked
    dense weights for `round_epochs`, then prunes `rate` of the remaining weights by magnitude (or
    exactly down to the next requested sparsity), and rewinds. Returns {sparsity: masks}."""
    out, current, mask_now, rnd = {}, 0.0, None, 0
    todo = sorted(sparsities)
    while todo:
        rnd += 1
        nxt = 1 - (1 - current) * (1 - rate)
        hit = nxt >= todo[0] - 1e-9
        if hit:
            nxt = todo.pop(0)
        model.load_state_dict(dense_state)                       # rewind
        fixed = prune.make("dense", current, 1, masks=mask_now)  # train under the current mask
        fit(model, fixed, loader, round_epochs, hp["lr"], hp["momentum"], hp["weight_decay"], device,
            desc=f"lth round {rnd} ({current:.2f})", grad_clip=hp.get("grad_clip"))
        mask_now = prune.magnitude_masks(model, nxt)
        current = nxt
        if hit:
            out[current] = {k: v.clone() for k, v in mask_now.items()}
    model.load_state_dict(dense_state)
    return out


def _lth(cfg, seed, device) -> None:
    """One IMP trajectory gives the LTH-T checkpoints of every configured sparsity."""
    up = cfg["upstream"]
    hp = dict(up["methods"]["lth_t"])
    dense, _ = _dense(cfg, seed, device)
    dense_state = {k: v.clone() for k, v in dense.state_dict().items()}
    tr, te = loaders(cfg, up["dense"]["batch_size"], seed)
    train.seed_everything(seed)
    t0 = time.time()
    found = lth_masks(dense, dense_state, tr, cfg["sparsities"], hp["rate"], hp["round_epochs"],
                      {"lr": hp.get("lr", up["sparse"]["lr"]), "momentum": up["dense"]["momentum"],
                       "weight_decay": up["dense"]["weight_decay"], "grad_clip": up.get("grad_clip")}, device)
    for sparsity, mk in found.items():
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
        model.load_state_dict(dense_state)
        masks.apply(model, mk)                      # the mask on the dense weights, no retraining
        info = {"seconds": time.time() - t0, "sparsity": prune.target_sparsity(model),
                "top1": train.evaluate(model.to(device or train.default_device()), te, "top1", device)}
        _save(model, checkpoint_path("lth_t", sparsity, cfg, seed), cfg, "lth_t", sparsity, seed, info)


# --- evaluation ----------------------------------------------------------------------------------

def evaluate_imagenet(model: nn.Module, cfg, bicubic: bool = False, device=None, batch_size: int = 256) -> dict:
    """Table 3 for one model: top-1 on the ImageNet validation set, on its ReaL labels and on the
    three ImageNetV2 variants (and their mean). A set missing under data_root gives NaN and a note."""
    from . import metrics

    device = device or train.default_device()
    model = model.to(device).eval()
    tf = data.transforms.evaluation(cfg["image_size"], bicubic=bicubic)
    out = {}
    for name in data.IMAGENET_SETS:
        if name == "imagenet_real":
            continue
        try:
            ds = data.imagenet_eval(name, cfg["data_root"])
        except data.DataError as e:
            log(f"skipped: {e}")
            out[name] = float("nan")
            continue
        ds.transform = tf
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=cfg.get("num_workers", 0))
        y, p = train.predict(model, loader, device)
        out[name] = metrics.top1(y, p)
        if name == "imagenet_val":
            real = Path(cfg["data_root"]) / "imagenet" / "real.json"
            out["imagenet_real"] = metrics.real_accuracy(p, data.real_labels(ds, real)) if real.exists() else float("nan")
    v2 = [out[k] for k in out if k.startswith("imagenetv2")]
    out["imagenetv2_mean"] = float(sum(v2) / len(v2)) if v2 else float("nan")
    return out


def mini_row(method: str, sparsity: float, cfg, seed: int = 0, device=None) -> dict:
    """One upstream result row of the mini profile: top-1 on the upstream test split, sparsity over
    the prunable layers, fully pruned filters, time it took to make the model."""
    model, info = get(method, sparsity, cfg, seed, device)
    _, te = loaders(cfg, 128, seed)
    filt = masks.pruned_filters(model).iloc[-1]
    return {"method": method, "sparsity": sparsity, "seed": seed,
            "top1": train.evaluate(model.to(device or train.default_device()), te, "top1", device),
            "achieved_sparsity": prune.target_sparsity(model), "pruned_filters": float(filt["fraction"]),
            "train_seconds": info.get("seconds"), "checkpoint": str(checkpoint_path(method, sparsity, cfg, seed))}


def result_row(method: str, sparsity: float, cfg, seed: int = 0, device=None) -> dict:
    """01_upstream's result: mini -> `mini_row`; paper -> the published checkpoint on Table 3's sets."""
    if cfg["profile"] == "mini":
        return mini_row(method, sparsity, cfg, seed, device)
    model, _ = get(method, sparsity, cfg, seed, device)
    row = {"method": method, "sparsity": sparsity, "seed": seed,
           "achieved_sparsity": prune.target_sparsity(model),
           "pruned_filters": float(masks.pruned_filters(model).iloc[-1]["fraction"]),
           "checkpoint_format": getattr(model, "checkpoint_format", "")}
    row.update(evaluate_imagenet(model, cfg, bicubic=method.startswith("rigl"), device=device))
    return row


def table3(df) -> "pd.DataFrame":
    """The upstream table in Table 3's shape: one row per (sparsity, method), accuracy columns in %."""
    cols = [c for c in ("top1", "imagenet_val", "imagenet_real", "imagenetv2_mean", "achieved_sparsity",
                        "pruned_filters") if c in df.columns]
    t = df.groupby(["sparsity", "method"])[cols].mean()
    for c in cols:
        if c not in ("achieved_sparsity", "pruned_filters"):
            t[c] = (100 * t[c]).round(1)
    return t.round(3)


def available(cfg, seed: int = 0) -> list[tuple[str, float]]:
    """(method, sparsity) of every upstream checkpoint present: mini, those made with the current
    hyperparameters; paper, every <checkpoint_root>/<method>/<sparsity>.pth."""
    out = []
    sparsities = sorted(set(cfg.get("sparsities", [])) | set(cfg.get("upstream", {}).get("structured_sparsities", [])))
    for method in METHODS:
        candidates = [0.0] if method == "dense" else sparsities
        if cfg["profile"] == "paper":
            d = Path(cfg["checkpoint_root"]) / method
            candidates = sorted(float(p.stem) for p in d.glob("*.pth")) if d.is_dir() else []
        out += [(method, s) for s in candidates if checkpoint_path(method, s, cfg, seed).exists()]
    return out


def structure_table(cfg, seed: int = 0) -> "pd.DataFrame":
    """Fully pruned filters per conv layer of every available upstream model (Sec. 3.5, App. E):
    columns method, sparsity, layer, filters, pruned_filters, fraction (a 'total' row per model)."""
    import pandas as pd

    frames = []
    for method, sparsity in available(cfg, seed):
        model = models.load_upstream(checkpoint_path(method, sparsity, cfg, seed), cfg["arch"])
        df = masks.pruned_filters(model).rename(columns={"sparsity": "layer_sparsity"})
        df.insert(0, "sparsity", sparsity)
        df.insert(0, "method", method)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["method", "sparsity", "layer", "filters", "pruned_filters", "layer_sparsity", "fraction"])


def run_config(cfg, method: str, sparsity: float, seed: int = 0) -> dict:
    """What identifies an 01_upstream run (its hash is the run id)."""
    check_choice("method", method, METHODS)
    out = {"profile": cfg["profile"], "arch": cfg["arch"], "method": method, "sparsity": float(sparsity),
           "seed": int(seed)}
    if cfg["profile"] == "mini":
        out["key"] = _key(cfg, method, sparsity, seed)
    return out
