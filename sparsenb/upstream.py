"""Upstream models. Mini profile: train the dense model on the generated upstream task and prune it
with one of our implementations of the paper's methods, cached as checkpoints in the same (IST)
format the paper profile loads. Paper profile: the published checkpoint of (method, sparsity).

    model, info = upstream.load("acdc", 0.9, cfg)     # finetuning: the verified checkpoint, never trains
    upstream.build("acdc", 0.9, cfg, seed=1)          # 01_upstream, make upstream: made unless vouched for
    upstream.reference_set(cfg)                       # every (method, sparsity, seed) `make upstream` builds

Mini budgets are multiples of D (params `upstream.D`) and every sparse method has a budget-matched
control (`prune.control_of`). The schedules follow the methods' official code, scaled to D:
GMP / WoodFisher continue from the dense model at a low lr with exponential decay and prune over the
first part of their run (WoodFisher configs/resnet50.yaml); LTH-T is Chen et al.'s IMP
(VITA-Group/CV_LTH_Pre-training main_imp_imagenet.py); AC/DC's phases are its `iht` configs'.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn as nn

from . import checkpoints, data, devices, evidence, files, masks, models, profiles, prune, train, weights
from .config import Config
from .errors import ConfigError, UserError, check_choice
from .progress import log


class UpstreamMissing(UserError):
    """A finetuning run asked for an upstream model the reference set does not vouch for."""


class OffTarget(UserError):
    """A built model missed its nominal sparsity by more than 1.5 points."""


# --- data ----------------------------------------------------------------------------------------

_NORM: dict[str, tuple] = {}


def norm_stats(cfg: Config) -> tuple[tuple, tuple]:
    """The upstream task's mean/std: measured on a rendered upstream task (mini: its "ImageNet
    mean/std"), else ImageNet's."""
    if not profiles.of(cfg).renders_data:
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


def entry(method: str, cfg: Config) -> dict:
    """The params entry that defines `method`'s run: its own, or for a control that follows another
    method's schedule (dense_2x follows GMP) that method's."""
    check_choice("method", method, prune.METHODS)
    follows = prune.METHODS[method].follows
    return dict(cfg["upstream"]["methods"][follows or method])


def budget(method: str, cfg: Config, D: float | None = None) -> tuple[float, float]:
    """(epochs of the method's own run, total epochs from random initialisation) for `method`:
    own = budget * D; a method that starts from the dense model adds the dense model's D; a method
    that keeps the dense weights (LTH-T: the IMP rounds only find its mask) has no run of its own."""
    D = float(cfg["upstream"]["D"] if D is None else D)
    cls = prune.METHODS[method]
    if cls.dense_state:
        return 0.0, D
    own = float(entry(method, cfg)["budget"]) * D
    return own, own + (D if cls.from_dense else 0.0)


def method_hp(method: str, cfg: Config) -> dict:
    """The method's own hyperparameters from params, without its budget and optimizer."""
    check_choice("method", method, prune.METHODS)
    return {k: v for k, v in cfg["upstream"]["methods"][method].items() if k not in ("budget", "optimizer")}


def optimizer(method: str, cfg: Config) -> dict:
    """The optimizer of `method`'s run: the shared one (`upstream.optimizer`), with the learning
    rate and schedule of the method's `optimizer` entry where its official code has its own (GMP and
    WoodFisher continue from the dense model at a low lr with exponential decay; LTH-T's rounds run
    at a constant lr) -- the same for the control that follows it."""
    own = {k: v for k, v in (entry(method, cfg).get("optimizer") or {}).items() if v is not None}
    return {**cfg["upstream"]["optimizer"], **own}


# --- checkpoints: the shipped reference set (mini) and the published ones (paper) ---------------


