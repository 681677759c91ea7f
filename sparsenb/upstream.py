"""Upstream models. Mini profile: train the dense model on the generated upstream task and prune it
with one of our implementations of the paper's methods, cached as checkpoints in the same (IST)
format the paper profile loads. Paper profile: the published checkpoint of (method, sparsity).

    model, info = upstream.get("acdc", 0.9, cfg)      # trains (or loads from the cache) and evaluates
    upstream.checkpoint_path("acdc", 0.9, cfg)
"""
from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn

from . import data, masks, models, prune, train
from .config import check_choice
from .progress import bar, log

METHODS = tuple(prune.METHODS)


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


def loaders(cfg, seed: int = 0):
    """(train, {"val": ..., "test": ...}) loaders of the mini upstream task, the recipe's augmentation."""
    mean, std = norm_stats(cfg)
    up = cfg["upstream"]
    size = cfg["image_size"]
    split = {s: data.get("upstream", cfg["data_root"], s, cfg=cfg) for s in ("train", "val", "test")}
    train_loader = data.loader(split["train"], "train", size, mean, std, up["optimizer"]["batch_size"], shuffle=True,
                               seed=seed, drop_last=True, scale=up["crop_scale"])
    return train_loader, {s: data.loader(split[s], "eval", size, mean, std, up["eval_batch_size"]) for s in ("val", "test")}


# --- the recipe: one optimizer and schedule for every method, budgets as multiples of D ----------

def budget(method: str, cfg, D: float | None = None) -> tuple[float, float]:
    """(epochs of the method's own run, total epochs from random initialisation) for `method`:
    own = budget * D; a method that starts from the dense model adds the dense model's D."""
    check_choice("method", method, METHODS)
    up = cfg["upstream"]
    D = float(up["D"] if D is None else D)
    hp = up["methods"][method]
    if method == "lth_t":                        # no training of its own beyond the IMP rounds
        return 0.0, D
    own = float(hp["budget"]) * D
    return own, own + (D if prune.METHODS[method].from_dense else 0.0)


def method_hp(method: str, cfg) -> dict:
    """The method's hyperparameters from params, without the budget."""
    return {k: v for k, v in cfg["upstream"]["methods"][method].items() if k != "budget"}


def fit(model: nn.Module, method: prune.Method, train_loader, epochs: float, opt: dict, device=None,
        evals: dict | None = None, desc: str = "", grad_clip: float | None = None) -> dict:
    """Train for `epochs` (may be fractional) with SGD (`opt`: lr, momentum, nesterov, weight_decay)
    and a cosine learning rate to zero over the run, calling the method's hooks around every step;
    ends with method.finish(), then top-1 on each loader of `evals` ({"val": ..., "test": ...}).

    `grad_clip` bounds the gradient norm (after the method masked it). It is part of the one recipe
    (dense included) because weights coming back to life (AC/DC's decompressed phases, RigL's growth)
    behind BatchNorm get huge gradients in very sparse layers; convergence.csv shows its effect on
    dense training."""
    device = device or train.default_device()
    model.to(device).to(memory_format=torch.channels_last)
    steps_per_epoch = len(train_loader)
    total = max(1, int(round(epochs * steps_per_epoch)))
    method.total_steps, method.steps_per_epoch = total, steps_per_epoch
    method.prepare(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=opt["lr"], momentum=opt["momentum"],
                                weight_decay=opt["weight_decay"], nesterov=opt["nesterov"])
    method.start(model, optimizer)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    loss_fn = nn.CrossEntropyLoss()
    step, t0, curve = 0, time.time(), []
    model.train()
    while step < total:
        running, n = torch.zeros((), device=device), 0
        for x, y in bar(train_loader, desc=desc):
            if step >= total:
                break
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(x), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            method.after_backward(step)
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            method.after_step(step)
            sched.step()
            step += 1
            running += loss.detach() * len(y)
            n += len(y)
        row = {"epoch": round(step / steps_per_epoch, 2), "loss": float(running) / max(n, 1)}
        if method.name != "dense" and method.family != "control":
            row["sparsity"] = prune.target_sparsity(model)
        curve.append(row)
        log(f"{desc} epoch {row['epoch']:.2f}/{epochs:g}  loss {row['loss']:.3f}"
            + (f"  sparsity {row['sparsity']:.3f}" if "sparsity" in row else "") + f"  ({time.time() - t0:.0f} s)")
    method.finish()
    out = {"steps": total, "epochs": epochs, "seconds": time.time() - t0, "curve": curve,
           "sparsity": prune.target_sparsity(model)}
    for name, loader in (evals or {}).items():
        out[f"{name}_top1"] = train.evaluate(model, loader, "top1", device)
    if "test_top1" in out:
        out["top1"] = out["test_top1"]
    return out


