"""The declared shape of `params/<profile>.yaml`: every key, its type, and which profile needs it.

`config.load` checks every profile (after its overrides) against `Profile`: an unknown key, a
missing one or a value of the wrong type is one ConfigError naming the key and the valid keys. No
hyperparameter has a default in code -- a key missing from params is an error, never a fallback.
A method's own hyperparameters (`upstream.methods.<name>`) are declared by its recipe class
(`hyperparameters` in sparsenb.prune), so a new method brings its schema with it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union


@dataclass
class StepSchedule:
    """SGD with momentum, the learning rate times `gamma` at each milestone epoch."""

    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    epochs: int
    milestones: list[int]
    gamma: float


@dataclass
class Full(StepSchedule):
    lr_overrides: dict[str, float]  # per-dataset learning rate
    random_resized_crop_scale: tuple[float, float]


@dataclass
class Speedup:
    epochs: int
    milestones: list[int]


@dataclass
class GMPSchedule:
    initial: float
    start: float
    end: float
    every: float


@dataclass
class Scratch:
    epochs: int
    lr: float
    batch_size: int
    gmp: GMPSchedule


@dataclass
class UpstreamSizes:
    classes: int
    train_per_class: int
    val_per_class: int
    test_per_class: int


@dataclass
class TaskSizes:
    train_per_class: int
    val_per_class: int
    test_per_class: int
    imbalance: float | None = None  # largest / smallest class; absent: balanced


@dataclass
class DigitsSplit:
    test_fraction: float
    val_fraction: float


@dataclass
class MiniData:
    seed: int
    upstream: UpstreamSizes
    tasks: dict[str, TaskSizes]
    digits: DigitsSplit


@dataclass
class Search:
    epochs: float
    lr: list[float]
    weight_decay: list[float]
    batch_size: list[int]


@dataclass
class Convergence:
    epochs: list[float]  # budgets (fractions of an epoch allowed)
    seeds: list[int]
    all_seeds_up_to: float
    tolerance: float
    search: Search | None  # null: no recipe search


@dataclass
class Optimizer:
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    batch_size: int
    schedule: Literal["cosine", "constant", "exponential"]


@dataclass
class Upstream:
    seeds: list[int]
    seeds_sparsities: list[float]
    D: float
    convergence: Convergence
    optimizer: Optimizer
    crop_scale: tuple[float, float]
    grad_clip: float | None
    methods: dict[str, dict]  # checked against each recipe's `hyperparameters`
    structured_sparsities: list[float]


@dataclass
class Demo:
    overrides: dict[str, Any]  # dotted keys, checked when the demo applies them


@dataclass
class Beyond:
    """08_beyond_accuracy: calibration bins, the non-inferiority margin of its calibration finding,
    and the corruptions of its robustness runs (imagecorruptions names, severities 1-5)."""

    ece_bins: int
    margin: float
    corruptions: list[str]
    severities: list[int]
    max_test_images: int  # robustness: a seeded sample of the test set (0: all of it)


@dataclass
class Profile:
    profile: Literal["mini", "paper"]
    arch: str
    image_size: int
    data_root: str
    checkpoint_root: str
    feature_cache: str
    beton_cache: str
    results_root: str
    num_workers: int | Literal["auto"]
    device: str
    eval_batch_size: int
    precision: Literal["fp32", "bf16", "fp16"]
    compile: bool
    backend: Literal["torch", "ffcv"]
    datasets: list[str]
    report: Literal["reported", "best", "final"]
    linear: StepSchedule
    full: Full
    seeds: list[int]
    speedup: Speedup
    scratch: Scratch
    beyond: Beyond
    # the mini profile's own sections (it makes its data and upstream models; paper reads them)
    sparsities: list[float] | None = None
    mini_data: MiniData | None = None
    upstream: Upstream | None = None
    demo: Demo | None = None


MINI_ONLY = ("sparsities", "mini_data", "upstream", "demo")


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check(value: Any, tp, where: str) -> list[str]:
    """Problems of `value` against the annotation `tp` (dataclasses recursively), each naming its key."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return []
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        inner = [a for a in args if a is not type(None)]
        tried = [check(value, a, where) for a in inner]
        if any(not t for t in tried):  # valid as one of the alternatives
            return []
        return tried[0] if len(inner) == 1 else [f"{where}: {value!r} is none of {', '.join(map(_type_name, inner))}"]
    if origin is Literal:
        return [] if value in args else [f"{where}: {value!r} is not one of {', '.join(map(repr, args))}"]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return [
                f"{where}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}, got {value!r}"
            ]
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        out = []
        unknown = sorted(set(value) - set(fields))
        if unknown:
            out.append(
                f"{where or '<top level>'}: unknown key{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                f"valid: {', '.join(fields)}"
            )
        for name, f in fields.items():
            optional = f.default is None
            if name not in value:
                if not optional:
                    out.append(f"{where + '.' if where else ''}{name}: missing (a {_type_name(hints[name])})")
                continue
            out += check(value[name], hints[name], f"{where + '.' if where else ''}{name}")
        return out
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping, got {value!r}"]
        return [p for k, v in value.items() for p in check(v, args[1], f"{where}.{k}")]
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return [f"{where}: expected a list, got {value!r}"]
        if origin is tuple and len(args) != len(value):
            return [f"{where}: expected {len(args)} values, got {value!r}"]
        inner = args if origin is tuple else [args[0]] * len(value)
        return [p for i, (v, a) in enumerate(zip(value, inner)) for p in check(v, a, f"{where}[{i}]")]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    return [] if ok else [f"{where}: expected {_type_name(tp)}, got {value!r}"]


def problems(cfg: dict, method_hyperparameters: dict[str, dict[str, type]]) -> list[str]:
    """Every problem of a loaded profile: the `Profile` schema, the mini-only sections, and each
    method's hyperparameters against `method_hyperparameters` (name -> {key: type})."""
    out = check(cfg, Profile, "")
    if cfg.get("profile") == "mini":
        out += [
            f"{k}: missing (the mini profile makes its own data and upstream models)"
            for k in MINI_ONLY
            if cfg.get(k) is None
        ]
    methods = (cfg.get("upstream") or {}).get("methods") or {}
    if isinstance(methods, dict):
        for name, hp in methods.items():
            if name not in method_hyperparameters:
                out.append(f"upstream.methods.{name}: unknown method; valid: {', '.join(method_hyperparameters)}")
                continue
            spec = dataclasses.make_dataclass(f"{name}_hyperparameters", list(method_hyperparameters[name].items()))
            out += check(hp, spec, f"upstream.methods.{name}")
    return out