def load(method: str, sparsity: float, cfg: Config, seed: int = 0, device=None) -> tuple[nn.Module, dict]:
    """The upstream model of (method, sparsity, seed) for finetuning: never trains. Paper: the
    published checkpoint. Mini: the reference checkpoint the manifest vouches for (sha256, recipe,
    achieved sparsity); anything else is one error naming the command that builds it."""
    check_choice("method", method, prune.METHODS)
    if not profiles.of(cfg).makes_upstream:  # published: nothing to vouch for
        return _read(checkpoints.checkpoint_path(method, sparsity, cfg, seed), cfg)
    sparsity = float(sparsity) if prune.is_sparse(method) else 0.0
    check_seed(cfg, seed)
    state = checkpoints.verify(cfg, method, sparsity, seed)
    if state != "ok":
        raise UpstreamMissing(_missing_message(cfg, method, sparsity, seed, state))
    return _read(checkpoints.checkpoint_path(method, sparsity, cfg, seed), cfg)


def _read(path: Path, cfg: Config) -> tuple[nn.Module, dict]:
    """The model at `path` and its info: the sidecar's (checkpoints.info_of) and `checkpoint_format`."""
    ck = weights.read_upstream(path, cfg["arch"])
    return ck.model, {**checkpoints.info_of(path), "checkpoint_format": ck.format}


def check_seed(cfg: Config, seed: int) -> None:
    """Only the reference set's upstream seeds exist (finetuning never adds one)."""
    seeds = [int(s) for s in cfg["upstream"]["seeds"]]
    if int(seed) not in seeds:
        raise ConfigError(f"upstream seed {seed} is not in the reference set; its upstream seeds are {seeds}")


def _missing_message(cfg: Config, method: str, sparsity: float, seed: int, state: str) -> str:
    path = checkpoints.checkpoint_path(method, sparsity, cfg, seed)
    why = {
        "missing": "is not built",
        "stale": "was made with another recipe (params changed since)",
        "corrupt": "does not match its sha256 in the manifest (restore it: git checkout -- <path>)",
        "off-target": "is more than 1.5 points from its nominal sparsity (see its manifest row)",
    }[state]
    cmd = f"python -m sparsenb upstream build --method {method} --sparsity {sparsity:g} --seed {seed}"
    own = planned_seconds(cfg, 1.0).get((method, sparsity, seed))  # at 1 s an epoch: its epochs
    hint = f" (planned {own:g} epochs of training)" if own is not None else ""
    return f"upstream model {method} {sparsity:g} seed {seed}: {path} {why}; finetuning never trains one: {cmd}{hint}"


def get(method: str, sparsity: float, cfg: Config, seed: int = 0, device=None) -> tuple[nn.Module, dict]:
    """`build` then `load`: 01_upstream's and `make upstream`'s verb (finetuning calls `load`)."""
    if profiles.of(cfg).makes_upstream:
        build(method, sparsity, cfg, seed, device)
    return load(method, sparsity, cfg, seed, device)


def build(method: str, sparsity: float, cfg: Config, seed: int = 0, device=None) -> Path:
    """Make the mini upstream model of (method, sparsity, seed) with the profile's recipe unless the
    manifest vouches for it already; saved and added to the manifest. Returns its path."""
    device = device or devices.device_of(cfg)
    check_choice("method", method, prune.METHODS)
    check_seed(cfg, seed)
    sparsity = float(sparsity) if prune.is_sparse(method) else 0.0
    path = checkpoints.checkpoint_path(method, sparsity, cfg, seed)
    with files.locked(build_path(method, sparsity, cfg, seed)):
        state = checkpoints.verify(cfg, method, sparsity, seed)
        if state == "corrupt":
            raise weights.CheckpointError(
                f"{path} does not match its sha256 in {checkpoints.manifest_path(cfg)}: restore it "
                f"(git checkout -- {path}) or rebuild it (make upstream)"
            )
        if state == "stale" and evidence.committed(path) and not evidence.replacing_allowed():
            raise evidence.EvidenceError(
                f"{path} is committed evidence made with another recipe than params/{cfg['profile']}.yaml's: "
                f"nothing was trained. Restore the params (git diff params/), give the run overrides (they "
                f"build under outputs/cache/overrides/), or rebuild the reference set on purpose: "
                f"python -m sparsenb upstream build --replace"
            )
        if state == "missing" or state == "stale":
            if state == "stale":
                log(f"{path} was made with another recipe: making it again")
            _make(method, sparsity, cfg, seed, device)
            state = checkpoints.verify(cfg, method, sparsity, seed)
    if state == "off-target":
        e = checkpoints.entry(cfg, method, sparsity, seed)
        raise OffTarget(
            f"{path} reached sparsity {float(e['achieved_sparsity']):.3f}, more than 1.5 points from its nominal "
            f"{sparsity:g}: it is not filed under {sparsity:g}. Set the method's knob for it (STR: "
            f"`python -m sparsenb upstream calibrate-str`, then upstream.methods.{method}.s_init) and build again"
        )
    return path