# --- checkpoints: the shipped reference set (mini) and the published ones (paper) ---------------

RECIPE_VERSION = 3      # bump when a method's code changes what it produces: part of every recipe key


def recipe_key(cfg, method: str) -> str:
    """Hash of everything that makes the mini upstream model of `method`: arch, data, the shared
    recipe, D, the method's hyperparameters (and those of dense where it starts from dense)."""
    up = cfg["upstream"]
    relevant = {"arch": cfg["arch"], "data": cfg["mini_data"]["upstream"], "seed_data": cfg["mini_data"]["seed"],
                "image_size": cfg["image_size"], "optimizer": up["optimizer"], "crop_scale": up["crop_scale"],
                "grad_clip": up["grad_clip"], "D": up["D"], "method": up["methods"][method],
                "v": RECIPE_VERSION, "generator": data.mini.GENERATOR_VERSION}
    if prune.METHODS[method].from_dense:
        relevant["dense"] = up["methods"]["dense"]
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:10]


def checkpoint_path(method: str, sparsity: float, cfg, seed: int = 0) -> Path:
    """Mini: <checkpoint_root>/<method>/s<sparsity>-seed<seed>.pth (listed in manifest.csv);
    paper: <checkpoint_root>/<method>/<sparsity>.pth (the published checkpoints, placed by hand)."""
    check_choice("method", method, METHODS)
    root = Path(cfg["checkpoint_root"])
    if cfg["profile"] == "paper":
        return root / method / f"{sparsity:g}.pth"
    return root / method / f"s{sparsity:g}-seed{seed}.pth"


def manifest_path(cfg) -> Path:
    return Path(cfg["checkpoint_root"]) / "manifest.csv"


MANIFEST_COLUMNS = ["path", "sha256", "method", "sparsity", "seed", "top1", "epochs", "val_top1",
                    "achieved_sparsity", "recipe", "seconds", "built_on"]


def machine() -> str:
    """Where a model is trained (the same recipe gives other bits on another device or library)."""
    import platform

    if torch.cuda.is_available():
        where = f"cuda {torch.cuda.get_device_name(0)}"
    else:
        flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
        where = f"cpu {platform.machine()} {'avx512' if 'avx512f' in flags else 'avx2' if 'avx2' in flags else ''}"
    return f"{where}, torch {torch.__version__.split('+')[0]}, {torch.get_num_threads()} threads"


def read_manifest(cfg) -> "pd.DataFrame":
    import pandas as pd

    p = manifest_path(cfg)
    return pd.read_csv(p) if p.exists() else pd.DataFrame(columns=MANIFEST_COLUMNS)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock beside `path`: parallel runs that need the same model wait for the first to
    make it, and manifest updates never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _register(cfg, path: Path, method: str, sparsity: float, seed: int, info: dict) -> None:
    import pandas as pd

    root = Path(cfg["checkpoint_root"])
    row = {"path": str(path.relative_to(root)), "sha256": sha256(path), "method": method, "sparsity": float(sparsity),
           "seed": int(seed), "top1": info.get("test_top1"), "epochs": budget(method, cfg)[1],
           "val_top1": info.get("val_top1"), "achieved_sparsity": info.get("sparsity"),
           "recipe": recipe_key(cfg, method), "seconds": round(float(info.get("seconds", 0.0)), 1),
           "built_on": machine()}
    with _locked(manifest_path(cfg)):
        df = read_manifest(cfg)
        df = pd.concat([df[df.path != row["path"]], pd.DataFrame([row])], ignore_index=True)
        df = df.sort_values(["method", "sparsity", "seed"]).reset_index(drop=True)
        tmp = manifest_path(cfg).with_suffix(".csv.tmp")
        df.to_csv(tmp, index=False, float_format="%.6g")
        tmp.replace(manifest_path(cfg))


