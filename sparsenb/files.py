"""Files that parallel or killed runs cannot corrupt: atomic writes, locks, claims, digests.

with files.atomic(path) as tmp:       # write tmp; it replaces `path` only when the block succeeds
    df.to_csv(tmp)                    # (a full disk: one UserError naming `path`, the old file intact)
files.torch_save(obj, path)           # torch.save through `atomic`
with files.locked(path):              # an exclusive lock beside `path` (waits for the holder)
    ...
claim = files.claim(path)             # the same lock without waiting: None if another holds it
                                      # (or a lease: taken over when not renewed for LEASE_S)
files.sha256(path)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from . import evidence
from .errors import UserError
from .paths import not_writable

FULL = (errno.ENOSPC, errno.EDQUOT)
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)


@contextlib.contextmanager
def _writing(path, final: Path | None = None) -> Iterator[None]:
    """An OSError of the file system refusing a write as one UserError naming the path: a full disk
    or quota (the file `final` keeps what it had: run the same command again once there is space), or
    a folder that cannot be written (read-only, no permission, a file where a folder should be)."""
    try:
        yield
    except OSError as e:
        where = final or Path(getattr(e, "filename", None) or path)
        if e.errno in FULL:
            kept = "the file there is intact" if where.exists() else "nothing was written there"
            raise UserError(
                f"no space left writing {where} ({e.strerror}); {kept}: free space on {where.parent} and run "
                "the same command again (it goes on from there)"
            ) from e
        if e.errno in UNWRITABLE:
            raise not_writable(getattr(e, "filename", None) or path, e) from None
        raise


@contextlib.contextmanager
def atomic(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that append one do not); it
    replaces `path` when the block ends without error and is removed when it fails, so a killed or
    failed write never leaves a truncated file under the final name (a killed one may leave the
    hidden temp file: readers skip names that start with a dot). A full disk or quota is one UserError
    naming `path`."""
    path = Path(path)
    with _writing(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        with _writing(tmp, path):
            yield tmp
            evidence.check_replace(path, tmp)  # a committed file of the study: the same bytes, or refused
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def torch_save(obj, path: str | os.PathLike) -> Path:
    """torch.save(obj) to `path` through `atomic`, via a file object: a full disk is then an OSError
    (torch's own writer turns it into an opaque RuntimeError)."""
    import torch

    try:
        with atomic(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except RuntimeError as e:  # torch's zip writer: "[enforce fail at inline_container.cc] ... file write failed"
        if "inline_container" not in str(e) and "write" not in str(e):
            raise
        raise UserError(
            f"no space left writing {path} (or a file-size limit, ulimit -f): nothing was written there; free "
            "space and run the same command again (it goes on from there)"
        ) from None
    return Path(path)


def unfinished(path: str | os.PathLike) -> bool:
    """Whether `path` is the temp file of a write in progress or killed (`atomic`'s hidden name): never
    a result to read, whole as it may look."""
    return Path(path).name.startswith(".") and ".tmp" in Path(path).name


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_csv(path: str | os.PathLike, table, **kw) -> Path:
    """`table.to_csv(path, index=False, **kw)` through `atomic`."""
    with atomic(path) as tmp:
        table.to_csv(tmp, index=False, **kw)
    return Path(path)


def remove(path: str | os.PathLike) -> None:
    """Delete `path` unless it is committed evidence (then one error: sparsenb.evidence)."""
    evidence.check_delete(path)
    Path(path).unlink(missing_ok=True)


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


LEASE_S = 600.0  # a claim not renewed for this long is taken over: its holder died where its lock outlives it


class Claim:
    """A held claim: the locked file, whose mtime a daemon thread renews every LEASE_S / 4 (the lease
    others read); `close()` releases it, and so does the death of this process."""

    def __init__(self, f):
        self.file, self._stop = f, threading.Event()
        threading.Thread(target=self._renew, daemon=True).start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_S / 4):
            with contextlib.suppress(OSError, ValueError):  # ValueError: closed meanwhile
                os.utime(self.file.fileno())

    def close(self) -> None:
        self._stop.set()
        self.file.close()


def claim(path: str | os.PathLike, note: str = "") -> Claim | None:
    """The lock of `locked` without waiting: a `Claim` (close it to release; the lock also goes when
    its process dies) or None when another process holds it -- how parallel workers share a list of
    jobs. `note` (who holds it) is written into the lock file for `holder` to read. A lock whose lease
    ran out (not renewed for LEASE_S: a runner that died on another host, whose lock the file server
    keeps) is moved aside to `<lock>.stale` and the claim taken over."""
    lock = _lock_file(path)
    for _ in range(3):
        with _writing(lock):
            f = open(lock, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            if not _expired_moved_aside(lock):
                return None
            continue
        try:
            current = os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if not current:  # moved aside between open and flock: lock the file now under the name
            f.close()
            continue
        if note:
            f.seek(0)
            f.truncate()
            f.write(note)
            f.flush()
        os.utime(f.fileno())  # the lease starts now (an old lock file keeps its old time)
        return Claim(f)
    return None


def _expired_moved_aside(lock: Path) -> bool:
    """Move `lock` aside when its lease ran out (one claimant at a time): whether it is gone now."""
    with locked(lock):
        try:
            age = time.time() - os.stat(lock).st_mtime
        except FileNotFoundError:
            return True
        if age < LEASE_S:
            return False
        os.replace(lock, lock.with_name(lock.name + ".stale"))
        return True


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