def build_path(method: str, sparsity: float, cfg: Config, seed: int = 0) -> Path:
    """The checkpoint path one build of (method, sparsity, seed) is locked and claimed by: its own,
    or for a method whose one trajectory makes every sparsity (LTH-T) the trajectory's (sparsity 0)."""
    shared = prune.METHODS[method].dense_state
    return checkpoints.checkpoint_path(method, 0.0 if shared else sparsity, cfg, seed)


def _make(method, sparsity, cfg: Config, seed, device) -> None:
    if prune.METHODS[method].dense_state:
        return _trajectory(method, cfg, seed, device)
    own, _ = budget(method, cfg)
    devices.seed_everything(seed)
    m = prune.make(method, sparsity, 1, seed=seed, **method_hp(method, cfg))
    if m.from_dense:
        model, _ = get(prune.DENSE, 0.0, cfg, seed, device)
        devices.seed_everything(seed)
    else:
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
    if m.needs_gradients:
        m.grad_fn = _grad_fn(cfg, seed, int(m.param("fisher_batch")))
    path = checkpoints.checkpoint_path(method, sparsity, cfg, seed)
    partial = path.with_name(f"{path.stem}-{checkpoints.recipe_key(cfg, method)}.partial.pt")  # never committed
    if own == 0:  # random_init: the initialisation itself, evaluated
        info = _evaluated(model, cfg, seed, device)
    else:
        desc = f"{method} {sparsity:g} seed {seed}"
        info = fit_recipe(model, m, cfg, seed, own, device, desc=desc, resume=partial, method_name=method)
    info.update(m.extra_info())
    checkpoints.save(model, cfg, method, sparsity, seed, info, budget(method, cfg)[1])


def _evaluated(model: nn.Module, cfg: Config, seed: int, device) -> dict:
    """A model's record without training: val and test top-1 (what `fit_recipe` returns, 0 epochs)."""
    _, evals = loaders(cfg, seed)
    model.to(device or devices.default_device())
    top1 = {f"{k}_top1": train.evaluate(model, v, "top1", device) for k, v in evals.items()}
    return {"seconds": 0.0, "sparsity": 0.0, "epochs": 0.0, "steps": 0, "curve": [], **top1}


def fit_recipe(
    model: nn.Module,
    method: prune.Method,
    cfg: Config,
    seed: int,
    epochs: float,
    device=None,
    desc: str = "",
    resume: Path | None = None,
    method_name: str | None = None,
) -> train.FitResult:
    """`model` trained by `method` for `epochs` with the recipe of the profile (the shared optimizer
    with the method's own lr and schedule where it has one, augmentation, gradient clipping) on the
    upstream task; val and test top-1.
    With `resume`, a killed run continues from its last epoch (train.fit)."""
    up = cfg["upstream"]
    tr, evals = loaders(cfg, seed)
    opt = optimizer(method_name or method.name, cfg)
    return train.fit(model, method, tr, epochs, opt, device, evals, desc=desc, grad_clip=up["grad_clip"], resume=resume)


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


def _trajectory(name: str, cfg: Config, seed, device) -> None:
    """One trajectory of a method that keeps the dense weights (LTH-T: IMP) gives its checkpoints of
    every sparsity of this seed: its masks on the dense weights, no retraining."""
    up = cfg["upstream"]
    dense, _ = get(prune.DENSE, 0.0, cfg, seed, device)
    dense_state = {k: v.clone() for k, v in dense.state_dict().items()}
    tr, evals = loaders(cfg, seed)
    devices.seed_everything(seed)
    t0 = time.time()
    method = prune.make(name, 0.0, 1, **method_hp(name, cfg))
    round_epochs = method.round_budget() * float(up["D"])
    opt = optimizer(name, cfg)

    def train_round(model, fixed, desc):
        train.fit(model, fixed, tr, round_epochs, opt, device, desc=desc, grad_clip=up["grad_clip"])

    found = method.find_masks(dense, dense_state, train_round, sparsities_of(cfg, name, seed))
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
        checkpoints.save(model, cfg, name, sparsity, seed, info, budget(name, cfg)[1])


