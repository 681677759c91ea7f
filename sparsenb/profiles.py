"""The profiles of the study (params/<name>.yaml) as objects that own what differs between them, so
that no other module compares profile names (a registry, as `prune.METHODS` is for methods):

    p = profiles.of(cfg)                          # the profile of a loaded configuration
    p.splits                                      # ("train", "val", "test") | ("train", "test")
    p.checkpoint_name("acdc", 0.9, seed=1)        # where an upstream checkpoint lives under checkpoint_root
    p.bicubic("rigl_erk_1x")                      # RigL's published models are evaluated bicubic (paper)
    p.detector                                    # 09_detection's detector: "centernet" (mini), "fcos" (paper)
    profiles.get("paper").makes_upstream          # False: it reads the published checkpoints

- mini: generated data (rendered here, cached), upstream models trained here by a recipe (the reference
  set: manifest, recipe keys), train / val / test splits, budget-matched controls, sized for a laptop.
- paper: the paper's datasets and published checkpoints read from the folders params name (runs
  identified by digests of those files), the paper's train / test splits, dense as the only control,
  RigL's checkpoints evaluated bicubic as its TF code did.
"""

from __future__ import annotations

from pathlib import Path

from . import paths, prune
from .errors import check_choice


class Profile:
    """What a profile decides; a new one subclasses it and is added with `register`."""

    name = ""
    splits: tuple[str, ...] = ("train", "test")  # the splits of its datasets (val: epochs chosen on it)
    renders_data = False  # its datasets are rendered here and cached (else read from data_root)
    # its upstream models are trained here by a recipe (reference set, manifest, recipe keys; its runs
    # are identified by the recipes), else published checkpoints placed by hand (runs: file digests)
    makes_upstream = False
    matched_controls = False  # its sparse models have budget-matched controls (else dense is the control)
    method_interpolation = False  # a method's own evaluation interpolation applies (RigL's bicubic)
    laptop_sized = False  # a run at the profile's own epochs needs no plan before it starts
    default = False  # the notebooks' default: its summaries' folders carry no profile label
    sections: tuple[str, ...] = ()  # params sections only this profile has
    sections_reason = ""  # ... and why it needs them (the schema's message)
    study_sweeps: tuple[str, ...] = ()  # params/sweeps/<name>.yaml: its study's grid (07 names what is missing)
    prep_sweeps: tuple[str, ...] = ()  # sweeps `study` runs before its grid (data, upstream models)
    serial_sweeps: tuple[str, ...] = ()  # ... of those, the ones that run one worker
    data_family = ""  # whose datasets it reads (sparsenb.data registry: "mini" generated, "paper" real);
    # of those, the ones its params `datasets` list (and the upstream task)
    # 09_detection's detector (sparsenb.detectors: its module, its params `detection` recipe in
    # sparsenb.schema); "": the profile has no detection notebook
    detector = ""

    def checkpoint_name(self, method: str, sparsity: float, seed: int = 0) -> Path:
        """Where the upstream checkpoint of (method, sparsity, seed) lives under checkpoint_root."""
        raise NotImplementedError

    def regime(self, cfg) -> str:
        """What its results describe, said in every summary title of its records ("" if nothing)."""
        return ""

    def figures_dir(self, cfg) -> Path:
        """Where 01_upstream puts its per-model figures (never into a user's checkpoint folder)."""
        return paths.outputs() / "upstream" / self.name

    def studies_dir(self, cfg) -> Path:
        """Where its upstream studies go (convergence.csv, STR's calibration): beside its reference set."""
        return Path(cfg["checkpoint_root"])

    def beton_resolution(self, image_size: int) -> int | None:
        """Images kept in a .beton at most this large (longer side); None: as they are."""
        return 2 * int(image_size)  # decoding stays cheap, crops keep their detail

    def interpolation(self, method: str) -> str:
        """How `method`'s upstream models are resized at evaluation on this profile."""
        return prune.eval_interpolation(method) if self.method_interpolation else "bilinear"

    def bicubic(self, method: str) -> bool:
        return self.interpolation(method) == "bicubic"

    def control(self, method: str) -> str | None:
        """The dense model a sparse method is compared with; None for a dense model or a control."""
        if method not in prune.METHODS or not prune.is_sparse(method):
            return None
        return prune.control_of(method) if self.matched_controls else prune.DENSE

    def results_root(self, cfg) -> Path:
        """Where its runs' records live (params `results_root`)."""
        return Path(cfg["results_root"])

    def label(self, source: str, arch: str) -> str:
        """A summary's folder under outputs/summary/: `source` for the default profile, else
        source-profile-arch."""
        return source if self.default else f"{source}-{self.name}-{arch}"

    def sparsities_where(self, cfg, method: str) -> str:
        """Where the sparsities a run of `method` may use come from (a refused sparsity's message)."""
        return f"the {self.name} profile makes"

    def sparsity_fix(self) -> str:
        """What to do about a sparsity it has no model of (appended to that message)."""
        return ""

    def off_target_fix(self, method: str, sparsity: float) -> str:
        """What to do about an upstream model further than 1.5 points from its label."""
        raise NotImplementedError