def _save(model, cfg, method, sparsity, seed, info) -> Path:
    path = checkpoint_path(method, sparsity, cfg, seed)
    models.save_checkpoint(model, path, cfg["arch"], compact=True, method=method, sparsity=sparsity, seed=seed,
                           dataset="mini-upstream", top1=info.get("test_top1"), recipe=recipe_key(cfg, method))
    path.with_suffix(".json").write_text(json.dumps({"method": method, "sparsity": sparsity, "seed": seed,
                                                     "recipe": recipe_key(cfg, method), **info},
                                                    indent=1, default=float))
    _register(cfg, path, method, sparsity, seed, info)
    return path


def layers_figure(cfg, method: str, sparsity: float, seed: int = 0) -> Path:
    """Where 01_upstream puts a model's sparsity-per-layer figure: beside the mini checkpoints
    (`<checkpoint_root>/layers/`), under the outputs root for the paper profile (never into the
    user's checkpoint folder)."""
    from . import paths

    base = Path(cfg["checkpoint_root"]) if cfg["profile"] == "mini" else paths.outputs() / "upstream" / cfg["profile"]
    return base / "layers" / f"{method}-{sparsity:g}-seed{seed}.png"


def info_of(path: Path) -> dict:
    side = path.with_suffix(".json")
    return json.loads(side.read_text()) if side.exists() else {}


def entry(cfg, method: str, sparsity: float, seed: int) -> dict | None:
    """The manifest row of a mini checkpoint, or None."""
    root = Path(cfg["checkpoint_root"])
    rel = str(checkpoint_path(method, sparsity, cfg, seed).relative_to(root))
    df = read_manifest(cfg)
    rows = df[df.path == rel]
    return rows.iloc[0].to_dict() if len(rows) else None


def verify(cfg, method: str, sparsity: float, seed: int) -> str:
    """'ok' | 'missing' | 'stale' (made by another recipe: rebuild) | 'corrupt' (sha256 differs)."""
    path = checkpoint_path(method, sparsity, cfg, seed)
    e = entry(cfg, method, sparsity, seed)
    if e is None or not path.exists():
        return "missing"
    if e["recipe"] != recipe_key(cfg, method):
        return "stale"
    return "ok" if sha256(path) == e["sha256"] else "corrupt"


def get(method: str, sparsity: float, cfg, seed: int = 0, device=None) -> tuple[nn.Module, dict]:
    """The upstream model of (method, sparsity, seed). Paper: the published checkpoint. Mini: the
    shipped reference checkpoint when the manifest vouches for it (sha256 and recipe); otherwise it
    is made now with the profile's recipe, saved and added to the manifest."""
    check_choice("method", method, METHODS)
    path = checkpoint_path(method, sparsity, cfg, seed)
    if cfg["profile"] == "paper":
        return models.load_upstream(path, cfg["arch"]), info_of(path)
    if method in ("dense", "dense_5x"):
        sparsity = 0.0
        path = checkpoint_path(method, sparsity, cfg, seed)
    # one LTH-T trajectory makes every sparsity: one lock for all of them
    lock = checkpoint_path(method, 0.0, cfg, seed) if method == "lth_t" else path
    with _locked(lock):
        state = verify(cfg, method, sparsity, seed)
        if state == "corrupt":
            raise models.CheckpointError(f"{path} does not match its sha256 in {manifest_path(cfg)}: restore it "
                                         f"(git checkout -- {path}) or rebuild it (make upstream)")
        if state != "ok":
            if state == "stale":
                log(f"{path} was made with another recipe: making it again")
            _make(method, sparsity, cfg, seed, device)
    return models.load_upstream(path, cfg["arch"]), info_of(path)


def _make(method, sparsity, cfg, seed, device) -> None:
    if method == "lth_t":
        return _lth(cfg, seed, device)
    up = cfg["upstream"]
    own, _ = budget(method, cfg)
    train.seed_everything(seed)
    tr, evals = loaders(cfg, seed)
    m = prune.make(method, sparsity, 1, seed=seed, **method_hp(method, cfg))
    if m.from_dense:
        model, _ = get("dense", 0.0, cfg, seed, device)
        train.seed_everything(seed)
    else:
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
    if method == "woodfisher":
        m.grad_fn = _grad_fn(cfg, seed, int(m.param("fisher_batch")))
    info = fit(model, m, tr, own, up["optimizer"], device, evals, desc=f"{method} {sparsity:g} seed {seed}",
               grad_clip=up["grad_clip"])
    if method.startswith("rigl"):
        info["mask_changes"] = m.changed
    if method == "str":
        info["str_history"] = m.history
    _save(model, cfg, method, sparsity, seed, info)


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
        loss_fn(model(x.to(device).contiguous(memory_format=torch.channels_last)), y.to(device)).backward()
    return grad_fn