# --- the reference set --------------------------------------------------------------------------


def sparsities_of(cfg: Config, method: str, seed: int) -> list[float]:
    """The sparsities the reference set has for (method, seed): every one of `sparsities` for the
    first `first_seeds` seeds (default 1), `seeds_sparsities` for the others; dense and controls at
    0; structured at its own (first seed only); a method of `few_seeds_methods` on the first seeds only."""
    up = cfg["upstream"]
    first = seed in up["seeds"][: int(up.get("first_seeds") or 1)]
    if method in (up.get("few_seeds_methods") or []) and not first:
        return []
    if not prune.is_sparse(method):
        return [0.0]
    if prune.family(method) == "structured":
        return list(up["structured_sparsities"]) if seed == up["seeds"][0] else []
    return [float(s) for s in cfg["sparsities"] if first or s in up["seeds_sparsities"]]


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
    """Planned training time of each model of the reference set at `epoch_seconds` per epoch (the
    training of one trajectory (LTH-T's rounds) shared among the sparsities it gives)."""
    out = {}
    for m, s, seed in reference_set(cfg):
        own, _ = budget(m, cfg)
        if prune.METHODS[m].dense_state:
            todo = sparsities_of(cfg, m, seed)
            shared = prune.make(m, 0.0, 1, **method_hp(m, cfg)).trajectory_budget(todo)
            own = shared * cfg["upstream"]["D"] / len(todo)
        out[(m, s, seed)] = own * epoch_seconds
    return out


def available(cfg: Config, seed: int = 0) -> list[tuple[str, float]]:
    """(method, sparsity) of every upstream checkpoint usable: mini, those the manifest vouches for
    (sha256 and the current recipe: `checkpoints.verify`), each one it does not printed with its
    state; paper, every <checkpoint_root>/<method>/<sparsity>.pth."""
    if not profiles.of(cfg).makes_upstream:
        return [(m, s) for m in prune.METHODS for s in _published(cfg, m)]
    states = {(m, s): checkpoints.verify(cfg, m, s, sd) for m, s, sd in reference_set(cfg) if sd == seed}
    left = [f"{m} {s:g} ({st})" for (m, s), st in states.items() if st != "ok"]
    if left:
        log(f"left out, not verified against {checkpoints.manifest_path(cfg)}: {', '.join(left)}")
    return [k for k, st in states.items() if st == "ok"]


def _published(cfg: Config, method: str) -> list[float]:
    """The sparsities of the published checkpoints of `method` placed under checkpoint_root."""
    d = Path(cfg["checkpoint_root"]) / method
    return sorted(s for p in d.glob("*.pth") if (s := _sparsity_of(p)) is not None) if d.is_dir() else []


def sparsities(cfg: Config, method: str) -> list[float]:
    """The sparsities a run of `method` may use: those the profile makes (dense and controls 0,
    structured its own), or those with a published checkpoint under checkpoint_root."""
    if not profiles.of(cfg).makes_upstream:
        return sorted(s for m, s in available(cfg) if m == method)
    if not prune.is_sparse(method):
        return [0.0]
    structured = prune.family(method) == "structured"
    return [float(s) for s in (cfg["upstream"]["structured_sparsities"] if structured else cfg["sparsities"])]


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


# --- the reference set as a whole: `python -m sparsenb upstream plan|verify|build` -----------------


def select(
    cfg: Config, method: str | None = None, sparsity: float | None = None, seed: int | None = None
) -> list[tuple[str, float, int]]:
    """The models of the reference set with this method, sparsity and seed (None: any); one error
    listing its methods when none matches."""
    todo = [
        (m, s, sd)
        for m, s, sd in reference_set(cfg)
        if seed in (None, sd) and method in (None, m) and (sparsity is None or abs(s - sparsity) < 1e-9)
    ]
    if not todo:
        raise UserError(
            "no model of the reference set matches --method/--sparsity/--seed; its methods: "
            + ", ".join(dict.fromkeys(m for m, _, _ in reference_set(cfg)))
        )
    return todo


