"""Checkpoints of upstream models: where each lives, the key of the recipe that made it, the
manifest that vouches for it (sha256, recipe, accuracy, where it was built), saving and verifying.

    checkpoints.checkpoint_path("acdc", 0.9, cfg, seed=1)   # mini: outputs/upstream/mini/acdc/s0.9-seed1.pth
    checkpoints.verify(cfg, "acdc", 0.9, 1)                 # "ok" | "missing" | "stale" | "corrupt"
    checkpoints.read_manifest(cfg)                          # manifest.csv as a DataFrame
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from . import devices, files, profiles, prune, weights
from .config import Config
from .data import mini
from .errors import check_choice

if TYPE_CHECKING:
    import pandas as pd


RECIPE_VERSION = 4  # bump when a method's code changes what it produces: part of every recipe key


def recipe_key(cfg: Config, method: str) -> str:
    """Hash of everything that makes the mini upstream model of `method`: arch, data, the shared
    recipe, D, the method's hyperparameters (and those of dense where it starts from dense)."""
    up = cfg["upstream"]
    relevant = {
        "arch": cfg["arch"],
        "data": cfg["mini_data"]["upstream"],
        "seed_data": cfg["mini_data"]["seed"],
        "image_size": cfg["image_size"],
        "optimizer": up["optimizer"],
        "crop_scale": up["crop_scale"],
        "grad_clip": up["grad_clip"],
        "D": up["D"],
        "method": up["methods"][method],
        "v": RECIPE_VERSION,
        "generator": mini.GENERATOR_VERSION,
    }
    follows = prune.METHODS[method].follows
    if follows:  # a control runs the schedule of the method it follows
        relevant["follows"] = up["methods"][follows]
    if prune.METHODS[method].from_dense:
        relevant["dense"] = up["methods"]["dense"]
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:10]


def checkpoint_path(method: str, sparsity: float, cfg: Config, seed: int = 0) -> Path:
    """Mini: <checkpoint_root>/<method>/s<sparsity>-seed<seed>.pth (listed in manifest.csv);
    paper: <checkpoint_root>/<method>/<sparsity>.pth (the published checkpoints, placed by hand)."""
    check_choice("method", method, prune.METHODS)
    return Path(cfg["checkpoint_root"]) / profiles.of(cfg).checkpoint_name(method, sparsity, seed)


def manifest_path(cfg: Config) -> Path:
    return Path(cfg["checkpoint_root"]) / "manifest.csv"


MANIFEST_COLUMNS = [
    "path",
    "sha256",
    "method",
    "sparsity",
    "seed",
    "top1",
    "epochs",
    "val_top1",
    "achieved_sparsity",
    "recipe",
    "seconds",
    "built_on",
]


def read_manifest(cfg: Config) -> "pd.DataFrame":
    import pandas as pd

    p = manifest_path(cfg)
    # keys as text: a recipe hash of digits only (e.g. 9382559432) must not be read as a number
    text = {"path": str, "sha256": str, "recipe": str, "method": str}
    return pd.read_csv(p, dtype=text) if p.exists() else pd.DataFrame(columns=MANIFEST_COLUMNS)


def register(cfg: Config, path: Path, method: str, sparsity: float, seed: int, info: dict, epochs: float) -> None:
    """Add (or replace) the manifest row of a mini checkpoint; `epochs`: total epochs from random
    initialisation that made it."""

    root = Path(cfg["checkpoint_root"])
    row = {
        "path": str(path.relative_to(root)),
        "sha256": files.sha256(path),
        "method": method,
        "sparsity": float(sparsity),
        "seed": int(seed),
        "top1": info.get("test_top1"),
        "epochs": float(epochs),
        "val_top1": info.get("val_top1"),
        "achieved_sparsity": info.get("sparsity"),
        "recipe": recipe_key(cfg, method),
        "seconds": round(float(info.get("seconds", 0.0)), 1),
        "built_on": devices.machine(),
    }
    _put_row(cfg, row)


def _put_row(cfg: Config, row: dict) -> None:
    """Add (or replace, by path) one manifest row, under the manifest's lock."""
    import pandas as pd

    with files.locked(manifest_path(cfg)):
        df = read_manifest(cfg)
        df = pd.concat([df[df.path != row["path"]], pd.DataFrame([row])], ignore_index=True)
        df = df.sort_values(["method", "sparsity", "seed"]).reset_index(drop=True)
        with files.atomic(manifest_path(cfg)) as tmp:
            df[MANIFEST_COLUMNS].to_csv(tmp, index=False, float_format="%.6g")


def save(model, cfg: Config, method: str, sparsity: float, seed: int, info: dict, epochs: float) -> Path:
    """Save a mini upstream model (compact IST format, a .json of its training beside it) and
    register it in the manifest."""
    path = checkpoint_path(method, sparsity, cfg, seed)
    weights.save_checkpoint(
        model,
        path,
        cfg["arch"],
        compact=True,
        method=method,
        sparsity=sparsity,
        seed=seed,
        dataset="mini-upstream",
        top1=info.get("test_top1"),
        recipe=recipe_key(cfg, method),
    )
    files.write_text(
        path.with_suffix(".json"),
        json.dumps(
            {"method": method, "sparsity": sparsity, "seed": seed, "recipe": recipe_key(cfg, method), **info},
            indent=1,
            default=float,
        ),
    )
    register(cfg, path, method, sparsity, seed, info, epochs)
    return path


