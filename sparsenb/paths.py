"""Where outputs go. Everything the study writes lives under one outputs root: the repository's
`outputs/` unless SPARSENB_OUTPUTS names another folder (the tests point it at a temporary one, so
`make test` leaves the repository as it found it).

    paths.outputs()                       # Path of the outputs root
    paths.resolve("outputs/cache/data")   # a profile's path value -> absolute Path
    paths.output("figures", "02_linear_ft")   # a notebook's folder for tables and figures (made)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def outputs() -> Path:
    """The outputs root; one error when it (or a folder above it) is a file."""
    env = os.environ.get("SPARSENB_OUTPUTS")
    root = Path(env).expanduser().resolve() if env else ROOT / "outputs"
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(
            f"the outputs root {root}{' (SPARSENB_OUTPUTS)' if env else ''} "
            f"{'is a file' if existing == root else f'is under a file, {existing}'}, not a folder: point "
            f"SPARSENB_OUTPUTS at a folder (made if missing)"
        )
    return root


def writable() -> Path:
    """The outputs root, made if missing, once a test file could be written in it: a run that could
    not write its record is refused before any work, with one line."""
    return _made_writable(outputs())


def _made_writable(folder: Path) -> Path:
    """`folder`, made if missing, once a test file could be written in it (else one line)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise not_writable(folder, e) from None
    return folder


def not_writable(path: str | os.PathLike, e: OSError) -> ConfigError:
    """The one-line error of a write refused by the file system (read-only, no permission, a file
    where a folder should be, disk full)."""
    root = outputs()
    fix = (
        f"make the outputs folder {root} writable, or point SPARSENB_OUTPUTS at a folder you can write"
        if Path(path).resolve().is_relative_to(root)
        else "make its folder writable, or set the profile's path key that names it to one you can write"
    )
    return ConfigError(f"cannot write {path} ({e.strerror or type(e).__name__}): {fix}")


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


def output(*parts: str, overrides: dict | None = None) -> Path:
    """A folder under the outputs root for a notebook's tables and figures (created); a run with
    `overrides` gets one of its own beside its records: cache/overrides/<slug>/<parts>, or the
    folder above the `results_root` they set (the demo's cache/demo/<parts>) -- never the committed one."""
    parts = [str(p) for p in parts]
    if isinstance(overrides, str):  # papermill's -p overrides gives JSON text
        import json

        overrides = json.loads(overrides) if overrides.strip() else {}
    if overrides and overrides.get("results_root"):
        return _made_writable(resolve(overrides["results_root"]).parent.joinpath(*parts))
    if overrides:
        parts = ["cache", "overrides", slug(overrides), *parts]
    return _made_writable(outputs().joinpath(*parts))


def slug(overrides: dict) -> str:
    """A folder name for a run's overrides, e.g. {"linear.epochs": 5} -> "linear.epochs=5"."""
    import re

    text = ",".join(f"{k}={overrides[k]}" for k in sorted(overrides))
    text = re.sub(r"[^A-Za-z0-9._=,-]+", "_", text)
    if len(text) > 80:
        import hashlib

        text = f"{text[:60]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return text
