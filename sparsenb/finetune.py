"""One downstream run of the study, as notebooks 02, 03 and 06 call it, from its run spec
(`sparsenb.specs`, built by `runs.setup`):

    cfg, spec = runs.setup("02_linear_ft", method="acdc", sparsity=0.9)
    res = finetune.linear(spec)        # Sec. 3.3
    res = finetune.full(spec)          # Sec. 3.4 (a 03_full_ft spec)
    cfg, cell = runs.setup_cell("02_linear_ft", method="acdc", upstream_seed="0,1,2")
    recs = finetune.cell(cell, finetune.linear)  # its runs in this process, each recorded as it lands

The upstream model comes from `upstream.load` (mini: the reference set, never trained here; paper:
the published checkpoint), the data from `data.get`, every hyperparameter from the spec and its
configuration. Returns the metrics of the run (best and final accuracy in the dataset's Table-2
metric, the per-epoch curve, ...).
"""

from __future__ import annotations

import time

from . import checkpoints, data, devices, features, metrics, models, profiles, prune, results, train, upstream
from .data.prepare import beton_for
from .errors import UserError
from .specs import FinetuneSpec, ScratchSpec, Spec, splits


def _split(spec: Spec, split: str):
    return data.get(spec.dataset, spec.cfg["data_root"], split, cfg=spec.cfg)


def bicubic(spec: Spec) -> bool:
    """RigL's checkpoints were made with bicubic resizing (paper profile)."""
    return profiles.of(spec.cfg).bicubic(getattr(spec, "method", prune.DENSE))


def loader(spec: Spec, split: str, mean, std, batch_size: int, device=None, backend: str = "", ds=None):
    """THE loader of a run's split (`ds`: the split, when already read): "train" random resized
    crop + flip (shuffled, seeded by the run's seed), any other split the evaluation transform; the
    backend (default the configuration's), workers and evaluation order of the run's configuration,
    the .beton where the backend reads one."""
    cfg, train_split, backend = spec.cfg, split == "train", backend or spec.cfg["backend"]
    ds = ds if ds is not None else _split(spec, split)
    return data.loader(
        ds,
        "train" if train_split else "eval",
        cfg["image_size"],
        mean,
        std,
        batch_size,
        shuffle=train_split,
        backend=backend,
        beton=beton_for(ds, spec.dataset, split, cfg) if backend == "ffcv" else None,
        num_workers=cfg["num_workers"],
        seed=spec.seed if train_split else 0,
        scale=cfg["full"]["random_resized_crop_scale"],
        bicubic=bicubic(spec),
        device=device,  # ffcv: batches decoded on the host, normalised on the GPU
        order=cfg["eval_transform"],
    )


def upstream_model(spec: FinetuneSpec, device=None):
    """The run's upstream model (loaded, its sparsity checked against its label) and its info, with
    `sha256`: the manifest's digest of the file it was read from (the record keeps it, and a record
    whose model has changed since is stale: summary, sweep)."""
    model, up = upstream.load(spec.method, spec.sparsity, spec.cfg, spec.upstream_seed, device)
    checkpoints.check_sparsity(model, spec.cfg, spec.method, spec.sparsity, spec.upstream_seed)
    made = profiles.of(spec.cfg).makes_upstream
    row = checkpoints.entry(spec.cfg, spec.method, spec.sparsity, spec.upstream_seed) if made else None
    return model, {**up, "sha256": row["sha256"] if row else None}


def linear_inputs(spec: FinetuneSpec, device=None):
    """What linear finetuning trains on: (backbone, upstream info, evaluation transform, {split:
    (features, labels)}, seconds) -- the frozen backbone in eval mode over every split, features
    cached; 02_linear_ft and 08's robustness runs share it."""
    cfg = spec.cfg
    model, up = upstream_model(spec, device)
    tf = data.transforms.evaluation(
        cfg["image_size"], *upstream.norm_stats(cfg), bicubic=bicubic(spec), order=cfg["eval_transform"]
    )
    t0 = time.time()
    feats = {
        s: features.extract_features(
            model,
            _split(spec, s),
            tf,
            cfg["feature_cache"],
            batch_size=cfg["eval_batch_size"],
            precision=cfg["precision"],
            num_workers=cfg["num_workers"],
            device=device,
            desc=f"features {s}",
        )
        for s in splits(cfg)
    }
    return model, up, tf, feats, time.time() - t0


