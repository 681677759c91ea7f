"""The one run contract: (notebook, parameters) -> (configuration, run spec).

A notebook's parameters cell declares its parameters and their defaults; `resolve` is the only place
that turns them into the profile's configuration and the run's spec (`sparsenb.specs`: frozen, typed,
its hash the run id). The notebooks call it through `setup` (which first refuses a parameter papermill
injected that the notebook does not declare, and an outputs folder it cannot write), and the sweep
calls it with a grid point (the notebook's own defaults, read from its parameters cell, fill in the
rest) -- so a sweep predicts exactly the record a notebook will write, and bad input is refused
before any work.

    cfg, spec = runs.setup("02_linear_ft", method="acdc", sparsity=0.9, dataset="shapes10")
    spec = runs.spec("03_full_ft", method="gmp", overrides={"full.epochs": 2})
    cfg, cell = runs.setup_cell("02_linear_ft", method="acdc", upstream_seed="0,1,2")  # three specs

A cell is the runs that differ only in a parameter the notebook takes several values of (its kind's
`cell_over`: 02/03's `upstream_seed`), run one after another in one kernel; each of its specs is
exactly the spec of that run alone, so a cell writes the records the single runs would.

Every notebook declares `overrides` (dotted config keys -> values, e.g. {"upstream.D": 7}): a
parameter like any other, applied over the profile, recorded in the spec and so in the run id.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

from . import config, paths, planning, specs
from .config import Config
from .errors import ConfigError
from .nbparams import NOTEBOOKS, defaults, notebook_path  # noqa: F401  (the run contract reads them here)


def parameters(notebook: str | Path, params: dict) -> dict:
    """`params` over the notebook's defaults; a parameter the notebook does not declare is refused
    (papermill would only warn and run with the default)."""
    declared = defaults(notebook)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ConfigError(
            f"{Path(notebook).stem} has no parameter{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
            f"its parameters: {', '.join(declared)}"
        )
    return {**declared, **params}


def injected() -> list[str]:
    """The names papermill injected into this kernel: the assignments of the last `# Parameters`
    cell it ran (papermill's `injected-parameters` cell, whether papermill's CLI or API, a sweep, or
    nbval or JupyterLab running a notebook papermill wrote). Empty outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    shell = get_ipython()
    history = (shell.user_ns.get("In") or []) if shell is not None else []  # the sources of the cells it ran
    cells = [c for c in history if c.lstrip().startswith("# Parameters")]
    try:
        tree = ast.parse(cells[-1]) if cells else ast.Module(body=[], type_ignores=[])
    except SyntaxError:
        return []
    targets = [t for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign)) for t in _targets(node)]
    return [n for n in dict.fromkeys(targets) if not n.startswith("PAPERMILL_")]  # --inject-paths adds those


def _targets(node) -> list[str]:
    names = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [t.id for t in names if isinstance(t, ast.Name)]


def refuse_undeclared(notebook: str | Path) -> None:
    """Before any work: a parameter papermill injected that the notebook does not declare is refused
    (papermill itself only warns "Passed unknown parameter" and runs with the defaults)."""
    unknown = [n for n in injected() if n not in defaults(notebook)]
    if unknown:
        parameters(notebook, dict.fromkeys(unknown))


def setup(notebook: str, **params) -> tuple[Config, specs.Spec | None]:
    """(profile configuration, run spec) of one run of a notebook, every value checked first; the
    spec is None for a notebook that records nothing (00, 04, 07; 08 in summary mode). A parameter
    injected into the notebook that it does not declare is refused (`refuse_undeclared`), and so is
    an outputs folder that cannot be written; a finetuning run planned for over an hour prints its
    plan first (`sparsenb.planning`).
    The machine parameters (`data_root`, `checkpoint_root`, `num_workers`, `backend`, `device`; empty:
    the profile's value or its environment variable) say where things are, never what is computed,
    so they are in no run id."""
    refuse_undeclared(notebook)
    paths.writable()  # the outputs root takes the run's record (one line when it cannot)
    cfg, spec = resolve(notebook, **params)
    if isinstance(spec, specs.FinetuneSpec):  # over an hour: says so first
        planning.announce(Path(notebook).stem, cfg, spec.config(), bool(params.get("epochs")))
    return cfg, spec


