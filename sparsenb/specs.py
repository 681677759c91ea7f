"""A run is a spec: the frozen, typed identity of one run of a recording notebook, built from (the
profile's configuration, the notebook's parameters) by `build` -- the only place that does it
(`sparsenb.runs` calls it for the notebooks and the sweep). Its hash is the run id.

    spec = runs.spec("02_linear_ft", method="acdc", sparsity=0.9)   # the notebook's defaults fill the rest
    spec.run_id, spec.config()        # the id; the dict its record keeps (every field but `cfg`)
    finetune.linear(spec)             # what runs it
    results.record(spec, metrics)     # its record, under results.root_of(spec.cfg)

Each recording notebook has one Spec class, registered under the notebook's name (`kind`) by
subclassing: a new kind of notebook is one subclass in a module of its own -- `runs`, the sweep and
`results` find it in `KINDS`. A spec says what is computed, never where: the machine parameters
(data_root, checkpoint_root, num_workers, backend, device) are in `cfg` only, never in a run id;
`overrides` (dotted config keys a run was given) is part of it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import ClassVar

from . import checkpoints, data, devices, files, profiles, prune, results, upstream
from .config import Config
from .data.manifest import split_key
from .errors import ConfigError, check_choice

KINDS: dict[str, type[Spec]] = {}  # notebook name -> its Spec class


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What every run has: profile, arch, the overrides it was given; `cfg` is the configuration it
    runs with (machine facts too) -- carried along, never part of its identity."""

    kind: ClassVar[str] = ""  # the notebook's name; subclasses that set it are registered in KINDS
    records_under: ClassVar[str] = ""  # the folder of its records under the results root (default: kind)
    cell_over: ClassVar[tuple] = ()  # parameters its notebook takes several values of: one run each, one kernel

    profile: str
    arch: str
    overrides: dict = field(default_factory=dict)
    cfg: Config | None = field(default=None, compare=False, repr=False)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("kind"):
            KINDS[cls.kind] = cls

    # --- what a kind defines ----------------------------------------------------------------------
    @classmethod
    def config_overrides(cls, p: dict) -> dict:
        """Config keys a parameter sets (02's `epochs` -> linear.epochs), applied to the profile."""
        return {}

    @classmethod
    def check(cls, cfg: Config, p: dict) -> None:
        """Refuse bad values before any work (one ConfigError naming the fix)."""

    @classmethod
    def of(cls, cfg: Config, p: dict, inputs: bool = True) -> Spec | None:
        """The spec of the run with parameters `p` (None: this run records nothing); `inputs`: with
        the digests of the files it reads (paper), which a cell comparison does not need."""
        raise NotImplementedError

    # --- what every spec has ----------------------------------------------------------------------
    @property
    def notebook(self) -> str:
        return self.records_under or self.kind

    def config(self) -> dict:
        """The identity as a record keeps it: every field but `cfg`, unset (None) ones left out."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "cfg"}
        return json.loads(json.dumps({k: v for k, v in out.items() if v is not None}))

    @property
    def run_id(self) -> str:
        return results.run_id(self.config())

    def records(self) -> list[Spec]:
        """The records one run writes (05_speedup: one per method and engine)."""
        return [self]

    @property
    def device(self):
        """The device the run uses (its configuration's `device`; auto: cuda if there is a GPU)."""
        return devices.device_of(self.cfg)


def common(cfg: Config, p: dict) -> dict:
    """The fields every spec takes from (configuration, parameters)."""
    return {"profile": cfg["profile"], "arch": cfg["arch"], "overrides": overrides_of(p), "cfg": cfg}


def overrides_of(p: dict) -> dict:
    """The `overrides` parameter (dotted config keys -> values; papermill's `-p` gives it as JSON text), checked."""
    over = p.get("overrides") or {}
    if isinstance(over, str):
        try:
            over = json.loads(over)
        except json.JSONDecodeError as e:
            raise ConfigError(f"overrides {over!r} is not JSON ({e}): e.g. '{{\"upstream.D\": 7}}'") from None
    if not isinstance(over, dict) or not all(isinstance(k, str) for k in over):
        raise ConfigError(f"overrides must be a mapping of dotted config keys, e.g. {{'upstream.D': 7}}, got {over!r}")
    return json.loads(json.dumps(over))


def build(kind: type[Spec], cfg: Config, p: dict, checked: bool = True, inputs: bool = True) -> Spec | None:
    """THE builder: the spec of a run of `kind` with the (complete) parameters `p` on `cfg`."""
    if checked:
        kind.check(cfg, p)
    return kind.of(cfg, p, inputs)


# --- checks -----------------------------------------------------------------------------------


def count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


def check_sparsity(cfg: Config, method: str, sp) -> None:
    """A fraction in [0, 1) that the profile makes for `method` (or a checkpoint exists for)."""
    if isinstance(sp, bool) or not isinstance(sp, (int, float)) or not 0 <= sp < 1:
        raise ConfigError(f"sparsity must be a fraction in [0, 1) (0.9: 90% of the weights zero), got {sp!r}")
    valid = upstream.sparsities(cfg, method)
    if any(abs(float(sp) - v) < 1e-9 for v in valid):
        return
    prof = profiles.of(cfg)
    where = prof.sparsities_where(cfg, method)
    listed = ", ".join(f"{v:g}" for v in valid) or "none"
    raise ConfigError(
        f"{method} at sparsity {sp!r}: the sparsities {where} are {listed}"
        + ("; dense models have sparsity 0: pass -p sparsity 0" if valid == [0.0] else "")
        + prof.sparsity_fix()
    )


def check(cfg: Config, p: dict, downstream: str = "") -> None:
    """The values of a run, before any work: a method the registry has, a sparsity in [0, 1) that the
    profile makes (or a checkpoint exists for), dense only at 0, seeds >= 0, a dataset of the profile."""
    check_choice("method", p["method"], prune.METHODS)
    check_sparsity(cfg, p["method"], p["sparsity"])
    for key in ("seed", "upstream_seed"):
        if key in p:
            count(key, p[key])
    if "upstream_seed" in p and cfg.get("upstream"):  # the reference set's seeds only (mini)
        upstream.check_seed(cfg, p["upstream_seed"])
    if "dataset" in p:
        check_dataset(cfg, p["dataset"], downstream)


def check_dataset(cfg: Config, dataset, downstream: str = "") -> None:
    """A dataset of the profile; for a `downstream` notebook (its name: 02, 03, 05, 06, 08) a
    downstream task: the upstream task is what the models were trained on, not a transfer target."""
    family = data.names(profiles.of(cfg).data_family)
    valid = [n for n in family if n in cfg["datasets"] or data.info(n).kind == "upstream"]
    if downstream:
        down = [n for n in valid if data.info(n).kind != "upstream"]
        if dataset in valid and dataset not in down:
            raise ConfigError(
                f"dataset {dataset!r} is the {cfg['profile']} profile's upstream task, not a downstream one; "
                f"{downstream} transfers to: {', '.join(down)}"
            )
        valid = down
    check_choice(f"dataset of the {cfg['profile']} profile", dataset, valid)


# --- 01_upstream --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class UpstreamSpec(Spec):
    """An 01_upstream run: the upstream model of (method, sparsity, seed); mini: its recipe key."""

    kind = "01_upstream"
    method: str
    sparsity: float
    seed: int
    recipe: str | None = None

    @classmethod
    def config_overrides(cls, p):
        return {"arch": p["arch"]} if p.get("arch") else {}

    @classmethod
    def check(cls, cfg, p):
        check(cfg, p)

    @classmethod
    def of(cls, cfg, p, inputs=True):
        check_choice("method", p["method"], prune.METHODS)
        recipe = checkpoints.recipe_key(cfg, p["method"]) if profiles.of(cfg).makes_upstream else None
        return cls(
            **common(cfg, p), method=p["method"], sparsity=float(p["sparsity"]), seed=int(p["seed"]), recipe=recipe
        )


# --- 02_linear_ft, 03_full_ft -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FinetuneSpec(Spec):
    """A downstream run: the key fields, every hyperparameter it depends on, and what it reads --
    mini: the recipes of the generated data and upstream model; paper (`inputs`): file digests."""

    FINETUNE: ClassVar[str] = ""
    finetune: str
    method: str
    sparsity: float
    dataset: str
    seed: int
    upstream_seed: int = 0
    hp: dict
    image_size: int
    precision: str | None = None  # set when not fp32: numerics differ, another run
    eval_transform: str | None = None  # set when not crop_resize: another preprocessing
    compile: bool | None = None  # full finetuning compiled: fused kernels round differently
    mini_data: dict | None = None
    upstream_recipe: str | None = None
    inputs: dict | None = None

    @classmethod
    def config_overrides(cls, p):
        return {f"{cls.FINETUNE}.epochs": count("epochs", p["epochs"])} if p.get("epochs") else {}

    @classmethod
    def check(cls, cfg, p):
        check(cfg, p, downstream=cls.kind)

    @classmethod
    def of(cls, cfg, p, inputs=True):
        return cls(**finetune_fields(cls.FINETUNE, cfg, p, inputs))


def finetune_fields(ft: str, cfg: Config, p: dict, inputs: bool = True) -> dict:
    method, sparsity, dataset = p["method"], float(p["sparsity"]), p["dataset"]
    check_choice("method", method, prune.METHODS)
    data.info(dataset)
    mini = profiles.of(cfg).makes_upstream  # its models and data are made here: their recipes say what they are
    return {
        **common(cfg, p),
        "finetune": ft,
        "method": method,
        "sparsity": sparsity,
        "dataset": dataset,
        "seed": int(p["seed"]),
        "upstream_seed": int(p.get("upstream_seed", 0)),
        "hp": dict(cfg[ft]),
        "image_size": cfg["image_size"],
        "precision": cfg["precision"] if cfg["precision"] != "fp32" else None,
        "eval_transform": cfg["eval_transform"] if cfg["eval_transform"] != "crop_resize" else None,
        "compile": True if cfg["compile"] and ft == "full" else None,
        "mini_data": cfg["mini_data"] if mini else None,
        "upstream_recipe": checkpoints.recipe_key(cfg, method) if mini else None,
        "inputs": input_digests(cfg, method, sparsity, dataset) if inputs and not mini else None,
    }


def splits(cfg: Config) -> tuple[str, ...]:
    """The profile's splits (mini: train, val, test -- the epoch is chosen on val; paper: train, test)."""
    return profiles.of(cfg).splits


def input_digests(cfg: Config, method: str, sparsity: float, dataset: str) -> dict:
    """The sha256 of the upstream checkpoint and the content key of every split a paper run reads."""
    path = checkpoints.checkpoint_path(method, sparsity, cfg)
    st = path.stat()
    return {
        "checkpoint_sha256": _sha256(str(path), st.st_size, st.st_mtime_ns),
        "splits": {s: _split_key(dataset, str(cfg["data_root"]), s) for s in splits(cfg)},
    }


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # a sweep asks once per run: hash each file once
    return files.sha256(path)


@functools.lru_cache(maxsize=None)
def _split_key(dataset: str, data_root: str, split: str) -> str:
    return split_key(data.get(dataset, data_root, split))


@dataclass(frozen=True, kw_only=True)
class LinearSpec(FinetuneSpec):
    kind = "02_linear_ft"
    FINETUNE = "linear"
    cell_over = ("upstream_seed",)


@dataclass(frozen=True, kw_only=True)
class FullSpec(FinetuneSpec):
    kind = "03_full_ft"
    FINETUNE = "full"
    cell_over = ("upstream_seed",)


# --- 05_speedup ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SpeedupRow(Spec):
    """One record of 05_speedup: one method's backbone in one engine."""

    records_under = "05_speedup"
    method: str
    sparsity: float
    engine: str
    dataset: str
    seed: int
    upstream_seed: int
    batch_size: int
    hp: dict
    image_size: int
    eval_transform: str | None = None
    upstream_recipe: str | None = None


@dataclass(frozen=True, kw_only=True)
class SpeedupSpec(Spec):
    """A 05_speedup run: on each task in turn (`dataset`: one or a comma-separated list, e.g.
    "shapes10,digits"), online linear finetuning of each method's backbone (dense-like ones at
    sparsity 0, `prune.is_sparse`), dense-like in PyTorch and in `sparse_engine`, sparse ones in it;
    one record per (task, method, engine): `row`."""

    kind = "05_speedup"
    methods: tuple
    sparsity: float
    datasets: tuple
    seed: int
    upstream_seed: int
    batch_size: int
    sparse_engine: str = "deepsparse"
    DEPARTURES = ("methods", "seed", "upstream_seed", "batch_size")  # not the committed run's: a root of its own

    @classmethod
    def config_overrides(cls, p):
        """A run with other methods, seeds or batch size than the notebook's defaults (the committed
        Fig. 4) writes its records, table and figure under outputs/cache/overrides/<its departures>/."""
        from .nbparams import defaults
        from .paths import slug

        d = defaults(cls.kind)
        away = {k: p[k] for k in cls.DEPARTURES if k in p and str(p[k]) != str(d[k])}
        if not away or "results_root" in overrides_of(p):
            return {}
        return {"results_root": f"outputs/cache/overrides/{slug({**overrides_of(p), **away})}/results"}

    @staticmethod
    def method_list(p: dict) -> list[str]:
        return [m.strip() for m in str(p["methods"]).split(",") if m.strip()]

    @staticmethod
    def dataset_list(p: dict) -> list[str]:
        """The tasks of the `dataset` parameter, in order, each once."""
        return list(dict.fromkeys(d.strip() for d in str(p["dataset"]).split(",") if d.strip()))

    @classmethod
    def check(cls, cfg, p):
        tasks = cls.dataset_list(p)
        if not tasks:
            raise ConfigError(f"dataset names no task ({p['dataset']!r}): e.g. -p dataset shapes10,digits")
        for m in cls.method_list(p):
            sp = p["sparsity"] if prune.is_sparse(m) else 0.0
            for d in tasks:
                check(cfg, {**p, "method": m, "sparsity": sp, "dataset": d}, downstream=cls.kind)
        if count("batch_size", p["batch_size"]) < 1:
            raise ConfigError("batch_size must be at least 1 image per step, got 0: e.g. -p batch_size 64")

    @classmethod
    def of(cls, cfg, p, inputs=True):
        return cls(
            **common(cfg, p),
            methods=tuple(cls.method_list(p)),
            sparsity=float(p["sparsity"]),
            datasets=tuple(cls.dataset_list(p)),
            seed=int(p["seed"]),
            upstream_seed=int(p["upstream_seed"]),
            batch_size=int(p["batch_size"]),
        )

    def sparsity_of(self, method: str) -> float:
        return float(self.sparsity) if prune.is_sparse(method) else 0.0

    def engines(self, method: str) -> list[str]:
        return [self.sparse_engine] if prune.is_sparse(method) else ["torch", self.sparse_engine]

    @property
    def hp(self) -> dict:
        """The speedup section over the linear one (its schedule, linear's other hyperparameters)."""
        return dict(
            self.cfg["speedup"], **{k: v for k, v in self.cfg["linear"].items() if k not in self.cfg["speedup"]}
        )

    def row(self, dataset: str, method: str, engine: str) -> SpeedupRow:
        """The record of one task, method and engine."""
        cfg = self.cfg
        return SpeedupRow(
            profile=self.profile,
            arch=self.arch,
            overrides=self.overrides,
            cfg=cfg,
            method=method,
            sparsity=self.sparsity_of(method),
            engine=engine,
            dataset=dataset,
            seed=int(self.seed),
            upstream_seed=int(self.upstream_seed),
            batch_size=int(self.batch_size),
            hp=self.hp,
            image_size=cfg["image_size"],
            eval_transform=cfg["eval_transform"] if cfg["eval_transform"] != "crop_resize" else None,
            upstream_recipe=checkpoints.recipe_key(cfg, method) if profiles.of(cfg).makes_upstream else None,
        )

    def records(self) -> list[Spec]:
        return [self.row(d, m, e) for d in self.datasets for m in self.methods for e in self.engines(m)]


# --- 06_extensions ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ScratchSpec(Spec):
    """06_extensions' record: the from-scratch + GMP baseline (no upstream model) on a downstream
    task; `transfer()` is the GMP transfer run it is compared with."""

    kind = "06_extensions"
    baseline: str = "scratch_gmp"
    sparsity: float
    dataset: str
    seed: int
    hp: dict
    optimizer: dict  # momentum, weight decay and crop scale: full finetuning's
    image_size: int
    eval_transform: str | None = None
    mini_data: dict | None = None

    @classmethod
    def check(cls, cfg, p):
        check(cfg, {**p, "method": "gmp"}, downstream=cls.kind)

    @classmethod
    def of(cls, cfg, p, inputs=True):
        full = cfg["full"]
        return cls(
            **common(cfg, p),
            sparsity=float(p["sparsity"]),
            dataset=p["dataset"],
            seed=int(p["seed"]),
            hp=dict(cfg["scratch"]),
            optimizer={k: full[k] for k in ("momentum", "weight_decay", "random_resized_crop_scale")},
            image_size=cfg["image_size"],
            eval_transform=cfg["eval_transform"] if cfg["eval_transform"] != "crop_resize" else None,
            mini_data=cfg["mini_data"] if profiles.of(cfg).renders_data else None,
        )

    def transfer(self) -> FullSpec:
        """The full finetuning run of the GMP upstream model of the same sparsity, task and seed."""
        p = {"method": "gmp", "sparsity": self.sparsity, "dataset": self.dataset, "seed": self.seed}
        return build(FullSpec, self.cfg, {**p, "upstream_seed": 0, "overrides": self.overrides})


# --- 08_beyond_accuracy (run mode) --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RobustnessSpec(FinetuneSpec):
    """08's robustness run: the linear finetuning run it repeats and the corruption settings; in
    summary mode the notebook records nothing (no spec)."""

    kind = "08_beyond_accuracy"
    FINETUNE = "linear"
    corruptions: list
    severities: list
    max_test_images: int

    @classmethod
    def config_overrides(cls, p):
        return {}

    @classmethod
    def check(cls, cfg, p):
        check_choice("mode", p.get("mode", "run"), ("summary", "run"))
        if p.get("mode", "run") == "run":
            check(cfg, p, downstream=cls.kind)

    @classmethod
    def of(cls, cfg, p, inputs=True):
        if p.get("mode", "run") != "run":
            return None
        hp = cfg["beyond"]
        return cls(
            **finetune_fields("linear", cfg, p, inputs),
            corruptions=list(hp["corruptions"]),
            severities=[int(s) for s in hp["severities"]],
            max_test_images=int(hp["max_test_images"]),
        )


# --- 09_detection -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DetectionSpec(Spec):
    """One detector finetuning (Table 4): the upstream model of (method, sparsity, upstream seed) as
    the backbone of the profile's detector (`profiles.Profile.detector`), on one detection task; the
    recipe and the task's entry in params `detection.tasks` (`sizes`: mini, its generated sizes;
    paper, its VOC image sets and validation carve) make its numbers, with what it reads: mini, the
    scene generator's versions and the upstream recipe; paper (`inputs`), the digests of the
    checkpoint and of the VOC images' annotations."""

    kind = "09_detection"
    cell_over = ("upstream_seed",)

    method: str
    sparsity: float
    task: str
    seed: int
    upstream_seed: int = 0
    hp: dict
    sizes: dict
    data_seed: int | None = None
    generator: str | None = None
    upstream_recipe: str | None = None
    inputs: dict | None = None

    @classmethod
    def config_overrides(cls, p):
        return {"detection.epochs": count("epochs", p["epochs"])} if p.get("epochs") else {}

    @classmethod
    def check(cls, cfg, p):
        check(cfg, {k: v for k, v in p.items() if k != "task"})
        tasks = (cfg.get("detection") or {}).get("tasks") or {}
        check_choice(f"detection task of the {cfg['profile']} profile (params detection.tasks)", p["task"], tasks)

    @classmethod
    def of(cls, cfg, p, inputs=True):
        det, method, prof = cfg["detection"], p["method"], profiles.of(cfg)
        renders, made = prof.renders_data, prof.makes_upstream  # made here: recipes say what they are
        return cls(
            **common(cfg, p),
            method=method,
            sparsity=float(p["sparsity"]),
            task=p["task"],
            seed=int(p["seed"]),
            upstream_seed=int(p.get("upstream_seed", 0)),
            hp={k: v for k, v in det.items() if k != "tasks"},
            sizes=dict(det["tasks"][p["task"]]),
            data_seed=int(cfg["mini_data"]["seed"]) if renders else None,
            generator=generator_version() if renders else None,
            upstream_recipe=checkpoints.recipe_key(cfg, method) if made else None,
            inputs=detection_digests(cfg, method, float(p["sparsity"]), p["task"]) if inputs and not made else None,
        )


def generator_version() -> str:
    """The versions of the renderer and of the detection scenes' layout (generated tasks)."""
    from .data import detection, mini

    return f"{mini.GENERATOR_VERSION}.{detection.DETECTION_VERSION}"


def detection_digests(cfg: Config, method: str, sparsity: float, task: str) -> dict:
    """The sha256 of the upstream checkpoint and the content key of the task's VOC images a paper run reads."""
    path = checkpoints.checkpoint_path(method, sparsity, cfg)
    st = path.stat()
    return {
        "checkpoint_sha256": _sha256(str(path), st.st_size, st.st_mtime_ns),
        "voc": _voc_key(str(cfg["data_root"]), json.dumps(cfg["detection"]["tasks"][task], sort_keys=True)),
    }


@functools.lru_cache(maxsize=None)
def _voc_key(data_root: str, task: str) -> str:
    from .data import voc

    return voc.content_key(data_root, json.loads(task))
