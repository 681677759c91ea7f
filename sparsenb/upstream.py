"""Upstream models. Mini profile: train the dense model on the generated upstream task and prune it
with one of our implementations of the paper's methods, cached as checkpoints in the same (IST)
format the paper profile loads. Paper profile: the published checkpoint of (method, sparsity).

    model, info = upstream.get("acdc", 0.9, cfg)      # trains (or loads from the cache) and evaluates
    upstream.reference_set(cfg)                       # every (method, sparsity, seed) `make upstream` builds
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn as nn

from . import checkpoints, data, devices, files, masks, models, prune, train, weights
from .config import Config
from .errors import check_choice
from .progress import log

# --- data ----------------------------------------------------------------------------------------

_NORM: dict[str, tuple] = {}


def norm_stats(cfg: Config) -> tuple[tuple, tuple]:
    """The upstream task's mean/std: the mini profile's "ImageNet mean/std" (paper: ImageNet's)."""
    if cfg["profile"] != "mini":
        return data.transforms.IMAGENET_MEAN, data.transforms.IMAGENET_STD
    key = json.dumps([cfg["data_root"], cfg["mini_data"], cfg["image_size"]], sort_keys=True)
    if key not in _NORM:
        _NORM[key] = data.transforms.channel_stats(data.get("upstream", cfg["data_root"], "train", cfg=cfg))
    return _NORM[key]


def loaders(cfg: Config, seed: int = 0):
    """(train, {"val": ..., "test": ...}) loaders of the mini upstream task, the recipe's augmentation."""
    mean, std = norm_stats(cfg)
    up = cfg["upstream"]
    size = cfg["image_size"]
    split = {s: data.get("upstream", cfg["data_root"], s, cfg=cfg) for s in ("train", "val", "test")}
    train_loader = data.loader(
        split["train"],
        "train",
        size,
        mean,
        std,
        up["optimizer"]["batch_size"],
        shuffle=True,
        seed=seed,
        drop_last=True,
        scale=up["crop_scale"],
    )
    return train_loader, {
        s: data.loader(split[s], "eval", size, mean, std, cfg["eval_batch_size"]) for s in ("val", "test")
    }


# --- the recipe: one optimizer and schedule for every method, budgets as multiples of D ----------


def budget(method: str, cfg: Config, D: float | None = None) -> tuple[float, float]:
    """(epochs of the method's own run, total epochs from random initialisation) for `method`:
    own = budget * D; a method that starts from the dense model adds the dense model's D."""
    check_choice("method", method, prune.METHODS)
    up = cfg["upstream"]
    D = float(up["D"] if D is None else D)
    hp = up["methods"][method]
    if method == "lth_t":  # no training of its own beyond the IMP rounds
        return 0.0, D
    own = float(hp["budget"]) * D
    return own, own + (D if prune.METHODS[method].from_dense else 0.0)


def method_hp(method: str, cfg: Config) -> dict:
    """The method's hyperparameters from params, without the budget."""
    return {k: v for k, v in cfg["upstream"]["methods"][method].items() if k != "budget"}


# --- checkpoints: the shipped reference set (mini) and the published ones (paper) ---------------


def get(method: str, sparsity: float, cfg: Config, seed: int = 0, device=None) -> tuple[nn.Module, dict]:
    """The upstream model of (method, sparsity, seed). Paper: the published checkpoint. Mini: the
    shipped reference checkpoint when the manifest vouches for it (sha256 and recipe); otherwise it
    is made now with the profile's recipe, saved and added to the manifest."""
    device = device or devices.device_of(cfg)
    check_choice("method", method, prune.METHODS)
    path = checkpoints.checkpoint_path(method, sparsity, cfg, seed)
    if cfg["profile"] == "paper":
        return weights.load_upstream(path, cfg["arch"]), checkpoints.info_of(path)
    if method in ("dense", "dense_5x"):
        sparsity = 0.0
        path = checkpoints.checkpoint_path(method, sparsity, cfg, seed)
    # one LTH-T trajectory makes every sparsity: one lock for all of them
    lock = checkpoints.checkpoint_path(method, 0.0, cfg, seed) if method == "lth_t" else path
    with files.locked(lock):
        state = checkpoints.verify(cfg, method, sparsity, seed)
        if state == "corrupt":
            raise weights.CheckpointError(
                f"{path} does not match its sha256 in {checkpoints.manifest_path(cfg)}: restore it "
                f"(git checkout -- {path}) or rebuild it (make upstream)"
            )
        if state != "ok":
            if state == "stale":
                log(f"{path} was made with another recipe: making it again")
            _make(method, sparsity, cfg, seed, device)
    return weights.load_upstream(path, cfg["arch"]), checkpoints.info_of(path)


def _make(method, sparsity, cfg: Config, seed, device) -> None:
    if method == "lth_t":
        return _lth(cfg, seed, device)
    own, _ = budget(method, cfg)
    devices.seed_everything(seed)
    m = prune.make(method, sparsity, 1, seed=seed, **method_hp(method, cfg))
    if m.from_dense:
        model, _ = get("dense", 0.0, cfg, seed, device)
        devices.seed_everything(seed)
    else:
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
    if method == "woodfisher":
        m.grad_fn = _grad_fn(cfg, seed, int(m.param("fisher_batch")))
    path = checkpoints.checkpoint_path(method, sparsity, cfg, seed)
    partial = path.with_name(f"{path.stem}-{checkpoints.recipe_key(cfg, method)}.partial.pt")  # never committed
    info = fit_recipe(model, m, cfg, seed, own, device, desc=f"{method} {sparsity:g} seed {seed}", resume=partial)
    if method.startswith("rigl"):
        info["mask_changes"] = m.changed
    if method == "str":
        info["str_history"] = m.history
    checkpoints.save(model, cfg, method, sparsity, seed, info, budget(method, cfg)[1])


def fit_recipe(
    model: nn.Module,
    method: prune.Method,
    cfg: Config,
    seed: int,
    epochs: float,
    device=None,
    desc: str = "",
    resume: Path | None = None,
) -> train.FitResult:
    """`model` trained by `method` for `epochs` with the shared recipe of the profile (optimizer,
    cosine schedule, augmentation, gradient clipping) on the upstream task; val and test top-1.
    With `resume`, a killed run continues from its last epoch (train.fit)."""
    up = cfg["upstream"]
    tr, evals = loaders(cfg, seed)
    return train.fit(
        model, method, tr, epochs, up["optimizer"], device, evals, desc=desc, grad_clip=up["grad_clip"], resume=resume
    )


def _grad_fn(cfg: Config, seed, batch):
    mean, std = norm_stats(cfg)
    ds = data.get("upstream", cfg["data_root"], "train", cfg=cfg)
    it = {"it": None}
    loader = data.loader(
        ds,
        "train",
        cfg["image_size"],
        mean,
        std,
        batch,
        shuffle=True,
        seed=seed + 1,
        scale=cfg["upstream"]["crop_scale"],
    )
    loss_fn = nn.CrossEntropyLoss()

    def grad_fn(model):
        try:
            x, y = next(it["it"])
        except (StopIteration, TypeError):
            it["it"] = iter(loader)
            x, y = next(it["it"])
        device = next(model.parameters()).device
        loss_fn(model(x.to(device).contiguous(memory_format=torch.channels_last)), y.to(device)).backward()

    return grad_fn


def _lth(cfg: Config, seed, device) -> None:
    """One IMP trajectory gives the LTH-T checkpoints of every sparsity of this seed."""
    up = cfg["upstream"]
    dense, _ = get("dense", 0.0, cfg, seed, device)
    dense_state = {k: v.clone() for k, v in dense.state_dict().items()}
    tr, evals = loaders(cfg, seed)
    devices.seed_everything(seed)
    t0 = time.time()
    method = prune.make("lth_t", 0.0, 1, **method_hp("lth_t", cfg))
    round_epochs = float(up["methods"]["lth_t"]["round_budget"]) * float(up["D"])

    def train_round(model, fixed, desc):
        train.fit(model, fixed, tr, round_epochs, up["optimizer"], device, desc=desc, grad_clip=up["grad_clip"])

    found = method.find_masks(dense, dense_state, train_round, sparsities_of(cfg, "lth_t", seed))
    for sparsity, mk in found.items():
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
        model.load_state_dict(dense_state)
        masks.apply(model, mk)  # the mask on the dense weights, no retraining
        model.to(device or devices.default_device())
        info = {
            "seconds": time.time() - t0,
            "sparsity": prune.target_sparsity(model),
            "epochs": 0.0,
            **{f"{k}_top1": train.evaluate(model, v, "top1", device) for k, v in evals.items()},
        }
        checkpoints.save(model, cfg, "lth_t", sparsity, seed, info, budget("lth_t", cfg)[1])


# --- the reference set --------------------------------------------------------------------------


def sparsities_of(cfg: Config, method: str, seed: int) -> list[float]:
    """The sparsities the reference set has for (method, seed): every one of `sparsities` for the
    first seed, `seeds_sparsities` for the others; dense models at 0; structured at its own."""
    up = cfg["upstream"]
    if method in ("dense", "dense_5x"):
        return [0.0]
    if method == "structured":
        return list(up["structured_sparsities"]) if seed == up["seeds"][0] else []
    return [float(s) for s in cfg["sparsities"] if seed == up["seeds"][0] or s in up["seeds_sparsities"]]


def reference_set(cfg: Config) -> list[tuple[str, float, int]]:
    """Every (method, sparsity, seed) of the mini reference checkpoints, in the order `make upstream`
    makes them (seed by seed, so that a finished seed is a usable set)."""
    return [
        (m, s, seed)
        for seed in cfg["upstream"]["seeds"]
        for m in cfg["upstream"]["methods"]
        for s in sparsities_of(cfg, m, seed)
    ]


def epoch_seconds(cfg: Config, steps: int = 12, device=None) -> float:
    """This machine's seconds per upstream epoch with the recipe's batch size, from timing `steps`
    SGD steps of the profile's arch on random images (after two warm-up steps)."""
    device = torch.device(device) if device else devices.default_device()
    up = cfg["upstream"]
    bs, size = int(up["optimizer"]["batch_size"]), int(cfg["image_size"])
    n_train = cfg["mini_data"]["upstream"]["classes"] * cfg["mini_data"]["upstream"]["train_per_class"]
    model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"]).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(bs, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg["mini_data"]["upstream"]["classes"], (bs,), device=device)
    t = 0.0
    for i in range(steps + 2):
        if i == 2:
            t = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps * (n_train // bs)


def planned_seconds(cfg: Config, epoch_seconds: float) -> dict[tuple[str, float, int], float]:
    """Planned training time of each model of the reference set at `epoch_seconds` per epoch."""
    out = {}
    for m, s, seed in reference_set(cfg):
        own, _ = budget(m, cfg)
        if m == "lth_t":
            rounds = 0
            cur = 0.0
            while cur < max(sparsities_of(cfg, m, seed)) - 1e-9:
                cur = 1 - (1 - cur) * (1 - cfg["upstream"]["methods"]["lth_t"]["rate"])
                rounds += 1
            own = (
                rounds
                * cfg["upstream"]["methods"]["lth_t"]["round_budget"]
                * cfg["upstream"]["D"]
                / len(sparsities_of(cfg, m, seed))
            )
        out[(m, s, seed)] = own * epoch_seconds
    return out


def available(cfg: Config, seed: int = 0) -> list[tuple[str, float]]:
    """(method, sparsity) of every upstream checkpoint present: mini, those made with the current
    hyperparameters; paper, every <checkpoint_root>/<method>/<sparsity>.pth."""
    out = []
    sparsities = (
        []
        if cfg["profile"] == "paper"
        else sorted(set(cfg["sparsities"]) | set(cfg["upstream"]["structured_sparsities"]))
    )
    for method in prune.METHODS:
        candidates = [0.0] if method in ("dense", "dense_5x") else sparsities
        if cfg["profile"] == "paper":
            d = Path(cfg["checkpoint_root"]) / method
            candidates = sorted(s for p in d.glob("*.pth") if (s := _sparsity_of(p)) is not None) if d.is_dir() else []
        out += [(method, s) for s in candidates if checkpoints.checkpoint_path(method, s, cfg, seed).exists()]
    return out


def _sparsity_of(path: Path) -> float | None:
    """The sparsity a published checkpoint's name gives (<method>/<sparsity>.pth, e.g. 0.9.pth), or
    None with a warning for a name that is not one (best.pth, 90.pth)."""
    try:
        s = float(path.stem)
    except ValueError:
        s = -1.0
    if 0 <= s < 1:
        return s
    log(f"skipped {path}: its name is not a sparsity in [0, 1) (expected e.g. {path.parent}/0.9.pth)")
    return None


def run_config(cfg: Config, method: str, sparsity: float, seed: int = 0) -> dict:
    """What identifies an 01_upstream run (its hash is the run id)."""
    check_choice("method", method, prune.METHODS)
    out = {
        "profile": cfg["profile"],
        "arch": cfg["arch"],
        "method": method,
        "sparsity": float(sparsity),
        "seed": int(seed),
    }
    if cfg["profile"] == "mini":
        out["recipe"] = checkpoints.recipe_key(cfg, method)
    return out
