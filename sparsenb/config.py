"""Profiles: `params/<profile>.yaml` plus overrides -> one validated config.

    cfg = sparsenb.config.load("mini", {"linear.epochs": 5})
    cfg.linear.epochs, cfg["data_root"]

Relative paths in a profile are relative to the project root, whatever the working directory
(papermill, nbval and JupyterLab each start kernels in a different one).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "params"
PATH_KEYS = ("data_root", "checkpoint_root", "feature_cache", "results_root")
# environment variables that override a profile's value (a machine's own data or model folders)
ENV_KEYS = {"data_root": "SPARSENB_DATA_ROOT", "checkpoint_root": "SPARSENB_CHECKPOINT_ROOT",
            "backend": "SPARSENB_BACKEND", "num_workers": "SPARSENB_NUM_WORKERS"}


class ConfigError(ValueError):
    """A profile, key or value that does not exist; the message lists the valid ones."""


class Config(dict):
    """A dict whose keys also read as attributes (nested dicts too)."""

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}; keys: {sorted(self)}") from None
        return Config(value) if isinstance(value, dict) and not isinstance(value, Config) else value


def profiles() -> list[str]:
    return sorted(p.stem for p in PARAMS.glob("*.yaml"))


def check_choice(kind: str, value: Any, valid) -> Any:
    """Raise one ConfigError naming the valid choices when `value` is not among them."""
    valid = list(valid)
    if value not in valid:
        raise ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(map(str, valid))}")
    return value


def _set_dotted(cfg: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "<top level>"
            valid = sorted(node) if isinstance(node, dict) else []
            raise ConfigError(f"unknown config key {key!r} (no {part!r} under {where}); valid: {', '.join(valid)}")
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def load(profile: str = "mini", overrides: Mapping[str, Any] | None = None) -> Config:
    """Read `params/<profile>.yaml`, apply the environment (SPARSENB_DATA_ROOT, SPARSENB_CHECKPOINT_ROOT),
    then dotted-key overrides, and resolve paths."""
    check_choice("profile", profile, profiles())
    with open(PARAMS / f"{profile}.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg = copy.deepcopy(cfg)
    for key, var in ENV_KEYS.items():
        if os.environ.get(var):
            cfg[key] = int(os.environ[var]) if key == "num_workers" else os.environ[var]
    for key, value in (overrides or {}).items():
        _set_dotted(cfg, key, value)
    for key in PATH_KEYS:
        if key in cfg and cfg[key] is not None:
            p = Path(cfg[key]).expanduser()
            cfg[key] = str(p if p.is_absolute() else ROOT / p)
    return Config(cfg)
