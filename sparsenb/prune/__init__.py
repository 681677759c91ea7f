"""Pruning: the upstream methods of the paper as recipes (one module each), the registry every
other module reads, and magnitude masks.

    prune.METHODS["gmp"].family                    # "progressive"
    prune.names(family="regularization")           # ["acdc", "str", "rigl_erk_1x", "rigl_erk_5x"]
    method = prune.make("gmp", target=0.9, total_steps=..., **hp)   # then train.fit(model, method, ...)
    prune.magnitude(model, 0.9)                    # global magnitude, 90% of prunable weights zero
"""

from __future__ import annotations

from ..errors import check_choice
from .acdc import ACDC
from .base import FAMILIES, ContinuedControl, Control, Dense, Method, RandomInit, cubic_schedule
from .gmp import GMP, GMPScratch
from .lth import LTH
from .magnitude import SCOPES, STEMS, magnitude, magnitude_masks, masks_from_scores, target_sparsity, targets, topk_mask
from .rigl import RigL, RigL5x, erk_densities
from .str import STR, SoftThreshold
from .structured import Structured
from .woodfisher import WoodFisher, fisher_inverse_blocks, obs_prune

__all__ = [
    "ACDC",
    "FAMILIES",
    "GMP",
    "LTH",
    "METHODS",
    "SCOPES",
    "STEMS",
    "STR",
    "ContinuedControl",
    "Control",
    "GMPScratch",
    "RandomInit",
    "RigL5x",
    "DENSE",
    "Dense",
    "control_of",
    "eval_interpolation",
    "is_sparse",
    "Method",
    "RigL",
    "SoftThreshold",
    "Structured",
    "WoodFisher",
    "cubic_schedule",
    "erk_densities",
    "family",
    "fisher_inverse_blocks",
    "hyperparameters",
    "magnitude",
    "magnitude_masks",
    "make",
    "masks_from_scores",
    "names",
    "obs_prune",
    "register",
    "reported_in",
    "target_sparsity",
    "targets",
    "topk_mask",
]

# The one list of upstream methods (name -> recipe class); upstream, summary and sweeps read it.
# Controls (family "control") are the budget-matched dense runs of the sparse methods (Method.control).
METHODS: dict[str, type[Method]] = {
    "dense": Dense,
    "dense_2x": ContinuedControl,
    "dense_2x_scratch": Control,
    "dense_5x": Control,
    "gmp": GMP,
    "woodfisher": WoodFisher,
    "acdc": ACDC,
    "str": STR,
    "rigl_erk_1x": RigL,
    "rigl_erk_5x": RigL5x,
    "lth_t": LTH,
    "gmp_scratch": GMPScratch,
    "structured": Structured,
    "random_init": RandomInit,
}

# the dense model at D: the reference of relative errors, task difficulty and the released results'
# contrasts, and the model every from-dense method starts from
DENSE = "dense"


def register(name: str):
    """Add a recipe under `name` (a class decorator): with its params entry (`upstream.methods.<name>`,
    the keys its `hyperparameters` declare) it is a method of the study like the paper's.

        @prune.register("my_method")
        class MyMethod(prune.Method):
            family, hyperparameters = "progressive", {"budget": float, "end": float}
    """

    def add(cls: type[Method]) -> type[Method]:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is registered already ({METHODS[name].__name__})")
        METHODS[name] = cls
        return cls

    return add


def hyperparameters() -> dict[str, dict[str, type]]:
    """name -> {key: type} of every registered method (the schema of `upstream.methods`)."""
    return {n: dict(c.hyperparameters) for n, c in METHODS.items()}


def family(method: str) -> str:
    return METHODS[method].family


def is_sparse(method: str) -> bool:
    """False for dense and the controls (their models have sparsity 0)."""
    check_choice("method", method, METHODS)
    return METHODS[method].sparse


def control_of(method: str) -> str | None:
    """The budget-matched control of a sparse method (the same run at target sparsity 0), else None."""
    check_choice("method", method, METHODS)
    return METHODS[method].control


def eval_interpolation(method: str) -> str:
    """How the published models of `method` are resized at evaluation: "bilinear" | "bicubic" (RigL)."""
    check_choice("method", method, METHODS)
    return METHODS[method].eval_interpolation


def reported_in(method: str, finetune: str) -> bool:
    """Whether the paper reports `method` in `finetune` (LTH-T: full finetuning only); a method only
    the released results have (M-FAC) in both."""
    return finetune in (METHODS[method].finetunes if method in METHODS else ("linear", "full"))


def names(family: str | None = None) -> list[str]:
    """Method names, optionally of one family (progressive, regularization, lottery_ticket, ...)."""
    return [n for n, c in METHODS.items() if family in (None, c.family)]


def make(method: str, target: float, total_steps: int, **hp) -> Method:
    check_choice("method", method, METHODS)
    m = METHODS[method](target=target, total_steps=total_steps, **hp)
    m.name = method
    return m


def _import_every_module() -> None:
    """Import every module of this folder, so that a new `prune/<name>.py` whose class carries
    `@prune.register("<name>")` is a method of every process (a sweep's kernels too), not only of
    the one that happened to import it."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


_import_every_module()
