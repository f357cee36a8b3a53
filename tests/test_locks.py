"""Locks between processes (`core/locks.py`), held by real other processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from convsim.core.locks import Busy, acquire, is_held

HOLDER = """
import sys, time
from pathlib import Path
from convsim.core.locks import acquire
held = acquire(Path(sys.argv[1]), shared=sys.argv[2] == "shared")
print("held", flush=True)
time.sleep(60)
"""


def holder(path: Path, kind: str) -> subprocess.Popen[str]:
    """Another process holding `path`, `kind` = "shared" or "exclusive", until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), kind], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_an_exclusive_hold_keeps_every_other_out_until_its_process_dies(tmp_path: Path) -> None:
    path = tmp_path / "store.lock"
    proc = holder(path, "exclusive")
    try:
        for shared in (False, True):
            start = time.monotonic()
            with pytest.raises(Busy) as caught:
                acquire(path, shared=shared, wait=0.3)
            assert time.monotonic() - start >= 0.3 and str(path) in str(caught.value)
    finally:
        proc.kill()  # killed, not released: the system lets go
        proc.wait()
    with acquire(path):
        pass


def test_shared_holds_admit_one_another_and_keep_an_exclusive_one_out(tmp_path: Path) -> None:
    path = tmp_path / "store.lock"
    proc = holder(path, "shared")
    try:
        with acquire(path, shared=True), acquire(path, shared=True):
            pass
        with pytest.raises(Busy):
            acquire(path)
    finally:
        proc.kill()
        proc.wait()
    held = acquire(path)
    with pytest.raises(Busy):  # within one process too: each hold is its own open file
        acquire(path, shared=True)
    held.release()
    held.release()  # twice is harmless
    assert path.stat().st_mode & 0o077 == 0 or sys.platform == "win32"


def test_a_waiting_hold_gets_the_lock_once_it_is_free(tmp_path: Path) -> None:
    path = tmp_path / "store.lock"
    proc = holder(path, "exclusive")
    killer = subprocess.Popen(
        [sys.executable, "-c", f"import time, os; time.sleep(0.5); os.kill({proc.pid}, 9)"]
    )
    try:
        with acquire(path, shared=True, wait=20):
            pass
    finally:
        killer.wait()
        proc.kill()
        proc.wait()


def test_looking_whether_a_file_is_held_creates_nothing_and_keeps_no_one_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / "model" / "training.lock"
    assert not is_held(path) and not path.parent.exists()  # no folder: nothing runs there
    path.parent.mkdir()
    assert not is_held(path) and not path.exists()
    proc = holder(path, "exclusive")
    try:
        assert is_held(path)
    finally:
        proc.kill()
        proc.wait()
    assert not is_held(path)
    with acquire(path, shared=True):  # shared holds (open stores) share with a look
        assert not is_held(path)
    assert not is_held(path)
    with acquire(path):  # and a look lets go at once: an exclusive hold right after it
        assert is_held(path)
