"""A notebook's declared parameters: its `parameters` cell (papermill) read as {name: default}.

nbparams.defaults("03_full_ft")      # {"profile": "mini", "method": "gmp", ...}
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from . import paths
from .errors import ConfigError

NOTEBOOKS = paths.ROOT / "notebooks"


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
