"""Files that parallel or killed runs cannot corrupt: atomic writes, locks, claims, digests.

with files.atomic(path) as tmp:       # write tmp; it replaces `path` only when the block succeeds
    df.to_csv(tmp)
with files.locked(path):              # an exclusive lock beside `path` (waits for the holder)
    ...
claim = files.claim(path)             # the same lock without waiting: None if another holds it
files.sha256(path)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from .paths import not_writable

UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOSPC)


@contextlib.contextmanager
def _writing(path) -> Iterator[None]:
    """An OSError of the file system refusing a write (read-only, no permission, a file where a
    folder should be, disk full) as one UserError naming the path."""
    try:
        yield
    except OSError as e:
        if e.errno in UNWRITABLE:
            raise not_writable(getattr(e, "filename", None) or path, e) from None
        raise


@contextlib.contextmanager
def atomic(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that append one do not); it
    replaces `path` when the block ends without error and is removed when it fails, so a killed or
    failed write never leaves a truncated file under the final name."""
    path = Path(path)
    with _writing(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        with _writing(tmp):
            yield tmp
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _lock_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    with _writing(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".lock")  # appended: `a-4.5` and `a-4.0` are two locks


def _open_lock(path: str | os.PathLike, mode: str):
    lock = _lock_file(path)
    with _writing(lock):
        return open(lock, mode)


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock on `<path>.lock`: parallel runs that need the same file wait for the first
    to make it, and read-modify-write updates of a shared file never interleave."""
    with _open_lock(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def claim(path: str | os.PathLike, note: str = ""):
    """The lock of `locked` without waiting: an open file (close it to release; the lock also goes
    when its process dies) or None when another process holds it -- how parallel workers share a
    list of jobs. `note` (who holds it) is written into the lock file for `holder` to read."""
    f = _open_lock(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    if note:
        f.seek(0)
        f.truncate()
        f.write(note)
        f.flush()
    return f


def holder(path: str | os.PathLike) -> str:
    """What the current holder of `path`'s lock wrote into it ('' if nothing)."""
    try:
        return _lock_file(path).read_text().strip()
    except OSError:
        return ""


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
