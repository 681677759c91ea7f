"""The one run contract: (notebook, parameters) -> (configuration, run configuration).

A notebook's parameters cell declares its parameters and their defaults; `resolve` is the only place
that turns them into the profile's configuration and the run configuration whose hash is the run
id. The notebooks call it through `setup` (which first refuses a parameter papermill injected that
the notebook does not declare, and an outputs folder it cannot write), and the sweep calls it with a
grid point (the notebook's own defaults, read from its parameters cell, fill in the rest) -- so a
sweep predicts exactly the record a notebook will write, and bad input is refused before any work.

    cfg, run = runs.setup("02_linear_ft", method="acdc", sparsity=0.9, dataset="shapes10")
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from . import config, data, finetune, paths, planning, prune, upstream
from .config import Config
from .errors import ConfigError, check_choice

NOTEBOOKS = paths.ROOT / "notebooks"
FINETUNE_OF = {"02_linear_ft": "linear", "03_full_ft": "full"}
RECORDING = ("01_upstream", *FINETUNE_OF)  # the notebooks whose record a sweep can predict
DOWNSTREAM = (*FINETUNE_OF, "05_speedup", "06_extensions")  # their `dataset` is a downstream task


def notebook_path(notebook: str | Path) -> Path:
    p = Path(notebook)
    return p if p.suffix == ".ipynb" else NOTEBOOKS / f"{notebook}.ipynb"


@functools.lru_cache(maxsize=None)
def _defaults(path: str, mtime: float) -> dict:
    import papermill as pm

    return {k: ast.literal_eval(v["default"]) for k, v in pm.inspect_notebook(path).items()}


def defaults(notebook: str | Path) -> dict:
    """The parameters a notebook declares (its parameters cell) with their default values."""
    path = notebook_path(notebook)
    if not path.is_file():
        raise ConfigError(
            f"no notebook {path}; the notebooks are: {', '.join(p.stem for p in sorted(NOTEBOOKS.glob('*.ipynb')))}"
        )
    return dict(_defaults(str(path), path.stat().st_mtime))


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


def setup(notebook: str, **params) -> tuple[Config, dict | None]:
    """(profile configuration, run configuration) of one run of a recording notebook (01, 02, 03),
    every value checked first (`check`); for the other notebooks the run configuration is None.
    A parameter injected into the notebook that it does not declare is refused (`refuse_undeclared`),
    and so is an outputs folder that cannot be written; a finetuning run planned for over an hour
    prints its plan first (`sparsenb.planning`).
    The machine parameters (`data_root`, `checkpoint_root`, `num_workers`, `backend`, `device`; empty:
    the profile's value or its environment variable) say where things are, never what is computed,
    so they are in no run id."""
    refuse_undeclared(notebook)
    paths.writable()  # the outputs root takes the run's record (one line when it cannot)
    cfg, run = resolve(notebook, **params)
    planning.announce(Path(notebook).stem, cfg, run, bool(params.get("epochs")))  # over an hour: says so first
    return cfg, run


def resolve(notebook: str, **params) -> tuple[Config, dict | None]:
    """`setup` without looking at the kernel or the outputs folder: what a sweep predicts a run's
    record from."""
    name = Path(notebook).stem
    p = parameters(notebook, params)
    where = machine(p)
    if name == "01_upstream":
        cfg = config.load(p["profile"], {**where, **({"arch": p["arch"]} if p["arch"] else {})})
        check(cfg, p, name)
        return cfg, upstream.run_config(cfg, p["method"], float(p["sparsity"]), int(p["seed"]))
    if name in FINETUNE_OF:
        ft = FINETUNE_OF[name]
        epochs = {f"{ft}.epochs": _count("epochs", p["epochs"])} if p["epochs"] else {}
        cfg = config.load(p["profile"], {**where, **epochs})
        check(cfg, p, name)
        return cfg, finetune.run_config(
            cfg, ft, p["method"], float(p["sparsity"]), p["dataset"], int(p["seed"]), int(p["upstream_seed"])
        )
    cfg = config.load(p.get("profile", "mini"), where)
    if "dataset" in params:
        check_dataset(cfg, name, p["dataset"])
    return cfg, None


def machine(p: dict) -> dict:
    """The machine parameters a run was given (non-empty), as config overrides."""
    out = {k: p[k] for k in config.MACHINE_KEYS if p.get(k) not in (None, "")}
    if isinstance(out.get("num_workers"), str) and out["num_workers"] != "auto":
        out["num_workers"] = _count("num_workers", int(out["num_workers"]) if out["num_workers"].isdigit() else -1)
    return out


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


def sparsities(cfg: Config, method: str) -> list[float]:
    """The sparsities a run of `method` may use: mini, the ones the profile makes (structured: its
    own); paper, those with a checkpoint under <checkpoint_root>/<method>/."""
    if cfg["profile"] == "paper":
        return sorted(s for m, s in upstream.available(cfg) if m == method)
    if not prune.is_sparse(method):
        return [0.0]
    return [
        float(s) for s in (cfg["upstream"]["structured_sparsities"] if method == "structured" else cfg["sparsities"])
    ]


def check(cfg: Config, p: dict, notebook: str = "02_linear_ft") -> None:
    """The values of a run, before any work: a method the registry has, a sparsity in [0, 1) that the
    profile makes (or a checkpoint exists for), dense only at 0, seeds >= 0, a dataset of the profile."""
    check_choice("method", p["method"], prune.METHODS)
    sp = p["sparsity"]
    if isinstance(sp, bool) or not isinstance(sp, (int, float)) or not 0 <= sp < 1:
        raise ConfigError(f"sparsity must be a fraction in [0, 1) (0.9: 90% of the weights zero), got {sp!r}")
    valid = sparsities(cfg, p["method"])
    if not any(abs(float(sp) - v) < 1e-9 for v in valid):
        where = (
            f"with a checkpoint under {Path(cfg['checkpoint_root']) / p['method']}"
            if cfg["profile"] == "paper"
            else f"the {cfg['profile']} profile makes"
        )
        listed = ", ".join(f"{v:g}" for v in valid) or "none"
        raise ConfigError(
            f"{p['method']} at sparsity {sp!r}: the sparsities {where} are {listed}"
            + ("; dense models have sparsity 0: pass -p sparsity 0" if valid == [0.0] else "")
            + (
                "; place the published checkpoint there as <method>/<sparsity>.pth, or point -p checkpoint_root "
                "(SPARSENB_CHECKPOINT_ROOT) at your copy"
                if cfg["profile"] == "paper"
                else ""
            )
        )
    for key in ("seed", "upstream_seed"):
        if key in p:
            _count(key, p[key])
    if "upstream_seed" in p and cfg.get("upstream"):  # the reference set's seeds only (mini)
        upstream.check_seed(cfg, p["upstream_seed"])
    if "dataset" in p:
        check_dataset(cfg, notebook, p["dataset"])


def check_dataset(cfg: Config, notebook: str, dataset) -> None:
    """A dataset of the profile; for the downstream notebooks (02, 03, 05, 06) a downstream task:
    the upstream task is what the models were trained on, not a transfer target."""
    valid = data.names(cfg["profile"])
    if notebook in DOWNSTREAM:
        downstream = [n for n in valid if data.info(n).kind != "upstream"]
        if dataset in valid and dataset not in downstream:
            raise ConfigError(
                f"dataset {dataset!r} is the {cfg['profile']} profile's upstream task, not a downstream one; "
                f"{notebook} transfers to: {', '.join(downstream)}"
            )
        valid = downstream
    check_choice(f"dataset of the {cfg['profile']} profile", dataset, valid)


def execute_notebook(notebook: str | Path, output: str | Path, params: dict) -> Path:
    """Run a notebook as a sweep does: papermill's API, parameters injected, kernel `python3`, the
    notebooks folder as working directory; the executed copy goes to `output`."""
    import papermill as pm

    path = notebook_path(notebook)
    pm.execute_notebook(
        str(path), str(output), parameters=params, kernel_name="python3", cwd=str(path.parent), progress_bar=False
    )
    return Path(output)