def _lth(cfg, seed, device) -> None:
    """One IMP trajectory gives the LTH-T checkpoints of every sparsity of this seed."""
    up = cfg["upstream"]
    dense, _ = get("dense", 0.0, cfg, seed, device)
    dense_state = {k: v.clone() for k, v in dense.state_dict().items()}
    tr, evals = loaders(cfg, seed)
    train.seed_everything(seed)
    t0 = time.time()
    method = prune.make("lth_t", 0.0, 1, **method_hp("lth_t", cfg))
    round_epochs = float(up["methods"]["lth_t"]["round_budget"]) * float(up["D"])

    def train_round(model, fixed, desc):
        fit(model, fixed, tr, round_epochs, up["optimizer"], device, desc=desc, grad_clip=up["grad_clip"])

    found = method.find_masks(dense, dense_state, train_round, sparsities_of(cfg, "lth_t", seed))
    for sparsity, mk in found.items():
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
        model.load_state_dict(dense_state)
        masks.apply(model, mk)                      # the mask on the dense weights, no retraining
        model.to(device or train.default_device())
        info = {"seconds": time.time() - t0, "sparsity": prune.target_sparsity(model), "epochs": 0.0,
                **{f"{k}_top1": train.evaluate(model, v, "top1", device) for k, v in evals.items()}}
        _save(model, cfg, "lth_t", sparsity, seed, info)


# --- the reference set --------------------------------------------------------------------------

def sparsities_of(cfg, method: str, seed: int) -> list[float]:
    """The sparsities the reference set has for (method, seed): every one of `sparsities` for the
    first seed, `seeds_sparsities` for the others; dense models at 0; structured at its own."""
    up = cfg["upstream"]
    if method in ("dense", "dense_5x"):
        return [0.0]
    if method == "structured":
        return list(up["structured_sparsities"]) if seed == up["seeds"][0] else []
    return [float(s) for s in cfg["sparsities"] if seed == up["seeds"][0] or s in up["seeds_sparsities"]]


def reference_set(cfg) -> list[tuple[str, float, int]]:
    """Every (method, sparsity, seed) of the mini reference checkpoints, in the order `make upstream`
    makes them (seed by seed, so that a finished seed is a usable set)."""
    return [(m, s, seed) for seed in cfg["upstream"]["seeds"] for m in METHODS for s in sparsities_of(cfg, m, seed)]


def epoch_seconds(cfg, steps: int = 12, device=None) -> float:
    """This machine's seconds per upstream epoch with the recipe's batch size, from timing `steps`
    SGD steps of the profile's arch on random images (after two warm-up steps)."""
    device = torch.device(device) if device else train.default_device()
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


def planned_seconds(cfg, epoch_seconds: float) -> dict[tuple[str, float, int], float]:
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
            own = rounds * cfg["upstream"]["methods"]["lth_t"]["round_budget"] * cfg["upstream"]["D"] / \
                len(sparsities_of(cfg, m, seed))
        out[(m, s, seed)] = own * epoch_seconds
    return out


# --- the dense budget D: measured ---------------------------------------------------------------

RUN_KEYS = ("epochs", "seed", "grad_clip", "lr", "weight_decay", "batch_size")


def choose_D(conv: "pd.DataFrame", tolerance: float, opt: dict | None = None) -> int:
    """The smallest budget whose mean validation top-1 (over seeds; runs of the recipe `opt`, with
    gradient clipping) is within `tolerance` of the best budget's. A pure function of the table."""
    rows = conv
    if "grad_clip" in rows:
        rows = rows[rows.grad_clip.notna()]
    if opt is not None and "lr" in rows:
        rows = rows[(rows.lr == opt["lr"]) & (rows.weight_decay == opt["weight_decay"]) &
                    (rows.batch_size == opt["batch_size"])]
    mean = rows.groupby("epochs")["val_top1"].mean()
    return int(min(e for e, v in mean.items() if v >= mean.max() - tolerance))