class Mini(Profile):
    name = "mini"
    splits = ("train", "val", "test")
    renders_data = makes_upstream = matched_controls = laptop_sized = default = True
    sections = ("sparsities", "mini_data", "upstream", "demo", "full_search", "transfer_is_real")
    sections_reason = "the mini profile makes its own data and upstream models"
    study_sweeps = ("mini_linear", "mini_full", "mini_structured_ft")
    prep_sweeps = ("mini_data", "mini_upstream", "mini_structured")
    serial_sweeps = ("mini_structured",)
    data_family = "mini"
    detector = "centernet"  # on generated 64-pixel scenes (sparsenb.detection)

    def checkpoint_name(self, method: str, sparsity: float, seed: int = 0) -> Path:
        return Path(method) / f"s{sparsity:g}-seed{seed}.pth"  # listed in manifest.csv

    def regime(self, cfg) -> str:
        return (f"the under-trained regime (dense upstream budget D = {float(cfg['upstream']['D']):g} epochs, "
                "far from converged: outputs/upstream/convergence.csv)")  # fmt: skip

    def figures_dir(self, cfg) -> Path:
        return Path(cfg["checkpoint_root"])  # beside the reference checkpoints

    def beton_resolution(self, image_size: int) -> int | None:
        return None

    def studies_dir(self, cfg) -> Path:
        return paths.outputs() / "upstream"  # the first profile's studies: outputs/upstream/*.csv

    def off_target_fix(self, method: str, sparsity: float) -> str:
        return (
            "the profile's recipe missed its target: give it more budget (upstream.D), and for STR calibrate "
            "s_init (python -m sparsenb upstream calibrate-str), then make it again (make upstream)"
        )


class MiniConverged(Mini):
    """The mini study in the paper's regime (issue 38): the same code, tasks and methods on an upstream
    task its dense model nearly converges on (32 classes x 320 images, D = 112: doubling D gains less
    than the pilots' bound), where pruning costs what it costs ResNet50 on ImageNet
    (outputs/upstream/regime_pilots.csv; the choice and its reason: params/mini_converged.yaml)."""

    name = "mini_converged"
    default = False
    study_sweeps = ("mini_converged_linear", "mini_converged_full")
    prep_sweeps = ()  # its reference set: python -m sparsenb upstream build -p mini_converged (two shells)

    def regime(self, cfg) -> str:
        return (f"the converged regime (dense upstream budget D = {float(cfg['upstream']['D']):g} epochs, near its "
                "plateau: outputs/upstream/regime_pilots.csv)")  # fmt: skip

    def studies_dir(self, cfg) -> Path:
        return Path(cfg["checkpoint_root"])

    def off_target_fix(self, method: str, sparsity: float) -> str:
        return (
            f"the profile's recipe missed its target: for STR calibrate s_init (python -m sparsenb upstream "
            f"calibrate-str -p {self.name}), then make it again (python -m sparsenb upstream build -p {self.name})"
        )


class Paper(Profile):
    name = "paper"
    method_interpolation = True
    data_family = "paper"
    detector = "fcos"  # torchvision FCOS on PASCAL VOC (sparsenb.fcos)

    def checkpoint_name(self, method: str, sparsity: float, seed: int = 0) -> Path:
        return Path(method) / f"{sparsity:g}.pth"  # the published checkpoints, placed by hand

    def sparsities_where(self, cfg, method: str) -> str:
        return f"with a checkpoint under {Path(cfg['checkpoint_root']) / method}"

    def sparsity_fix(self) -> str:
        return (
            "; place the published checkpoint there as <method>/<sparsity>.pth, or point -p checkpoint_root "
            "(SPARSENB_CHECKPOINT_ROOT) at your copy"
        )

    def off_target_fix(self, method: str, sparsity: float) -> str:
        return f"put the {method} checkpoint of sparsity {sparsity:g} there, or file this one under its own sparsity"


PROFILES: dict[str, Profile] = {p.name: p for p in (Mini(), MiniConverged(), Paper())}


def register(profile: Profile) -> Profile:
    """Add a profile (an instance of a `Profile` subclass) under its name."""
    if profile.name in PROFILES and PROFILES[profile.name] is not profile:
        raise ValueError(f"profile {profile.name!r} is registered already")
    PROFILES[profile.name] = profile
    return profile


def get(name: str) -> Profile:
    """The profile called `name` (a record's or a dataset's `profile`)."""
    check_choice("profile", name, PROFILES)
    return PROFILES[name]


def of(cfg) -> Profile:
    """The profile of a loaded configuration."""
    return get(cfg["profile"])


def default() -> Profile:
    """The notebooks' default profile (mini): what a summary reads when it is not told."""
    return next(p for p in PROFILES.values() if p.default)
