"""The committed evidence: every file git tracks under the repository's outputs/ (the reference
upstream set, the study's records, the summaries). Ordinary runs never change it: a write that would
replace such a file with other bytes, or delete it, is refused with one line -- unless the command
that makes it is run with SPARSENB_REPLACE_EVIDENCE=1 (the explicit flag: `make study`'s and
`upstream build`'s `--replace`). A write of the same bytes (the same run, reproduced) passes.

    evidence.committed(path)          # is `path` committed evidence?
    evidence.check_replace(path, new) # before `new` (a finished temp file) replaces `path`
    evidence.check_delete(path)       # before `path` is removed

Only the repository's own outputs/ is protected: a run pointed elsewhere (SPARSENB_OUTPUTS, a
profile's root of its own) writes freely. Without git (an unpacked archive) nothing is protected.
"""

from __future__ import annotations

import filecmp
import functools
import os
import subprocess
from pathlib import Path

from .errors import UserError
from .paths import ROOT

FLAG = "SPARSENB_REPLACE_EVIDENCE"


class EvidenceError(UserError):
    """A run would change or delete a committed file of the study."""


@functools.lru_cache(maxsize=1)
def _tracked() -> frozenset[str]:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--", "outputs"], capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(p for p in out.decode().split("\0") if p)


# resume state, committed only so that a build goes on from it elsewhere: never evidence
TRANSIENT = (".partial.pt",)


def committed(path: str | os.PathLike) -> bool:
    """Whether `path` is a file git tracks under the repository's outputs/ (resume snapshots aside)."""
    p = Path(path).resolve()
    if not p.is_relative_to(ROOT / "outputs") or p.name.endswith(TRANSIENT):
        return False
    return str(p.relative_to(ROOT)) in _tracked()


def replacing_allowed() -> bool:
    return os.environ.get(FLAG) == "1"


def _refuse(path: Path, what: str) -> EvidenceError:
    rel = path.resolve().relative_to(ROOT)
    return EvidenceError(
        f"{rel} is committed evidence and this run would {what} it: nothing was changed. Run with overrides "
        f"or another outputs root (SPARSENB_OUTPUTS=/tmp/mine) to keep your results apart, or set {FLAG}=1 "
        f"if you mean to replace the study's file (then commit it)"
    )


def check_replace(path: str | os.PathLike, new: str | os.PathLike) -> None:
    """Refuse (EvidenceError) when `new` would replace committed `path` with other bytes -- unless
    `path` is a table that only grows (CSV, JSON lines: every line it had is still there, e.g. a new
    model's row in a manifest)."""
    path = Path(path)
    if not path.exists() or not committed(path) or replacing_allowed() or filecmp.cmp(path, new, shallow=False):
        return
    if not _grows(path, Path(new)):
        raise _refuse(path, "change")


def _grows(old: Path, new: Path) -> bool:
    if old.suffix not in (".csv", ".jsonl"):
        return False
    from collections import Counter

    before, after = old.read_text().splitlines(), new.read_text().splitlines()
    same_header = old.suffix == ".jsonl" or before[:1] == after[:1]
    return same_header and not Counter(before) - Counter(after)


def check_delete(path: str | os.PathLike) -> None:
    path = Path(path)
    if path.exists() and committed(path) and not replacing_allowed():
        raise _refuse(path, "delete")