def convergence_runs(cfg) -> list[dict]:
    """The dense runs of the convergence study: the recipe at every budget of `convergence.epochs`
    (every seed up to `all_seeds_up_to` epochs, the first seed beyond), once without gradient
    clipping, and the recipe search (`convergence.search`: other lr / weight decay / batch size at
    one budget, first seed) that shows whether another shared recipe would converge sooner."""
    up = cfg["upstream"]
    conv, opt = up["convergence"], up["optimizer"]
    base = {"grad_clip": up["grad_clip"], "lr": opt["lr"], "weight_decay": opt["weight_decay"],
            "batch_size": opt["batch_size"]}
    seeds = conv["seeds"]
    runs = [dict(base, epochs=e, seed=s) for e in conv["epochs"]
            for s in (seeds if e <= conv["all_seeds_up_to"] else seeds[:1])]
    runs.append(dict(base, epochs=conv["all_seeds_up_to"], seed=seeds[0], grad_clip=None))
    search = conv.get("search") or {}
    for lr in search.get("lr", []):
        for wd in search.get("weight_decay", []):
            for bs in search.get("batch_size", []):
                runs.append(dict(base, epochs=search["epochs"], seed=seeds[0], lr=lr, weight_decay=wd, batch_size=bs))
    out, seen = [], set()
    for r in runs:
        key = tuple(r[k] for k in RUN_KEYS)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return sorted(out, key=lambda r: -r["epochs"] * 128 / r["batch_size"])     # longest first


def _same_run(df, r) -> bool:
    if not len(df) or not set(RUN_KEYS) <= set(df.columns):
        return False
    m = True
    for k in RUN_KEYS:
        m = m & (df[k].isna() if r[k] is None else df[k] == r[k])
    return bool(m.any())


def convergence(cfg, out_dir: Path, device=None) -> "pd.DataFrame":
    """Train every run of `convergence_runs` (each a full cosine run of its budget); val and test
    top-1 go to out_dir/convergence.csv. Resumable, and workers in parallel share the list."""
    def train_run(r):
        rcfg = copy.deepcopy(cfg)
        rcfg["upstream"]["optimizer"].update(lr=r["lr"], weight_decay=r["weight_decay"], batch_size=r["batch_size"])
        train.seed_everything(r["seed"])
        tr, evals = loaders(rcfg, r["seed"])
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
        info = fit(model, prune.make("dense", 0.0, 1), tr, r["epochs"], rcfg["upstream"]["optimizer"], device, evals,
                   desc=f"dense {r}", grad_clip=r["grad_clip"])
        return {**r, "top1": info["test_top1"], "val_top1": info["val_top1"], "seconds": round(info["seconds"], 1),
                "final_loss": info["curve"][-1]["loss"], "built_on": machine()}

    return _resumable_rows(out_dir / "convergence.csv", convergence_runs(cfg),
                           lambda r: "convergence-" + "-".join(str(r[k]) for k in RUN_KEYS), _same_run, train_run,
                           sort=["lr", "epochs", "seed"])


def str_calibration(cfg, out_dir: Path, device=None) -> "pd.DataFrame":
    """STR lands where its thresholds put it; `s_init` is STR's knob for where that is. Runs STR at
    its budget on the first upstream seed for each `s_init` of `upstream.methods.str.calibration`,
    recording the achieved sparsity (and, for the record only, top-1) in str_calibration.csv.
    `choose_s_init` then picks each target's s_init by achieved sparsity alone -- never by accuracy."""
    import pandas as pd

    up = cfg["upstream"]
    seed = up["seeds"][0]
    own, _ = budget("str", cfg)

    def train_run(s_init):
        train.seed_everything(seed)
        tr, evals = loaders(cfg, seed)
        model = models.build(cfg["arch"], cfg["mini_data"]["upstream"]["classes"])
        m = prune.make("str", 0.5, 1, s_init={0.5: s_init})
        info = fit(model, m, tr, own, up["optimizer"], device, evals, desc=f"str calibration s_init {s_init}",
                   grad_clip=up["grad_clip"])
        return {"s_init": s_init, "seed": seed, "epochs": own, "achieved_sparsity": info["sparsity"],
                "val_top1": info["val_top1"], "top1": info["test_top1"], "seconds": round(info["seconds"], 1)}

    return _resumable_rows(out_dir / "str_calibration.csv", up["methods"]["str"]["calibration"],
                           lambda s_init: f"str-calibration-{s_init}",
                           lambda done, s_init: bool(len(done)) and bool((done.s_init == s_init).any()), train_run,
                           sort=["s_init"])