def layers_figure(cfg: Config, method: str, sparsity: float, seed: int = 0) -> Path:
    """Where 01_upstream puts a model's sparsity-per-layer figure: beside the mini checkpoints
    (`<checkpoint_root>/layers/`), under the outputs root for the paper profile (never into the
    user's checkpoint folder)."""
    return profiles.of(cfg).figures_dir(cfg) / "layers" / f"{method}-{sparsity:g}-seed{seed}.png"


def info_of(path: Path) -> dict:
    side = path.with_suffix(".json")
    return json.loads(side.read_text()) if side.exists() else {}


def entry(cfg: Config, method: str, sparsity: float, seed: int) -> dict | None:
    """The manifest row of a mini checkpoint, or None."""
    root = Path(cfg["checkpoint_root"])
    rel = str(checkpoint_path(method, sparsity, cfg, seed).relative_to(root))
    df = read_manifest(cfg)
    rows = df[df.path == rel]
    return rows.iloc[0].to_dict() if len(rows) else None


SPARSITY_TOLERANCE = 0.015  # a model further than this from its nominal sparsity is not filed under it


def off_target(method: str, nominal: float, achieved) -> bool:
    """A sparse model whose achieved weight sparsity is more than 1.5 points from its nominal one
    (structured models are nominal in filters, not weights: not checked here)."""
    if not prune.is_sparse(method) or not prune.METHODS[method].weight_sparsity:
        return False
    return achieved is None or abs(float(achieved) - float(nominal)) > SPARSITY_TOLERANCE


def verify(cfg: Config, method: str, sparsity: float, seed: int) -> str:
    """'ok' | 'missing' | 'stale' (made by another recipe: rebuild) | 'corrupt' (sha256 differs) |
    'off-target' (achieved sparsity > 1.5 points from the nominal one: never pooled under it)."""
    path = checkpoint_path(method, sparsity, cfg, seed)
    e = entry(cfg, method, sparsity, seed)
    if e is None or not path.exists():
        return "missing"
    if e["recipe"] != recipe_key(cfg, method):
        return "stale"
    if files.sha256(path) != e["sha256"]:
        return "corrupt"
    return "off-target" if off_target(method, sparsity, e.get("achieved_sparsity")) else "ok"


def label(method: str, sparsity: float) -> float:
    """The sparsity a checkpoint of (method, sparsity) is filed under: 0 for the dense models and the
    dense controls (dense_5x, ...), else `sparsity` (paper: its file name, <method>/<sparsity>.pth)."""
    return float(sparsity) if prune.is_sparse(method) else 0.0


def check_sparsity(model, cfg: Config, method: str, sparsity: float, seed: int = 0) -> float:
    """The measured sparsity of an upstream model (its prunable layers, as records report it); a
    model more than 1.5 points from its label is refused with both numbers, so that no result is
    filed under a sparsity the model does not have. Published labels count the classifier or not
    (RigL's do): either way of counting may match."""
    measured, want = prune.target_sparsity(model), label(method, sparsity)
    if not prune.METHODS[method].weight_sparsity:  # structured: nominal in filters, not weights
        return measured
    with_head = prune.target_sparsity(model, include_head=True)
    if min(abs(measured - want), abs(with_head - want)) <= SPARSITY_TOLERANCE:
        return measured
    path = checkpoint_path(method, want, cfg, seed)
    fix = profiles.of(cfg).off_target_fix(method, want)
    raise weights.CheckpointError(
        f"{path} has sparsity {measured:.1%} (measured over its prunable layers; {with_head:.1%} with the "
        f"classifier) but is filed as {method} at "
        f"{want:.1%}: more than {100 * SPARSITY_TOLERANCE:g} points apart, refused; {fix}"
    )


def adopt(cfg: Config, source_root: str | Path, todo: list[tuple[str, float, int]]) -> list[str]:
    """Take into the reference set of `cfg` the models of `todo` it lacks that another checkpoint root
    (a pilot's) already holds made by the same recipe: each file checked against its own manifest's
    sha256 and recipe key (= this profile's), copied with its sidecar, its manifest row kept as it was
    (numbers, seconds, machine). Returns what it took; a model of another recipe is left where it is."""
    import shutil

    src = Path(source_root)
    theirs = read_manifest({"checkpoint_root": str(src)})
    root, taken = Path(cfg["checkpoint_root"]), []
    for method, sparsity, seed in todo:
        rel = str(checkpoint_path(method, sparsity, cfg, seed).relative_to(root))
        row = theirs[theirs.path == rel]
        if verify(cfg, method, sparsity, seed) == "ok" or not len(row):
            continue
        row = row.iloc[0].to_dict()
        if row["recipe"] != recipe_key(cfg, method) or files.sha256(src / rel) != row["sha256"]:
            print(f"not taken: {src / rel} (another recipe, or its file is not its manifest's)")
            continue
        for suffix in (".pth", ".json"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            with files.atomic((root / rel).with_suffix(suffix)) as tmp:
                shutil.copyfile((src / rel).with_suffix(suffix), tmp)
        _put_row(cfg, row)
        taken.append(rel)
    return taken
