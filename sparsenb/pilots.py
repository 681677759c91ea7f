"""Regime pilots: which knobs of the scaled model put upstream pruning where ImageNet has it?

A pilot is the base profile plus overrides (classes, images per class, width, D, ...) from
`params/pilots/regime.yaml`; its models (one seed of dense, the controls, GMP / WoodFisher / AC/DC
at 90%) are built by the ordinary upstream code into a checkpoint root of their own,
outputs/upstream/pilots/<name>/ (never the reference set's). Only the upstream VALIDATION split is
read to compare pilots; downstream results are never looked at.

    pilots.run()                 # build what is missing (resumable; two shells = two cores)
    pilots.table()               # one row per pilot: knobs, val top-1 per model, gaps, core-seconds
"""

from __future__ import annotations

from pathlib import Path

from . import checkpoints, config, files, paths, prune
from . import upstream as up
from .config import ROOT, Config
from .errors import ConfigError

SPEC = ROOT / "params" / "pilots" / "regime.yaml"


def load(path: Path = SPEC) -> dict:
    """The pilot spec, checked: every pilot's overrides make a valid config (one error naming it)."""
    spec = config.read_yaml(path)
    missing = {"base", "seed", "models", "common", "pilots", "target", "cap_core_hours"} - set(spec)
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(sorted(missing))}")
    for name in spec["pilots"]:
        config_of(spec, name)
    return spec


def overrides_of(spec: dict, name: str) -> dict:
    """The dotted overrides of pilot `name` (common first, then its own, then its checkpoint root)."""
    flat = {}
    own = {k: v for k, v in spec["pilots"][name].items() if k != "skip"}
    for key, value in {**spec["common"], **own}.items():
        if isinstance(value, dict):  # {mini_data.upstream: {classes: 32}} -> mini_data.upstream.classes
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return {**flat, "checkpoint_root": f"outputs/upstream/pilots/{name}"}


def config_of(spec: dict, name: str) -> Config:
    if name not in spec["pilots"]:
        raise ConfigError(f"no pilot {name!r}; the pilots: {', '.join(spec['pilots'])}")
    return config.load(spec["base"], overrides_of(spec, name))


def models(spec: dict, name: str | None = None) -> list[tuple[str, float, int]]:
    """The models of pilot `name` (all of `models` but those it skips), as (method, sparsity, seed)."""
    skip = set(spec["pilots"][name].get("skip", [])) if name else set()
    return [(m, float(s) if prune.is_sparse(m) else 0.0, int(spec["seed"])) for m, s in spec["models"] if m not in skip]


def run(names: list[str] | None = None, spec: dict | None = None) -> None:
    """Build every pilot's models that are missing, pilot by pilot, each model claimed first so that
    a second shell takes the next one (upstream.build_all)."""
    spec = spec or load()
    for name in names or list(spec["pilots"]):
        print(f"== pilot {name}: {overrides_of(spec, name)}", flush=True)
        up.build_all(config_of(spec, name), models(spec, name))


def _knobs(cfg: Config) -> dict:
    d = cfg["mini_data"]["upstream"]
    return {
        "arch": cfg["arch"],
        "classes": d["classes"],
        "train_per_class": d["train_per_class"],
        "D": cfg["upstream"]["D"],
    }


def row(spec: dict, name: str) -> dict:
    """One pilot: its knobs, val (and test) top-1 of each model present, each sparse model minus
    its matched control in points, WoodFisher minus GMP, and the core-seconds its models took."""
    cfg = config_of(spec, name)
    man = checkpoints.read_manifest(cfg)
    out = {"pilot": name, **_knobs(cfg), "models": 0, "core_seconds": 0.0}
    val = {}
    for m, s, seed in models(spec, name):
        hit = man[(man.method == m) & ((man.sparsity - s).abs() < 1e-9) & (man.seed == seed)]
        if checkpoints.verify(cfg, m, s, seed) != "ok" or hit.empty:
            continue
        key = f"{m}_{s:g}" if prune.is_sparse(m) else m
        val[m] = 100 * float(hit.val_top1.iloc[0])
        out[f"val_{key}"] = round(val[m], 2)
        out[f"test_{key}"] = round(100 * float(hit.top1.iloc[0]), 2)
        out["models"] += 1
        out["core_seconds"] += float(hit.seconds.iloc[0])
    for m, s, _ in models(spec, name):
        control = prune.control_of(m)
        if prune.is_sparse(m) and m in val and control in val:
            out[f"gap_{m}_{s:g}"] = round(val[m] - val[control], 2)
    if "gmp" in val and "woodfisher" in val:
        out["woodfisher_minus_gmp"] = round(val["woodfisher"] - val["gmp"], 2)
    if "dense_2x_scratch" in val:
        out["plateau_gain"] = round(val["dense_2x_scratch"] - val["dense"], 2)
    return out


def _same(r: dict) -> dict:
    return {k: r[k] for k in ("arch", "classes", "train_per_class", "D")}


def in_target(r: dict, spec: dict) -> tuple[bool | None, float]:
    """Whether a pilot's row meets the target (None while a number it needs is missing), and its
    distance to it: the points by which its gaps and its plateau gain fall outside the ranges."""
    t, dist, known = spec["target"], 0.0, True
    for m in t["methods"]:
        for s, (lo, hi) in t["gap"].items():
            key = f"gap_{m}_{float(s):g}"
            if key in r and r[key] == r[key]:
                dist += max(lo - r[key], 0.0, r[key] - hi)
            elif any(mm == m and abs(float(ss) - float(s)) < 1e-9 for mm, ss in spec["models"]):
                known = False
    gain = r.get("plateau_gain")
    if gain is None or gain != gain:
        known = False
    else:
        dist += max(gain - t["plateau_gain_max"], 0.0)
    return (dist == 0.0 if known else None), round(dist, 2)


def table(spec: dict | None = None, out: Path | None = None):
    """Every pilot's row (with `meets_target` and `distance`), written to
    outputs/upstream/regime_pilots.csv (or `out`); returns the DataFrame."""
    import pandas as pd

    spec = spec or load()
    rows = [row(spec, name) for name in spec["pilots"]]
    for r in rows:  # no 2D model of its own: dense of the pilot with the same knobs at twice its D
        twice = [o for o in rows if {**_same(o), "D": o["D"] / 2} == _same(r) and "val_dense" in o]
        if "plateau_gain" not in r and twice and "val_dense" in r:
            r["plateau_gain"] = round(twice[0]["val_dense"] - r["val_dense"], 2)
            r["plateau_from"] = twice[0]["pilot"]
        r["meets_target"], r["distance"] = in_target(r, spec)
    df = pd.DataFrame(rows)
    out = out or paths.outputs() / "upstream" / "regime_pilots.csv"
    files.write_csv(out, df)
    print(f"{df.core_seconds.sum() / 3600:.2f} of {spec['cap_core_hours']} core-hours spent; {out}")
    return df
