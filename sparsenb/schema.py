"""The declared shape of `params/<profile>.yaml`: every key, its type, and which profile needs it.

`config.load` checks every profile (after its overrides) against `Profile`: an unknown key, a
missing one or a value of the wrong type is one ConfigError naming the key and the valid keys. No
hyperparameter has a default in code -- a key missing from params is an error, never a fallback.
A method's own hyperparameters (`upstream.methods.<name>`) are declared by its recipe class
(`hyperparameters` in sparsenb.prune), so a new method brings its schema with it. Numbers that
have a sane range declare it (`Annotated[int, Range(1, 10_000)]`): a billion epochs is refused.
A name of a registry declares it (`Annotated[str, OneOf(profiles.PROFILES)]`): what is registered
when the profile is checked is valid, so a new profile needs no edit here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from . import profiles


@dataclass(frozen=True)
class Range:
    """The sane values of a number, both ends included."""

    lo: float
    hi: float


@dataclass(frozen=True)
class OneOf:
    """A name of a registry (a mapping read when checked: entries registered later count)."""

    registry: dict = dataclasses.field(compare=False)


Epochs = Annotated[int, Range(1, 10_000)]
Budget = Annotated[float, Range(0, 100_000)]  # epochs of the upstream task (fractions allowed)
LR = Annotated[float, Range(1e-8, 10)]
Fraction = Annotated[float, Range(0, 1)]
BatchSize = Annotated[int, Range(1, 65_536)]
Count = Annotated[int, Range(0, 1_000_000)]  # images per class, classes
Seed = Annotated[int, Range(0, 2**32 - 1)]


@dataclass
class StepSchedule:
    """SGD with momentum, the learning rate times `gamma` once `milestones[i]` epochs are done (torch
    MultiStepLR stepped after every epoch: [51, 101] of 150 = 51 / 50 / 49 epochs per lr)."""

    lr: LR
    momentum: Fraction
    weight_decay: Fraction
    batch_size: BatchSize
    epochs: Epochs
    milestones: list[Epochs]
    gamma: Fraction


@dataclass
class Full(StepSchedule):
    lr_overrides: dict[str, LR]  # per-dataset learning rate
    random_resized_crop_scale: tuple[Fraction, Fraction]
    # per-dataset normalisation, dataset -> [mean, std] (RGB, in [0, 1]); absent: measured on the
    # train split (transforms.channel_stats)
    dataset_stats: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] | None = None


@dataclass
class Speedup:
    epochs: Epochs
    milestones: list[Epochs]


@dataclass
class GMPSchedule:
    initial: Fraction
    start: Fraction
    end: Fraction
    every: Fraction


@dataclass
class Scratch:
    epochs: Epochs
    lr: LR
    batch_size: BatchSize
    gmp: GMPSchedule


@dataclass
class UpstreamSizes:
    classes: Count
    train_per_class: Count
    val_per_class: Count
    test_per_class: Count


@dataclass
class TaskSizes:
    train_per_class: Count
    val_per_class: Count
    test_per_class: Count
    imbalance: float | None = None  # largest / smallest class; absent: balanced


@dataclass
class DigitsSplit:
    test_fraction: Fraction
    val_fraction: Fraction


@dataclass
class MiniData:
    seed: Seed
    upstream: UpstreamSizes
    tasks: dict[str, TaskSizes]
    digits: DigitsSplit


@dataclass
class Search:
    epochs: Budget
    lr: list[LR]
    weight_decay: list[Fraction]
    batch_size: list[BatchSize]


@dataclass
class Convergence:
    epochs: list[Budget]  # budgets (fractions of an epoch allowed)
    seeds: list[Seed]
    all_seeds_up_to: Budget
    tolerance: Fraction
    search: Search | None  # null: no recipe search


@dataclass
class Optimizer:
    lr: LR
    momentum: Fraction
    nesterov: bool
    weight_decay: Fraction
    batch_size: BatchSize
    schedule: Literal["cosine", "constant", "exponential"]


@dataclass
class Upstream:
    seeds: list[Seed]
    seeds_sparsities: list[Fraction]
    D: Budget
    convergence: Convergence
    optimizer: Optimizer
    crop_scale: tuple[Fraction, Fraction]
    grad_clip: Annotated[float, Range(0, 1e6)] | None
    methods: dict[str, dict]  # checked against each recipe's `hyperparameters`
    structured_sparsities: list[Fraction]
    # the first `first_seeds` seeds also have every other sparsity (95%) and the methods in
    # `few_seeds_methods` (long runs: RigL 5x and its control); the other seeds only seeds_sparsities
    first_seeds: Annotated[int, Range(1, 1000)] = 1
    few_seeds_methods: list[str] = dataclasses.field(default_factory=list)


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
class DetectionSizes:
    train_images: Count
    val_images: Count
    test_images: Count


@dataclass
class Detection(StepSchedule):
    """09_detection (Table 4) with the CenterNet-style detector (mini, sparsenb.detection): its
    finetuning (SGD, step schedule), its input size, the generated detection tasks' sizes
    (sparsenb.data.detection.TASKS) and the FPN's width."""

    image_size: Annotated[int, Range(16, 4096)]
    fpn_channels: Annotated[int, Range(8, 1024)]
    tasks: dict[str, DetectionSizes]


