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


class Runs:
    """One progress line for a sweep: runs done of all, how many failed, and an ETA from the mean
    wall time per finished run so far. In a terminal a live tqdm bar (each run's line printed above
    it); elsewhere one log line per finished run with the same counts.

        with progress.Runs(len(todo), "mini_linear") as shown:
            for name, status, secs, err in results:
                shown.done(name, status, secs, err)     # status: "ok", "FAIL" or "busy"
    """

    def __init__(self, total: int, desc: str = "runs"):
        import time

        self.total, self.desc, self.t0 = total, desc, time.time()
        self.finished, self.failed, self.busy = 0, 0, 0
        self.bar = tqdm(total=total, desc=desc, unit="run", leave=True, disable=not interactive(), dynamic_ncols=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.bar.close()

    def eta(self) -> str:
        """The time left at the mean pace so far ('?' before the first run ends)."""
        import time

        if not self.finished:
            return "?"
        left = (time.time() - self.t0) / self.finished * (self.total - self.finished)
        return f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"

    def done(self, name: str, status: str, seconds: float, err: str = "") -> None:
        self.finished += 1
        self.failed += status == "FAIL"
        self.busy += status == "busy"
        line = f"  {status:<4} {name} ({seconds:.0f} s)" + (f"  {err}" if err else "")
        counts = f"{self.finished}/{self.total} done, {self.failed} failed"
        if self.bar.disable:
            log(f"  [{counts}, ETA {self.eta()}]{line}")
        else:
            self.bar.write(line)
            self.bar.set_postfix_str(f"{self.failed} failed", refresh=False)
            self.bar.update(1)
