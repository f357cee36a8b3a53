"""Writing files so that a crash, a kill or a full disk never leaves half of one behind.

Every file convsim writes (records, datasets, transcripts, checkpoints, GGUFs) is written to a
temporary name beside its target, flushed to disk, and renamed over the target in one step.

Contract:
- `replacing(target)` yields a temporary path beside `target`; when the block succeeds the file
  there is synced and renamed over `target`, when it raises the temporary file is removed and
  `target` is exactly as it was (absent, or the previous version).
- `write_text`, `write_json` and `write_jsonl` are that, for the usual contents.
- Running out of room (a full disk, a quota, a file-size limit) raises `DiskFullError` naming
  the file, with everything as it was before.
- `publishing(parent)` does the same for a whole folder: build it in the yielded temporary folder,
  and `publish(final)` moves it into place; a folder never published is removed. A folder that
  `final` already names is replaced: it is moved to `<final>.old` first and removed after, so a
  crash between the two renames leaves the previous version there (the checkpoint reader falls
  back on it; other readers rebuild what is missing).
- `read_text(path, error)` reads a UTF-8 file the user named, raising `error(message)` with a
  message that names the file and what is wrong (missing, unreadable, not UTF-8).
- `json_loads(text)` parses JSON a user gave (an export, a transcript, a pairs or feedback file)
  and fails only with `json.JSONDecodeError`, line and column included, however it is broken.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# What a write fails with when there is no room: disk full, quota, file-size limit (RLIMIT_FSIZE).
NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class DiskFullError(OSError):
    """No room to write `path`. Whatever it was replacing is intact."""

    def __init__(self, path: Path | str, detail: str = "") -> None:
        why = f" ({detail})" if detail else ""
        super().__init__(
            errno.ENOSPC,
            f"{path}: no room to write it: the disk is full or a size limit was reached{why}; "
            "nothing was changed: free some space and try again",
        )
        self.path = Path(path)
        self.detail = detail

    def __str__(self) -> str:
        return str(self.strerror)


def read_text(path: Path | str, error: Callable[[str], Exception]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None


@contextmanager
def no_room_as(path: Path | str) -> Iterator[None]:
    """Turn an OSError for want of room inside the block into `DiskFullError(path)`."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as e:
        if e.errno not in NO_ROOM:
            raise
        raise DiskFullError(path, e.strerror or "") from e


@contextmanager
def replacing(target: Path | str, suffix: str = ".part") -> Iterator[Path]:
    """A temporary path beside `target`, renamed over it when the block succeeds."""
    target = Path(target)
    with no_room_as(target):
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        with no_room_as(target):
            yield tmp
            _sync(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: Path | str, text: str) -> Path:
    with replacing(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: Path | str, data: Any) -> Path:
    """`data` as indented JSON (non-ASCII kept readable), ending in a newline."""
    return write_text(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(target: Path | str, rows: Iterable[Any]) -> Path:
    """One JSON value per line."""
    with replacing(target) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(target)


@contextmanager
def publishing(parent: Path) -> Iterator[tuple[Path, Callable[[Path], None]]]:
    """(staging folder, publish): fill the private staging folder under `parent`, then call
    `publish(final)` to move it to `final` in one rename. Unpublished, it is removed."""
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=parent))

    def publish(final: Path) -> None:
        for path in staging.rglob("*"):
            if path.is_file():
                _sync(path)
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)

    try:
        with no_room_as(parent):
            yield staging, publish
    except DiskFullError as e:
        if staging not in e.path.parents:
            raise
        raise DiskFullError(parent, e.detail) from e  # named by the folder, not its staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sync(path: Path) -> None:
    """Flush `path` to the disk, so the rename that follows never publishes missing data."""
    fd = os.open(path, os.O_RDWR)  # Windows refuses to flush a read-only descriptor
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # half of a UTF-16 pair


def json_loads(text: str) -> Any:
    """`json.loads` that fails only with JSONDecodeError (so with a line and column), also for a
    number too long to convert or nesting too deep to follow. A lone surrogate from a `\\u`
    escape, which no UTF-8 text can hold, becomes U+FFFD."""
    try:
        value = json.loads(text)
        return _replace_surrogates(value) if _lone_surrogate(text) else value
    except json.JSONDecodeError:
        raise
    except RecursionError as e:
        raise json.JSONDecodeError("nested too deeply", text, _too_deep(text)) from e
    except ValueError as e:  # an integer of more digits than int() converts
        long = re.search(r"[0-9]{4000,}", text)
        raise json.JSONDecodeError("number too long", text, long.start() if long else 0) from e


def _too_deep(text: str, limit: int = 500) -> int:
    """Where brackets outside strings first nest `limit` deep."""
    depth = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(m[0], 0)
        if depth >= limit:
            return m.start()
    return 0


def _lone_surrogate(text: str) -> bool:
    """Whether a `\\u` escape of a UTF-16 surrogate is not half of a pair (a damaged emoji)."""
    low_at = -1  # where the low half of the last high half must start
    for m in _SURROGATE_ESCAPE.finditer(text):
        low = m[0][3] in "cdefCDEF"
        if low != (low_at != -1) or (low and m.start() != low_at):
            return True
        low_at = -1 if low else m.end()
    return low_at != -1


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value