@dataclass
class VOCTask:
    """A PASCAL VOC detection task (sparsenb.data.voc): the image sets it trains and tests on
    ("VOC2007/trainval": VOCdevkit/VOC2007/ImageSets/Main/trainval.txt), and the validation split
    carved from its training images (a fraction, a fixed seed) that chooses the reported epoch."""

    train: list[str]
    test: list[str]
    val_fraction: Annotated[float, Range(0, 0.5)]
    split_seed: Seed


@dataclass
class FCOSDetection:
    """09_detection (Table 4) with torchvision's FCOS (paper, sparsenb.fcos): the input size (FCOS's
    min_size / max_size of an image's sides), the FPN's width, the score threshold of its detections;
    SGD with the lr rising linearly from 0 over `warmup_epochs`, then cosine to `final_lr` (per step);
    the VOC tasks."""

    image_size: Annotated[int, Range(16, 4096)]
    max_size: Annotated[int, Range(16, 8192)]
    fpn_channels: Annotated[int, Range(8, 1024)]
    score_thresh: Fraction
    lr: LR
    final_lr: LR
    warmup_epochs: Annotated[float, Range(0, 10_000)]
    momentum: Fraction
    weight_decay: Fraction
    batch_size: BatchSize
    epochs: Epochs
    tasks: dict[str, VOCTask]


# a profile's `detection` section by its detector (sparsenb.profiles: Profile.detector)
DETECTION_RECIPES: dict[str, type] = {"centernet": Detection, "fcos": FCOSDetection}


@dataclass
class FullSearch:
    """The full-finetuning recipe search (mini): candidates run with the dense model, chosen on val."""

    lr: list[LR]
    epochs: list[Epochs]  # milestones scale with them (full.milestones / full.epochs)


@dataclass
class TransferIsReal:
    """The least gain (points) of the dense upstream model over random_init that every task must show."""

    linear: Annotated[float, Range(0, 100)]
    full: Annotated[float, Range(0, 100)]


