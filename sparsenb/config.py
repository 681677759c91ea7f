"""Profiles: `params/<profile>.yaml` plus overrides -> one validated config.

    cfg = sparsenb.config.load("mini", {"linear.epochs": 5})
    cfg.linear.epochs, cfg["data_root"]

Relative paths in a profile are relative to the project root, whatever the working directory
(papermill, nbval and JupyterLab each start kernels in a different one).
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any, Mapping

from . import devices, prune, schema
from . import profiles as registry
from .errors import ConfigError, check_choice, read_yaml
from .paths import ROOT, resolve, slug
from .progress import log

__all__ = ["ROOT", "ConfigError", "Config", "check_choice", "load", "profiles", "validate"]

PARAMS = ROOT / "params"
PATH_KEYS = ("data_root", "checkpoint_root", "feature_cache", "beton_cache", "results_root")
# environment variables that override a profile's value (a machine's own data or model folders)
MACHINE_KEYS = ("data_root", "checkpoint_root", "num_workers", "backend", "device")  # where, not what
ENV_KEYS = {
    "data_root": "SPARSENB_DATA_ROOT",
    "checkpoint_root": "SPARSENB_CHECKPOINT_ROOT",
    "backend": "SPARSENB_BACKEND",
    "num_workers": "SPARSENB_NUM_WORKERS",
    "device": "SPARSENB_DEVICE",
}


class Config(dict):
    """A dict whose keys also read as attributes (nested dicts too: they are Configs themselves, so
    `cfg.linear.epochs = 3` changes `cfg`)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        for k, v in self.items():
            if isinstance(v, dict) and not isinstance(v, Config):
                super().__setitem__(k, Config(v))

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}; keys: {sorted(self)}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key not in self:
            raise AttributeError(f"config has no key {key!r}; keys: {sorted(self)}")
        self[key] = value


def profiles() -> list[str]:
    return sorted(p.stem for p in PARAMS.glob("*.yaml"))