def _resumable_rows(csv: Path, items, name_of, done_in, train_run, sort) -> "pd.DataFrame":
    """One CSV row per item, made by `train_run(item)`: items already in the CSV are skipped, an item
    another worker holds (a non-blocking claim) is left to it, and each new row is added under the
    CSV's lock with an atomic rewrite -- so a killed run loses no finished row and parallel
    workers share the list. Returns the CSV."""
    import pandas as pd

    csv.parent.mkdir(parents=True, exist_ok=True)
    read = lambda: pd.read_csv(csv) if csv.exists() else pd.DataFrame()     # noqa: E731
    for item in items:
        claim = _claim(csv.parent / f".{name_of(item)}")
        if claim is None:               # another worker is training this one
            continue
        try:
            with _locked(csv):
                if done_in(read(), item):
                    continue
            row = train_run(item)
            with _locked(csv):
                out = pd.concat([read(), pd.DataFrame([row])], ignore_index=True).sort_values(sort)
                tmp = csv.with_name(csv.name + ".tmp")
                out.to_csv(tmp, index=False, float_format="%.6g")
                tmp.replace(csv)
        finally:
            claim.close()
    return read()


def choose_s_init(calib: "pd.DataFrame", target: float) -> float:
    """The s_init whose achieved sparsity is nearest `target` on the logit scale, interpolated
    linearly between the two calibration runs around it (s_init -> logit(sparsity) is monotone)."""
    import numpy as np

    c = calib.sort_values("s_init")
    x, y = c.s_init.to_numpy(float), np.log(c.achieved_sparsity / (1 - c.achieved_sparsity)).to_numpy(float)
    t = np.log(target / (1 - target))
    order = np.argsort(y)
    return float(round(np.interp(t, y[order], x[order]), 2))


def _claim(path: Path):
    """A non-blocking exclusive lock on `<path>.lock` (an open file), or None when another process
    holds it. (The name is appended to, not suffix-replaced: `str-calibration--4.5` and `-4.0` are
    different claims.)"""
    f = open(path.with_name(path.name + ".lock"), "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return f
    except BlockingIOError:
        f.close()
        return None


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
    """One upstream result row of the mini profile: top-1 on the upstream validation and test splits,
    sparsity over the prunable layers, fully pruned filters, the training it took."""
    model, info = get(method, sparsity, cfg, seed, device)
    _, evals = loaders(cfg, seed)
    filt = masks.pruned_filters(model).iloc[-1]
    model.to(device or train.default_device())
    own, total = budget(method, cfg)
    return {"method": method, "sparsity": 0.0 if method in ("dense", "dense_5x") else sparsity, "seed": seed,
            "family": prune.family(method),
            **{f"{k}_top1" if k != "test" else "top1": train.evaluate(model, v, "top1", device) for k, v in evals.items()},
            "achieved_sparsity": prune.target_sparsity(model), "pruned_filters": float(filt["fraction"]),
            "epochs": total, "train_seconds": info.get("seconds"),
            "checkpoint": str(checkpoint_path(method, sparsity, cfg, seed))}


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
    """The upstream table in Table 3's shape: one row per (sparsity, method); accuracy columns in %
    as the mean over upstream seeds, with its standard error (`<col>_se`, NaN for one seed) and the
    number of seeds `n`."""
    import numpy as np

    cols = [c for c in ("top1", "val_top1", "imagenet_val", "imagenet_real", "imagenetv2_mean", "achieved_sparsity",
                        "pruned_filters", "epochs") if c in df.columns]
    g = df.groupby(["sparsity", "method"])
    t = g[cols].mean()
    n = g.size()
    for c in cols:
        if c in ("achieved_sparsity", "pruned_filters", "epochs"):
            continue
        se = g[c].std(ddof=1) / np.sqrt(n)
        t[c] = (100 * t[c]).round(1)
        t[f"{c}_se"] = (100 * se).round(1)
    t["n"] = n
    return t.round(3)


def available(cfg, seed: int = 0) -> list[tuple[str, float]]:
    """(method, sparsity) of every upstream checkpoint present: mini, those made with the current
    hyperparameters; paper, every <checkpoint_root>/<method>/<sparsity>.pth."""
    out = []
    sparsities = sorted(set(cfg.get("sparsities", [])) | set(cfg.get("upstream", {}).get("structured_sparsities", [])))
    for method in METHODS:
        candidates = [0.0] if method in ("dense", "dense_5x") else sparsities
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
        out["recipe"] = recipe_key(cfg, method)
    return out
