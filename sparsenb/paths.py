"""Where outputs go. Everything the study writes lives under one outputs root: the repository's
`outputs/` unless SPARSENB_OUTPUTS names another folder (the tests point it at a temporary one, so
`make test` leaves the repository as it found it).

    paths.outputs()                       # Path of the outputs root
    paths.resolve("outputs/cache/data")   # a profile's path value -> absolute Path
    paths.output("figures", "02_linear_ft")   # a notebook's folder for tables and figures (made)
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def outputs() -> Path:
    env = os.environ.get("SPARSENB_OUTPUTS")
    return Path(env).expanduser().resolve() if env else ROOT / "outputs"


def resolve(value: str | os.PathLike) -> Path:
    """Absolute paths stay; `outputs/...` is under the outputs root; other relative paths are
    relative to the project root (whatever the working directory: papermill, nbval and JupyterLab
    each start kernels in a different one)."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    if p.parts and p.parts[0] == "outputs":
        return outputs().joinpath(*p.parts[1:])
    return ROOT / p


def output(*parts: str) -> Path:
    """A folder under the outputs root for a notebook's tables and figures (created)."""
    out = outputs().joinpath(*map(str, parts))
    out.mkdir(parents=True, exist_ok=True)
    return out