def _set_dotted(cfg: dict, key: str, value: Any, add: bool = False) -> None:
    """Set a dotted key that exists (`add`: the last part may be new, under a section that exists)."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        new_leaf = add and i == len(parts) - 1 and isinstance(node, dict)
        if not new_leaf and (not isinstance(node, dict) or part not in node):
            where = ".".join(parts[:i]) or "<top level>"
            valid = sorted(node) if isinstance(node, dict) else []
            raise ConfigError(f"unknown config key {key!r} (no {part!r} under {where}); valid: {', '.join(valid)}")
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


@functools.lru_cache(maxsize=16)
def _params(path: str, mtime_ns: int) -> dict:  # parsed once per version of the file
    return read_yaml(Path(path))


def params_of(profile: str) -> dict:
    """`params/<profile>.yaml` as written, or -- for a profile written as another one plus changes
    (`base: mini`, `profile: <name>`, `overrides: {dotted.key: value}` (a new key may be added under an
    existing section), `drop: [dotted.key, ...]` (what it does not have)) -- its base's params with
    those changes: what one profile shares with another is written once."""
    check_choice("profile", profile, profiles())
    path = PARAMS / f"{profile}.yaml"
    raw = copy.deepcopy(_params(str(path), path.stat().st_mtime_ns))
    if "base" not in raw:
        return raw
    extra = set(raw) - {"base", "profile", "overrides", "drop"}
    if extra or raw.get("profile") != profile or raw["base"] == profile:
        raise ConfigError(
            f"params/{profile}.yaml is written on a base profile: it may hold only base, profile ({profile}), "
            f"overrides and drop (dotted keys of the base's params); move {', '.join(sorted(extra)) or 'them'} "
            "under overrides"
        )
    cfg = params_of(raw["base"])
    for key, value in (raw.get("overrides") or {}).items():
        _set_dotted(cfg, key, copy.deepcopy(value), add=True)
    for key in raw.get("drop") or []:
        parent, _, leaf = key.rpartition(".")
        _set_dotted(cfg, key, None)  # checks that it exists
        node = functools.reduce(lambda n, k: n[k], parent.split("."), cfg) if parent else cfg
        del node[leaf]
    cfg["profile"] = profile
    return cfg


def load(profile: str = "mini", overrides: Mapping[str, Any] | None = None) -> Config:
    """Read `params/<profile>.yaml`, apply the machine's environment (SPARSENB_DATA_ROOT,
    SPARSENB_CHECKPOINT_ROOT, SPARSENB_BACKEND, SPARSENB_NUM_WORKERS, SPARSENB_DEVICE: where, never
    what), then `overrides` (dotted keys), and resolve paths (`outputs/...` under the outputs root,
    see sparsenb.paths). What a run computes changes only through `overrides` -- a notebook's
    `overrides` parameter, recorded in its run id (sparsenb.runs)."""
    cfg = params_of(profile)
    given = {}  # path keys the user set (environment, overrides): where a relative one leads is said
    for key, var in ENV_KEYS.items():
        if os.environ.get(var):
            value = os.environ[var]
            cfg[key] = int(value) if key == "num_workers" and value.isdigit() else value
            given[key] = var
    for key, value in (overrides or {}).items():
        _set_dotted(cfg, key, value)
        given[key] = f"-p {key}" if key in MACHINE_KEYS else key
    _own_roots(cfg, overrides or {})
    validate(cfg, f"params/{profile}.yaml")
    if cfg["num_workers"] == "auto":
        cfg["num_workers"] = devices.cores()
    for key in PATH_KEYS:
        if key in cfg and cfg[key] is not None:
            raw, cfg[key] = cfg[key], str(resolve(cfg[key]))
            rel = Path(raw).expanduser()
            if key in given and not rel.is_absolute() and rel.parts[:1] != ("outputs",):
                _said_relative(key, given[key], str(raw), cfg[key])
    return Config(cfg)


# overrides that change what an upstream model is (checkpoints.recipe_key): made in a root of their own
UPSTREAM_KEYS = ("arch", "image_size", "upstream", "mini_data.upstream", "mini_data.seed")


def _own_roots(cfg: dict, overrides: Mapping[str, Any]) -> None:
    """A run that departs from the profile (any override but where things are) writes its records
    under outputs/cache/overrides/<slug of its overrides>/results, and -- when they change the upstream
    recipe -- reads and makes its upstream models under outputs/cache/overrides/<slug of those
    overrides alone>/upstream/<profile> (shared by every run on the same upstream models); never the
    committed roots. A root the overrides set is kept."""
    what = {k: v for k, v in overrides.items() if k not in MACHINE_KEYS and k not in PATH_KEYS}
    if not what:
        return
    if "results_root" not in overrides:
        cfg["results_root"] = f"outputs/cache/overrides/{slug(what)}/results"
    up = {
        k: v for k, v in what.items() if k == "mini_data" or any(k == u or k.startswith(u + ".") for u in UPSTREAM_KEYS)
    }
    if up and "checkpoint_root" not in overrides and registry.get(cfg["profile"]).makes_upstream:
        cfg["checkpoint_root"] = f"outputs/cache/overrides/{slug(up)}/upstream/{cfg['profile']}"


@functools.lru_cache(maxsize=None)
def _said_relative(key: str, source: str, raw: str, used: str) -> None:
    """Once per process: a relative path the user gave is read from the repository root (outputs/...:
    the outputs root), not the working folder -- say which folder that is."""
    log(
        f"{key} {raw!r} ({source}) is relative: using {used} (relative paths are read from the repository "
        f"root, or the outputs root for outputs/..., not the working folder; pass an absolute path to choose)"
    )


def validate(cfg: Mapping[str, Any], source: str = "config") -> None:
    """Check a profile (with its overrides applied) against sparsenb.schema and the registered
    methods' hyperparameters: one ConfigError listing every problem."""
    bad = schema.problems(dict(cfg), prune.hyperparameters())
    if bad:
        raise ConfigError(
            f"{source} (with its overrides) does not match the schema (sparsenb/schema.py):\n  " + "\n  ".join(bad)
        )