@devices.one_cpu_thread
def linear(spec: FinetuneSpec, device=None) -> dict:
    """Linear finetuning: features of the frozen backbone (eval mode, resize + centre crop, upstream
    mean/std; bicubic for RigL on the paper profile), cached; a dense linear head trained by SGD."""
    device = device or spec.device
    meta = data.info(spec.dataset)
    _, up, _, feats, feature_seconds = linear_inputs(spec, device)
    (xtr, ytr), (xte, yte) = feats["train"], feats["test"]
    res = train.linear_finetune(
        xtr, ytr, xte, yte, meta.num_classes, spec.hp, meta.metric, spec.seed, device, val=feats.get("val")
    )
    res.pop("head")
    return {
        "metric": meta.metric,
        **res,
        "report": spec.cfg["report"],
        "feature_seconds": feature_seconds,
        "feature_dim": int(xtr.shape[1]),
        "upstream_top1": up.get("top1"),
        "upstream_sha256": up["sha256"],
        "train_size": len(ytr),
        "test_size": len(yte),
        "val_size": len(feats["val"][1]) if "val" in feats else 0,
    }


@devices.one_cpu_thread
def full(spec: FinetuneSpec, device=None) -> dict:
    """Full finetuning: a new dense head, every unpruned weight and BN trains, the zero set fixed;
    RandomResizedCrop + flip with the dataset's own mean/std (`full_norm`); lr per dataset from the
    profile. The official path (IST-DASLab/sparse-imagenet-transfer policies/manager.py:109-113,
    214-235, policies/trainers.py:105-137) checked fact by fact in tests/test_conformance.py."""
    cfg, device = spec.cfg, device or spec.device
    meta = data.info(spec.dataset)
    model, up = upstream_model(spec, device)
    devices.seed_everything(spec.seed)  # the new head's initialisation is part of the run
    head = models.replace_head(model, meta.num_classes)
    hp, ds = dict(spec.hp), {s: _split(spec, s) for s in splits(cfg)}
    mean, std = full_norm(hp, spec.dataset, ds["train"])
    hp["lr"] = hp["lr_overrides"].get(spec.dataset, hp["lr"])
    loaders = {s: loader(spec, s, mean, std, hp["batch_size"], device, ds=ds[s]) for s in splits(cfg)}
    res = train.full_finetune(
        model,
        loaders["train"],
        loaders["test"],
        hp,
        meta.metric,
        spec.seed,
        device,
        val_loader=loaders.get("val"),
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
        "upstream_sha256": up["sha256"],
        "sparsity_before_head": head["sparsity_before"],
        "train_size": len(ds["train"]),
        "test_size": len(ds["test"]),
    }


def cell(cell_specs: list[FinetuneSpec], run, started: float | None = None) -> list[dict]:
    """The runs of a cell (`runs.setup_cell`) one after another in this process, `run` (`linear` or
    `full`) each; each is recorded as it lands -- the record a single run of it writes -- so a cell
    killed midway keeps its finished runs. `started`: when the first began (its setup included).
    Returns the records, a line printed for each."""
    out = []
    for spec in cell_specs:
        t0 = started if started and not out else time.time()
        rec = results.record(spec, run(spec), started=t0)
        print(summary_line(rec), flush=True)
        out.append(rec)
    return out


def summary_line(rec: dict) -> str:
    """One finished run in a line: what ran, its reported accuracy and where it came from, its time and id."""
    return (
        f"{rec['method']} {rec['sparsity']:.0%} (upstream seed {rec['config']['upstream_seed']}) on {rec['dataset']}: "
        f"reported {rec['reported']:.4f} (epoch {rec['reported_epoch']}, chosen on validation where there is one), "
        f"best {rec['best']:.4f}, final {rec['final']:.4f} ({rec['metric']}), {rec['wall_seconds']:.0f} s, "
        f"run {rec['run_id']}"
    )


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


@devices.one_cpu_thread
def scratch_gmp(spec: ScratchSpec, device=None) -> dict:
    """The baseline the paper argues against (Sec. 3.1, App. A): no upstream model -- train the
    architecture from random initialisation on the downstream task, pruning it with GMP to
    `sparsity` along the way (hyperparameters: profile section `scratch`)."""
    cfg, device, hp = spec.cfg, device or spec.device, spec.hp
    meta = data.info(spec.dataset)
    devices.seed_everything(spec.seed)
    model = models.build(cfg["arch"], meta.num_classes)
    tr = _split(spec, "train")
    mean, std = data.transforms.channel_stats(tr)
    train_loader = loader(spec, "train", mean, std, hp["batch_size"], device, ds=tr)
    test_loader = loader(spec, "test", mean, std, cfg["eval_batch_size"], device)
    sp = spec.sparsity
    method = prune.make("gmp", sp, 1, **hp["gmp"]) if sp else prune.make("dense", 0, 1)
    opt = {"lr": hp["lr"], "nesterov": False, **{k: spec.optimizer[k] for k in ("momentum", "weight_decay")}}
    info = train.fit(model, method, train_loader, hp["epochs"], opt, device, desc=f"scratch+gmp {sp:g} {spec.dataset}")
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
