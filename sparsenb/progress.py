"""Progress bars that behave everywhere: a live tqdm bar in a terminal, one log line per epoch
under papermill / nbval / CI (no thousands of carriage-return updates in the saved notebook)."""

from __future__ import annotations

import os
import sys

# plain tqdm: a bar is drawn only in a terminal (below) anyway. tqdm.auto's class calls iter() on
# its iterable when built and again when iterated (a DataLoader epoch started twice), and in a Jupyter
# kernel without ipywidgets it warns "IProgress not found" on import.
from tqdm import tqdm


def interactive() -> bool:
    """True in a terminal; False when stdout is captured (papermill, nbval, CI, pipes)."""
    if os.environ.get("SPARSENB_PROGRESS") in ("0", "1"):
        return os.environ["SPARSENB_PROGRESS"] == "1"
    if os.environ.get("CI"):
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def bar(iterable=None, desc: str = "", total: int | None = None, leave: bool = False):
    """tqdm over `iterable`, silent when not interactive."""
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=not interactive(), dynamic_ncols=True)


def log(msg: str) -> None:
    """One line, flushed (shows up live in papermill's output)."""
    print(msg, flush=True)
