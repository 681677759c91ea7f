"""How long a finetuning run will take, known before it starts: from this repo's records of full
finetuning in the same profile (median seconds per epoch x the run's epochs), else for the paper
profile from the measured training throughput (`python -m sparsenb bench train`, Table 2's image
counts), else for the mini profile from a few training steps timed here. A run planned for over an
hour prints its plan before any work (`announce`); `sweep --plan` sums the same estimates.

    secs, how = planning.run_seconds("03_full_ft", cfg, run)   # (None, why) when nothing is known
"""

from __future__ import annotations

import functools
import json
import time
from statistics import median

from . import data, paths, profiles, results
from .progress import log

HOUR = 3600.0
NO_THROUGHPUT = (
    "no throughput known: measure it on the device that will run them with `python -m sparsenb bench train` "
    "(or run one of them: its record's time is then used)"
)


def throughput() -> dict | None:
    """The latest `bench train` result (images/s of ResNet50 full finetuning, fp32 and tuned)."""
    path = paths.outputs() / "bench" / "train.jsonl"
    if not path.exists():
        return None
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    full = [b for b in lines if not b.get("quick") and not str(b.get("device", "")).startswith("cpu")]
    return (full or lines or [None])[-1]  # the latest full-size GPU measurement, else the latest


def per_epoch(notebook: str = "03_full_ft") -> dict:
    """{profile: (median seconds per epoch, number of records)} of a finetuning notebook's records
    (linear: its wall time over its head's epochs -- mostly the features, extracted once, so it only
    scales runs of the same epochs; a plan from it was within 1.3x of the study's 18 minutes, where
    timing steps here gave 20-35x)."""
    recs = results.load(notebook) if notebook in ("02_linear_ft", "03_full_ft") else []
    if not len(recs) or not {"profile", "wall_seconds", "config"} <= set(recs):
        return {}
    recs = recs.dropna(subset=["wall_seconds"])
    epochs = recs.config.map(lambda c: ((c or {}).get("hp") or {}).get("epochs") or 0)
    recs = recs.assign(per=recs.wall_seconds / epochs.where(epochs > 0))
    return {prof: (float(median(g.per.dropna())), len(g)) for prof, g in recs.groupby("profile") if g.per.notna().any()}


def run_seconds(notebook: str, cfg, run: dict, bench=False, medians=None) -> tuple[float | None, str]:
    """(planned seconds, where the estimate comes from) of one run of 02_linear_ft / 03_full_ft with
    run configuration `run`; (None, why) when nothing is known. `bench` / `medians`: reuse them."""
    epochs, prof = int(run["hp"]["epochs"]), run["profile"]
    medians = per_epoch(notebook) if medians is None else medians
    if prof in medians:
        secs, n = medians[prof]
        return secs * epochs, f"{notebook}: median {secs:.2f} s per epoch of {n} records"
    n_train, n_eval = sizes(cfg, run["dataset"])
    linear = run["finetune"] == "linear"
    if prof == "paper":
        bench = throughput() if bench is False else bench
        if not bench:
            return None, f"{notebook}: {NO_THROUGHPUT}"
        img_s = max(bench["img_per_s"].values())
        if linear:  # features once (forward only, ~3x faster); the head's epochs are negligible
            return (n_train + n_eval) / (3 * img_s), f"{notebook}: bench train on {bench['device']} ({img_s:.0f} img/s)"
        secs = epochs * (n_train / img_s + n_eval / (3 * img_s))
        return secs, f"{notebook}: bench train on {bench['device']} ({img_s:.0f} img/s)"
    batch = int(run["hp"]["batch_size"])
    step, head = _timed(cfg["arch"], cfg["image_size"], batch)
    if linear:
        secs = (n_train + n_eval) * step / 3 + epochs * -(-n_train // batch) * head
    else:
        secs = epochs * (n_train * step + n_eval * step / 3)
    return secs, f"{notebook}: {1000 * step:.2f} ms per training image, timed here"


def sizes(cfg, dataset: str) -> tuple[int, int]:
    """(training images, images evaluated per epoch) of a dataset: Table 2's counts (paper), the
    profile's sizes (mini)."""
    meta = data.info(dataset)
    if meta.train_test:
        return meta.train_test
    md = cfg["mini_data"]
    if dataset == "digits":  # scikit-learn's 1,797 scans, split by fractions
        held = md["digits"]["test_fraction"] + md["digits"]["val_fraction"]
        return round(1797 * (1 - held)), round(1797 * held)
    s = md["upstream"] if dataset == "upstream" else md["tasks"][dataset]
    return s["train_per_class"] * meta.num_classes, (s["val_per_class"] + s["test_per_class"]) * meta.num_classes


@functools.lru_cache(maxsize=None)
def _timed(arch: str, image_size: int, batch_of: int, classes: int = 10) -> tuple[float, float]:
    """(seconds per training image of `arch`, seconds per step of a linear head), from a few steps
    on random data here at batch <= 16 (a bound: larger batches are faster per image; the run's
    random state is left as it was)."""
    import torch

    from . import models

    batch = min(batch_of, 16)
    with torch.random.fork_rng(devices=[]):
        model = models.build(arch, classes)
        head = torch.nn.Linear(models.feature_dim(model), classes)
        y = torch.randint(0, classes, (batch,))
        full = _step_seconds(model, torch.randn(batch, 3, image_size, image_size), y)
        return full / batch, _step_seconds(head, torch.randn(batch, head.in_features), y) * batch_of / batch


def _step_seconds(model, x, y) -> float:
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.0)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    times = []
    for _ in range(5):  # the fastest of five: the first steps of a process pay its start-up
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return min(times)


def announce(notebook: str, cfg, run: dict | None, epochs_given: bool = True, limit: float = HOUR) -> float | None:
    """Before a finetuning run's work: its plan, printed when it is planned for over `limit` seconds
    (what runs, how much, the estimate and where it comes from). Returns the planned seconds. A mini
    run at the profile's own epochs (`epochs_given` false) with no records to go by is not timed: the
    profile is sized for a laptop, and timing costs a second."""
    if not run or "finetune" not in run:
        return None
    profile = profiles.of(cfg)
    if profile.laptop_sized and not epochs_given and profile.name not in per_epoch():
        return None
    secs, how = run_seconds(notebook, cfg, run)
    if secs is not None and secs > limit:
        n_train, n_eval = sizes(cfg, run["dataset"])
        log(
            f"plan: {notebook} {run['method']} {run['sparsity']:.0%} on {run['dataset']}: {run['hp']['epochs']} "
            f"epochs over {n_train:,} training images ({n_eval:,} evaluated), planned ~{secs / HOUR:.1f} h "
            f"({how}); not what you meant? interrupt it and pass a smaller -p epochs"
        )
    return secs


def runnable(cfg, method: str, sparsity: float) -> bool:
    """Whether a paper-profile run of (method, sparsity) can run: its checkpoint is under
    checkpoint_root, or the paper released one (its published results have the pair; GMP's were
    never released)."""
    from . import upstream

    key = (method, float(sparsity))
    return key in released(cfg["arch"]) or key in set(upstream.available(cfg))


@functools.lru_cache(maxsize=None)
def released(arch: str) -> frozenset:
    """(method, sparsity) of every checkpoint of `arch` the paper released."""
    from .published import load_published

    pub = load_published()
    pub = pub[pub.arch == arch]
    return frozenset(zip(pub.method, pub.sparsity.astype(float)))