@dataclass
class Profile:
    profile: Annotated[str, OneOf(profiles.PROFILES)]
    arch: str
    image_size: Annotated[int, Range(8, 4096)]
    data_root: str
    checkpoint_root: str
    feature_cache: str
    beton_cache: str
    results_root: str
    num_workers: Annotated[int, Range(0, 4096)] | Literal["auto"]
    device: str
    eval_batch_size: BatchSize
    precision: Literal["fp32", "bf16", "fp16"]
    compile: bool
    backend: Literal["torch", "ffcv"]
    eval_transform: Literal["resize_crop", "crop_resize"]  # sparsenb.data.transforms.ORDERS
    datasets: list[str]
    report: Literal["reported", "best", "final"]
    linear: StepSchedule
    full: Full
    seeds: list[Seed]
    speedup: Speedup
    scratch: Scratch
    beyond: Beyond
    # the mini profile's own sections (it makes its data and upstream models; paper reads them):
    # which profile needs which is `sparsenb.profiles` (Profile.sections)
    sparsities: list[Fraction] | None = None
    mini_data: MiniData | None = None
    upstream: Upstream | None = None
    demo: Demo | None = None
    full_search: FullSearch | None = None
    transfer_is_real: TransferIsReal | None = None
    detection: dict[str, Any] | None = None  # its detector's recipe (DETECTION_RECIPES), checked in `problems`
    detection_search: FullSearch | None = None  # 09's recipe, chosen on validation as full_search


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if typing.get_origin(tp) is Literal:
        return " or ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check(value: Any, tp, where: str) -> list[str]:
    """Problems of `value` against the annotation `tp` (dataclasses recursively), each naming its key."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return []
    if origin is Annotated:
        bad = check(value, args[0], where)
        for r in (a for a in args[1:] if isinstance(a, Range)):
            if not bad and not r.lo <= value <= r.hi:
                bad = [f"{where}: {value!r} is outside its sane range [{r.lo:g}, {r.hi:g}]"]
        for c in (a for a in args[1:] if isinstance(a, OneOf)):
            if not bad and value not in c.registry:
                bad = [f"{where}: {value!r} is not one of {', '.join(map(repr, c.registry))}"]
        return bad
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
        return _check_fields(value, tp, where)
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
    name = cfg.get("profile")
    own = profiles.PROFILES.get(name) if isinstance(name, str) else None  # a bad value: `check` names it
    if own is not None:
        out += [f"{k}: missing ({own.sections_reason})" for k in own.sections if cfg.get(k) is None]
        out += _detection_problems(cfg.get("detection"), own)
    methods = (cfg.get("upstream") or {}).get("methods") or {}
    if isinstance(methods, dict):
        for name, hp in methods.items():
            if name not in method_hyperparameters:
                out.append(f"upstream.methods.{name}: unknown method; valid: {', '.join(method_hyperparameters)}")
                continue
            fields = [
                (k, t, dataclasses.field(default=None)) if _admits_none(t) else (k, t)
                for k, t in method_hyperparameters[name].items()
            ]
            spec = dataclasses.make_dataclass(f"{name}_hyperparameters", fields)
            out += check(hp, spec, f"upstream.methods.{name}")
    return out


def _detection_problems(recipe, own: profiles.Profile) -> list[str]:
    """The `detection` section against the recipe of the profile's detector (none: nothing to check)."""
    if not isinstance(recipe, dict):
        return []
    if own.detector not in DETECTION_RECIPES:
        return [f"detection: the {own.name} profile has no detector (profiles: Profile.detector); remove the section"]
    return check(recipe, DETECTION_RECIPES[own.detector], "detection")


def _admits_none(tp) -> bool:
    """A hyperparameter typed `X | None` may be left out of its method's entry."""
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _check_fields(value: Any, tp, where: str) -> list[str]:
    """Problems of the mapping `value` against the dataclass `tp`: unknown keys, missing required
    ones (a field defaulting to None is optional), and each field's value checked."""
    if not isinstance(value, dict):
        return [f"{where}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}, got {value!r}"]
    hints = typing.get_type_hints(tp, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(tp)}
    out = []
    unknown = sorted(set(value) - set(fields))
    if unknown:
        out.append(
            f"{where or '<top level>'}: unknown key{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
            f"valid: {', '.join(fields)}"
        )
    for name, f in fields.items():
        optional = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if name not in value:
            if not optional:
                out.append(f"{where + '.' if where else ''}{name}: missing (a {_type_name(hints[name])})")
            continue
        out += check(value[name], hints[name], f"{where + '.' if where else ''}{name}")
    return out