def setup_cell(notebook: str, **params) -> tuple[Config, list[specs.Spec]]:
    """`setup` of a cell: (configuration, the spec of each of its runs, in the order given), e.g.
    `upstream_seed="0,1,2"` (or [0, 1, 2]) on 02/03 -- each the spec `setup` makes of that run alone."""
    refuse_undeclared(notebook)
    paths.writable()
    resolved = [resolve(notebook, **p) for p in cell_params(notebook, params)]
    cfg, first = resolved[0]
    if isinstance(first, specs.FinetuneSpec):  # over an hour: says so first
        planning.announce(Path(notebook).stem, cfg, first.config(), bool(params.get("epochs")))
    return cfg, [s for _, s in resolved]


def cell_params(notebook: str, params: dict) -> list[dict]:
    """The parameters of each run of a cell: `params` with one value of each `cell_over` key of the
    notebook's kind (every combination, in the order given); other notebooks: `params` alone."""
    kind = kind_of(notebook)
    keys = kind.cell_over if kind else ()
    p = parameters(notebook, params)
    values = [values_of(k, p[k]) for k in keys]
    return [{**params, **dict(zip(keys, combo))} for combo in itertools.product(*values)]


def values_of(key: str, value) -> list[int]:
    """The values of a cell parameter: one whole number, a list of them, or a comma-separated string
    ("0,1,2", as `papermill -p upstream_seed 0,1,2` passes it); a repeated value counts once."""
    if isinstance(value, str):
        value = [int(v) if v.strip().isdigit() else v.strip() for v in value.split(",") if v.strip()]
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ConfigError(f'{key} is empty: give one value (0) or several ("0,1,2" or [0, 1, 2])')
    return list(dict.fromkeys(specs.count(key, v) for v in values))


def resolve(notebook: str, **params) -> tuple[Config, specs.Spec | None]:
    """`setup` without looking at the kernel or the outputs folder: what a sweep predicts a run's
    record from."""
    return _resolve(notebook, params, checked=True)


def spec(notebook: str, **params) -> specs.Spec | None:
    """The spec of a run of `notebook` (its configuration at `.cfg`), values checked."""
    return _resolve(notebook, params, checked=True)[1]


def unchecked(notebook: str, **params) -> specs.Spec | None:
    """The spec as the current configuration makes it, values not checked and without the digests
    of its input files: what the summary compares a record's cell with (no data or checkpoint needed)."""
    return _resolve(notebook, params, checked=False)[1]


def kind_of(notebook: str | Path) -> type[specs.Spec] | None:
    """The Spec class of a notebook that records results (`specs.KINDS`), else None."""
    return specs.KINDS.get(Path(notebook).stem)


def _resolve(notebook: str, params: dict, checked: bool) -> tuple[Config, specs.Spec | None]:
    p = parameters(notebook, params)
    kind = kind_of(notebook)
    over = {**specs.overrides_of(p), **machine(p), **(kind.config_overrides(p) if kind else {})}
    cfg = config.load(p.get("profile") or "mini", over)
    if kind is None:
        if "dataset" in params:
            specs.check_dataset(cfg, p["dataset"])
        return cfg, None
    return cfg, specs.build(kind, cfg, p, checked=checked, inputs=checked)


def machine(p: dict) -> dict:
    """The machine parameters a run was given (non-empty), as config overrides."""
    out = {k: p[k] for k in config.MACHINE_KEYS if p.get(k) not in (None, "")}
    if isinstance(out.get("num_workers"), str) and out["num_workers"] != "auto":
        n = out["num_workers"]
        out["num_workers"] = specs.count("num_workers", int(n) if n.isdigit() else -1)
    return out


def execute_notebook(notebook: str | Path, output: str | Path, params: dict) -> Path:
    """Run a notebook as a sweep does: papermill's API, parameters injected, kernel `python3`, the
    notebooks folder as working directory; the executed copy goes to `output`."""
    import papermill as pm

    path = notebook_path(notebook)
    pm.execute_notebook(
        str(path), str(output), parameters=params, kernel_name="python3", cwd=str(path.parent), progress_bar=False
    )
    return Path(output)
