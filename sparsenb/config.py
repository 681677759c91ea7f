"""Profiles: `params/<profile>.yaml` plus overrides -> one validated config.

    cfg = sparsenb.config.load("mini", {"linear.epochs": 5})
    cfg.linear.epochs, cfg["data_root"]

Relative paths in a profile are relative to the project root, whatever the working directory
(papermill, nbval and JupyterLab each start kernels in a different one).
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from .paths import ROOT, resolve

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


def env_overrides() -> dict:
    """Dotted-key overrides from SPARSENB_OVERRIDES (a JSON object), e.g. the tiny parameters the
    notebook tests run with, or `make demo`'s demonstration scale; they apply to every profile load
    in this process and in the kernels it starts."""
    raw = os.environ.get("SPARSENB_OVERRIDES", "").strip()
    if not raw:
        return {}
    try:
        out = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"SPARSENB_OVERRIDES is not a JSON object ({e}): e.g. '{{\"upstream.D\": 7}}'") from None
    if not isinstance(out, dict):
        raise ConfigError("SPARSENB_OVERRIDES must be a JSON object of dotted keys")
    return out


def load(profile: str = "mini", overrides: Mapping[str, Any] | None = None) -> Config:
    """Read `params/<profile>.yaml`, apply the environment (SPARSENB_DATA_ROOT, SPARSENB_CHECKPOINT_ROOT,
    SPARSENB_BACKEND, SPARSENB_NUM_WORKERS, SPARSENB_OVERRIDES), then `overrides`, and resolve paths
    (`outputs/...` under the outputs root, see sparsenb.paths)."""
    check_choice("profile", profile, profiles())
    with open(PARAMS / f"{profile}.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg = copy.deepcopy(cfg)
    for key, var in ENV_KEYS.items():
        if os.environ.get(var):
            cfg[key] = int(os.environ[var]) if key == "num_workers" else os.environ[var]
    for key, value in {**env_overrides(), **(overrides or {})}.items():
        _set_dotted(cfg, key, value)
    for key in PATH_KEYS:
        if key in cfg and cfg[key] is not None:
            cfg[key] = str(resolve(cfg[key]))
    return Config(cfg)