def print_plan(cfg: Config, todo: list[tuple[str, float, int]]) -> float:
    """How many of `todo` are present, and the training the others need at this machine's speed
    (`epoch_seconds`), printed. Returns those core-seconds."""
    per_epoch = epoch_seconds(cfg)
    plan = planned_seconds(cfg, per_epoch)
    left = [t for t in todo if checkpoints.verify(cfg, *t) != "ok"]
    core = sum(plan[t] for t in left)
    print(
        f"== upstream reference set: {len(todo)} models, {len(todo) - len(left)} present; to make: {len(left)}, "
        f"planned {core / 3600:.1f} core-hours at {per_epoch:.1f} s/epoch (timed here, one worker) = "
        f"~{core / 7200:.1f} h with two workers",
        flush=True,
    )
    return core


def verify_all(cfg: Config, todo: list[tuple[str, float, int]]) -> list[tuple[str, float, int, str]]:
    """Every model of `todo` checked against the manifest (sha256 + recipe); each one that is not
    "ok" printed with its state, then the count. Returns those (method, sparsity, seed, state)."""
    bad = [(m, s, seed, st) for m, s, seed in todo if (st := checkpoints.verify(cfg, m, s, seed)) != "ok"]
    for m, s, seed, st in bad:
        print(f"  {st:8} {checkpoints.checkpoint_path(m, s, cfg, seed)}")
    print(f"{len(todo) - len(bad)} of {len(todo)} reference checkpoints verified (sha256 + recipe)")
    return bad


def build_all(cfg: Config, todo: list[tuple[str, float, int]]) -> None:
    """Make every model of `todo` the manifest does not vouch for, one at a time, each claimed first
    (`files.claim`) so that workers in other shells take the others; a corrupt file is moved aside
    and made again, an off-target model reported while the others go on."""
    t0 = time.time()
    left = [t for t in todo if checkpoints.verify(cfg, *t) != "ok"]
    print(
        f"== upstream reference set: {len(todo) - len(left)} of {len(todo)} present; making {len(left)} "
        f"(run this command in two shells to use two cores: each takes the next model nobody holds)",
        flush=True,
    )
    for m, s, seed in left:
        _build_claimed(cfg, m, s, seed)
    print(f"== upstream reference set: {(time.time() - t0) / 60:.1f} min")


def _build_claimed(cfg: Config, method: str, sparsity: float, seed: int) -> None:
    """`build` one model of the reference set unless another worker holds it or made it meanwhile;
    one line with its time, top-1 and sparsity."""
    # one LTH-T trajectory makes every sparsity: one claim for all of them
    shared = prune.METHODS[method].dense_state
    path = checkpoints.checkpoint_path(method, 0.0 if shared else sparsity, cfg, seed)
    claim = files.claim(path.with_suffix(".claim"))
    if claim is None:
        return
    state = checkpoints.verify(cfg, method, sparsity, seed)
    if state == "ok":  # another worker made it meanwhile
        claim.close()
        return
    if state == "corrupt":  # damaged: kept aside for a look, made again
        path = checkpoints.checkpoint_path(method, sparsity, cfg, seed)
        if evidence.committed(path) and not evidence.replacing_allowed():
            claim.close()
            print(f"  {path} does not match its sha256 in the manifest; it is committed: git checkout -- {path}")
            return
        path.replace(path.with_name(path.name + ".corrupt"))
        print(f"  {path} does not match its sha256 in the manifest: moved to {path.name}.corrupt, making it again")
    t = time.time()
    try:
        build(method, sparsity, cfg, seed)
    except OffTarget as e:  # reported, the others go on
        print(f"  OFF-TARGET {e}", flush=True)
        return
    finally:
        claim.close()
    e = checkpoints.entry(cfg, method, sparsity, seed)
    print(
        f"  {method:<12} {sparsity:<5g} seed {seed}: {time.time() - t:7.1f} s  top1 {e['top1']:.3f}  "
        f"sparsity {e['achieved_sparsity']:.3f}",
        flush=True,
    )
