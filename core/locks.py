"""Locks between convsim processes (the app and commands run at once), on a lock file.

Contract:
- `acquire(path, shared=False, wait=0.0)` locks the file `path` (created, private, if absent)
  and returns a `Held`; `Held.release()` (or the end of its `with` block) lets go, and so does
  the end of the process, however it ends: a kill never leaves a lock behind.
- An exclusive hold excludes every other hold; shared holds admit one another. A hold that
  cannot be had within `wait` seconds raises `Busy`, naming the file.
- Each hold is its own open file: two holds in one process exclude each other as two processes
  do (so do not take an exclusive hold on a file this thread already holds).
- `is_held(path)` says whether anyone holds `path` now, without creating it and without
  keeping anyone out for longer than the look takes (it takes a shared hold and lets go).
- Where the file system has no locks (some network file systems), a hold holds nothing. On
  NFS, Linux turns `flock` into POSIX record locks, which belong to the whole process: there,
  letting go of one hold lets go of every hold the process has on that file.
- POSIX: `flock`. Windows: byte ranges (`msvcrt.locking`): a shared hold locks one of `SLOTS`
  bytes, an exclusive hold all of them.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

__all__ = ["Busy", "Held", "acquire", "is_held"]

SLOTS = 64
"""How many shared holds one lock file admits on Windows."""
POLL_S = 0.05
NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})
WINDOWS_BUSY = frozenset({errno.EACCES, errno.EDEADLK})  # what msvcrt.locking says when held


class Busy(OSError):
    """Another hold on `path` (in this process or another) keeps this one out."""

    def __init__(self, path: Path, shared: bool) -> None:
        kind = "shared" if shared else "exclusive"
        super().__init__(errno.EAGAIN, f"{path} is locked: no {kind} hold on it was free")
        self.path = path


class Held:
    """A lock on a file, until `release()`."""

    def __init__(self, path: Path, fd: int, span: tuple[int, int] | None) -> None:
        self.path = path
        self._fd: int | None = fd
        self._span = span

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if sys.platform == "win32" and self._span is not None:
                import msvcrt

                os.lseek(fd, self._span[0], os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, self._span[1])
        finally:
            os.close(fd)  # on POSIX this lets go of the flock

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(path: Path, *, shared: bool = False, wait: float = 0.0) -> Held:
    """Hold a lock on `path` (see the module's contract); raises `Busy` after `wait` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                return Held(path, fd, _try(fd, shared))
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(path, shared) from None
                time.sleep(POLL_S)
    except BaseException:
        os.close(fd)
        raise


def is_held(path: Path) -> bool:
    """Whether a hold on `path` keeps a shared one out now (False when there is no such file)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False  # no file (or no access to it): nobody made a hold there
    try:
        span = _try(fd, shared=True)
    except OSError as e:
        os.close(fd)
        return isinstance(e, BlockingIOError)
    Held(path, fd, span).release()
    return False


def _try(fd: int, shared: bool) -> tuple[int, int] | None:
    """Lock `fd` without waiting: the byte span held (Windows), None (POSIX, or no locks
    here). Raises BlockingIOError when another hold keeps this one out."""
    if sys.platform == "win32":
        import msvcrt

        spans = [(1 + slot, 1) for slot in range(SLOTS)] if shared else [(1, SLOTS)]
        for start, length in spans:
            os.lseek(fd, start, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, length)
            except OSError as e:
                if e.errno in WINDOWS_BUSY:
                    continue
                return None  # no byte-range locks here (a network share): nothing held
            return start, length
        raise BlockingIOError(errno.EAGAIN, "locked")
    import fcntl

    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError as e:
        if e.errno not in NO_LOCKS:
            raise
    return None
