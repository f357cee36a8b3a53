"""Backups before migrations, damaged stores told apart from sound ones, and `convsim doctor
--restore`: all on real SQLite files (old stores built with the real migration steps)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from test_store import migrate_at_once

from convsim.core.locations import Locations
from convsim.core.store import (
    VERSION,
    Store,
    StoreCorruptError,
    backup_store,
    backups,
    backups_dir,
    damaged_copies,
    latest_good_backup,
    list_backups,
    restore_backup,
    store_problem,
)
from convsim.core.store.migrations import migrate
from convsim.core.system import doctor
from convsim.core.system.doctor import FAIL, OK
from convsim.tui.cli import main
from convsim.tui.cli.doctor import offer_restore

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
PAGE = 4096
TEXTS = [f"message {i}: " + "lorem ipsum " * (i % 7) for i in range(300)]


def old_store(path: Path, texts: list[str] = TEXTS) -> Path:
    """A store as convsim left it at schema 1 (in WAL mode, closed): one chat, its messages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    assert migrate(conn, upto=1) == 1
    conn.execute(
        "INSERT INTO chats (id, format, title, created) VALUES (1, 'whatsapp', 'Riya', '2024')"
    )
    conn.execute(
        "INSERT INTO participants (id, chat_id, name) VALUES (1, 1, 'Riya'), (2, 1, 'Sam')"
    )
    conn.executemany(
        "INSERT INTO messages (id, ts, participant_id, kind, text) VALUES (?, ?, ?, 'text', ?)",
        [
            (i + 1, f"2024-01-01T10:{i // 60:02d}:{i % 60:02d}", 1 + i % 2, t)
            for i, t in enumerate(texts)
        ],
    )
    conn.execute(
        "INSERT INTO segments (chat_id, first_id, last_id) VALUES (1, 1, ?)", (len(texts),)
    )
    conn.close()
    if os.name == "posix":
        path.chmod(0o600)
    return path


def texts_in(path: Path) -> list[str]:
    with Store.open(path) as store:
        return [m.text for m in store.messages(1)]


# Three ways a store is damaged: pages in the middle overwritten, the file cut short, noise.
def scribble(data: bytes) -> bytes:
    return data[: 2 * PAGE] + b"\xa5" * PAGE + data[3 * PAGE :]


def truncate(data: bytes) -> bytes:
    return data[:100]


def noise(data: bytes) -> bytes:
    return random.Random(0).randbytes(len(data))


DAMAGE: list[Callable[[bytes], bytes]] = [scribble, truncate, noise]


def damage(path: Path, how: Callable[[bytes], bytes] = scribble) -> bytes:
    """Damage the (closed) store at `path`; returns its bytes as they now are."""
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # everything is in the main file
    data = how(path.read_bytes())
    path.write_bytes(data)
    return data


# --- backups -------------------------------------------------------------------------------


@posix_only
def test_an_old_store_is_backed_up_before_it_is_migrated(tmp_path: Path) -> None:
    path = old_store(tmp_path / "convsim.db")
    assert list_backups(path) == []
    assert texts_in(path) == TEXTS  # opened: migrated to the current schema
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == VERSION
    conn.close()
    (backup,) = list_backups(path)
    assert backup.path.parent == tmp_path / "backups" == backups_dir(path)
    assert backup.path.name.startswith("convsim-v1-") and backup.path.suffix == ".sqlite3"
    assert backup.version == 1
    copy = sqlite3.connect(backup.path)
    assert copy.execute("PRAGMA user_version").fetchone()[0] == 1
    assert [t for (t,) in copy.execute("SELECT text FROM messages ORDER BY id")] == TEXTS
    assert copy.execute("SELECT 1 FROM sqlite_master WHERE name = 'models'").fetchone() is None
    copy.close()
    assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.path.parent.stat().st_mode) == 0o700
    # A standalone file: nothing half-written or journal-like beside it.
    assert sorted(p.name for p in backup.path.parent.iterdir()) == [backup.path.name]
    assert texts_in(path) == TEXTS and len(list_backups(path)) == 1  # current: no new backup


def test_a_new_store_is_not_backed_up(tmp_path: Path) -> None:
    path = tmp_path / "convsim.db"
    with Store.open(path):
        pass
    with Store.open(path):
        pass
    assert not backups_dir(path).exists() and list_backups(path) == []


def test_only_the_newest_backups_are_kept(tmp_path: Path) -> None:
    path = old_store(tmp_path / "convsim.db")
    made = [backup_store(path, keep=3) for _ in range(5)]
    kept = list_backups(path)
    assert [b.path for b in kept] == [b.path for b in reversed(made[2:])]  # newest first
    assert all(b.version == 1 for b in kept)
    assert sorted(backups_dir(path).iterdir()) == sorted(b.path for b in kept)


def test_an_old_store_opened_at_once_by_several_connections_is_backed_up_once(
    tmp_path: Path,
) -> None:
    path = old_store(tmp_path / "s.db")
    assert migrate_at_once(path) == []
    (backup,) = list_backups(path)
    assert backup.version == 1 and texts_in(path) == TEXTS


class LateConnection(sqlite3.Connection):
    """A connection that, just before it first asks for the write lock, lets `before_lock`
    run: another connection's step lands between its look at the schema and its own step."""

    before_lock: Callable[[], None] | None = None

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "BEGIN IMMEDIATE" and self.before_lock is not None:
            run, self.before_lock = self.before_lock, None
            run()
        return super().execute(sql, *args)


def test_a_connection_that_finds_a_migration_under_way_takes_no_second_backup(
    tmp_path: Path,
) -> None:
    """The order the threads above only sometimes hit: this connection reads version 1, another
    takes step 2 (backing up at version 1) and lets go of the lock, and this one takes step 3."""
    path = old_store(tmp_path / "s.db")
    late = sqlite3.connect(path, isolation_level=None, factory=LateConnection)
    other = sqlite3.connect(path, isolation_level=None)

    def other_takes_step_2() -> None:
        assert migrate(other, upto=2) == 2

    late.before_lock = other_takes_step_2
    try:
        assert migrate(late) == VERSION
    finally:
        late.close()
        other.close()
    (backup,) = list_backups(path)
    assert backup.version == 1 and texts_in(path) == TEXTS


# --- damage --------------------------------------------------------------------------------


def test_a_sound_or_missing_store_has_no_problem(tmp_path: Path) -> None:
    assert store_problem(tmp_path / "none.db") is None
    assert store_problem(old_store(tmp_path / "convsim.db")) is None


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_store_is_found_out_and_never_opened(
    tmp_path: Path, how: Callable[[bytes], bytes]
) -> None:
    path = old_store(tmp_path / "convsim.db")
    with Store.open(path):
        pass
    data = damage(path, how)
    problem = store_problem(path)
    assert problem
    with pytest.raises(StoreCorruptError) as caught:
        Store.open(path)
    assert caught.value.path == path and caught.value.problem == problem
    assert str(path) in str(caught.value) and problem in str(caught.value)
    assert isinstance(caught.value, sqlite3.DatabaseError)
    assert path.read_bytes() == data  # neither the check nor the refusal wrote to it


def test_a_damaged_old_store_is_neither_migrated_nor_backed_up(tmp_path: Path) -> None:
    path = old_store(tmp_path / "convsim.db")
    data = damage(path)
    with pytest.raises(StoreCorruptError):
        Store.open(path)
    # migrate() alone (without Store.open's check) refuses too: the copy fails its check.
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(StoreCorruptError):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    assert list_backups(path) == [] and list(backups_dir(path).iterdir()) == []
    assert path.read_bytes() == data


def test_restore_takes_the_newest_good_backup_and_keeps_the_damaged_store(tmp_path: Path) -> None:
    path = old_store(tmp_path / "convsim.db")
    older = backup_store(path)
    with Store.open(path):  # migrated: a second, newer backup
        pass
    newest = list_backups(path)[0]
    assert newest.path != older.path
    damage(newest.path)  # a backup can rot too
    assert latest_good_backup(path) == older
    with pytest.raises(StoreCorruptError) as caught:
        restore_backup(path, newest)
    assert caught.value.path == newest.path
    data = damage(path, noise)
    restored = restore_backup(path)
    assert restored.backup == older
    (kept,) = restored.kept
    assert kept.name.startswith("convsim.db.corrupt-") and kept.read_bytes() == data
    assert texts_in(path) == TEXTS


def test_an_emptied_store_beside_its_data_is_damage_and_an_empty_backup_no_backup(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store file cut to nothing (a copy that stopped, a disk error) next to its backups is
    not opened as a new, empty store; an empty file in the backups is passed over."""
    locations = Locations.from_env()
    old_store(locations.store)
    with Store.open(locations.store):  # migrated: backed up at schema 1
        pass
    (good,) = list_backups(locations.store)
    empty = backups_dir(locations.store) / "convsim-v4-20991231-235959.sqlite3"
    empty.touch()
    assert list_backups(locations.store)[0].path == empty
    assert latest_good_backup(locations.store) == good
    locations.store.write_bytes(b"")
    for extra in ("-wal", "-shm"):
        Path(f"{locations.store}{extra}").unlink(missing_ok=True)
    with pytest.raises(StoreCorruptError, match="the file is empty, while its data folder"):
        Store.open(locations.store)
    assert main(["chats"]) == 2
    err = capsys.readouterr().err
    assert "is empty" in err and good.created.strftime("%Y-%m-%d %H:%M") in err, err
    assert doctor.check_store(locations).status == FAIL
    assert main(["doctor", "--restore"]) == 0
    with Store.open(locations.store) as store:
        assert [m.text for m in store.messages(1)] == TEXTS


def test_an_empty_store_file_in_an_empty_folder_is_a_first_start(tmp_path: Path) -> None:
    path = tmp_path / "convsim.db"
    path.write_bytes(b"")  # a first start stopped before its first write
    with Store.open(path) as store:
        assert store.chats() == []


# --- convsim doctor ------------------------------------------------------------------------


def damaged_home_with_a_backup(home: Path) -> tuple[Locations, bytes]:
    """A home whose store was upgraded (so backed up at schema 1), then grew, then broke."""
    locations = Locations.from_env()
    assert locations.home == home
    old_store(locations.store)
    with Store.open(locations.store) as store:  # migrated, backed up
        store.conn.execute("UPDATE chats SET title = 'after the backup'")
    return locations, damage(locations.store)


def test_doctor_restore_puts_the_backup_back(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locations, data = damaged_home_with_a_backup(home)
    (backup,) = list_backups(locations.store)
    before = doctor.check_store(locations).to_json()
    assert before["status"] == FAIL and "is damaged" in before["detail"]
    assert "can be restored" in before["detail"] and before["fix"].startswith(
        "convsim doctor --restore"
    )

    # Any command that opens the store says so in one line, naming the file and the fix.
    assert main(["chats"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(locations.store) in err and "run `convsim doctor --restore`" in err

    assert main(["doctor", "--restore", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (after,) = report["checks"]
    assert report["status"] == OK and after["name"] == "store" and after["status"] == OK
    assert "schema 1" in after["detail"]
    assert report["restored"]["backup"] == str(backup.path) and report["restored"]["schema"] == 1
    kept = Path(report["restored"]["kept"][0])
    assert kept.parent == home and kept.name.startswith("convsim.db.corrupt-")
    assert kept.read_bytes() == data  # the damaged file, untouched

    with Store.open(locations.store) as store:  # the backed-up data, upgraded again
        assert [c.title for c in store.chats()] == ["Riya"]
        assert [m.text for m in store.messages(1)] == TEXTS
    assert doctor.check_store(locations).status == OK


def test_doctor_restore_says_what_it_did(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locations, _ = damaged_home_with_a_backup(home)
    assert main(["doctor", "--restore"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"Restored {locations.store} from the backup of ")
    assert "is not in it" in out[1]
    assert out[2].startswith(f"The damaged store is kept as {locations.store}.corrupt-")
    assert out[3].startswith("OK    store  ")


def test_doctor_restore_leaves_a_sound_store_alone_and_needs_a_backup(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locations = Locations.from_env()
    with Store.open(locations.store):
        pass
    assert main(["doctor", "--restore"]) == 2
    assert "passes the integrity check: nothing to restore" in capsys.readouterr().err
    data = damage(locations.store)
    assert main(["doctor", "--restore", "--json"]) == 2
    assert "no backup of" in capsys.readouterr().err
    assert locations.store.read_bytes() == data
    check = doctor.check_store(locations)
    assert check.status == FAIL and "no good backup" in check.detail and ".recover" in check.fix
    assert main(["chats"]) == 2
    err = capsys.readouterr().err
    assert str(locations.store) in err and "there is no backup of it" in err


class Answers:
    """A terminal's stdin that answers `input()` with `text`."""

    def __init__(self, text: str) -> None:
        self.lines = iter(text.splitlines(keepends=True))

    def readline(self) -> str:
        return next(self.lines, "")

    def isatty(self) -> bool:
        return True


def test_doctor_asks_before_restoring(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    locations, data = damaged_home_with_a_backup(home)
    monkeypatch.setattr(sys, "stdin", Answers("n\n"))
    assert offer_restore(locations) is None
    assert "Restore the backup from " in capsys.readouterr().out
    assert locations.store.read_bytes() == data
    monkeypatch.setattr(sys, "stdin", Answers("y\n"))
    check = offer_restore(locations)
    assert check is not None and check.status == OK
    assert "The damaged store is kept as" in capsys.readouterr().out
    assert texts_in(locations.store) == TEXTS


# --- restoring while convsim runs ------------------------------------------------------------


def test_a_store_opened_during_a_restore_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app worker that opens the store between the two renames of a restore found no file
    there, made an empty store, and its -wal then undid the restore."""
    path = old_store(tmp_path / "convsim.db")
    backup_store(path)
    damage(path, noise)
    opened: list[Store] = []
    worker = threading.Thread(target=lambda: opened.append(Store.open(path)))
    move_aside = backups._move_aside

    def move_aside_then_open(store: Path, stamp: str) -> list[Path]:
        kept = move_aside(store, stamp)
        worker.start()  # the store file is gone now, the backup not yet in its place
        worker.join(0.5)
        assert worker.is_alive()  # waiting for the restore
        return kept

    monkeypatch.setattr(backups, "_move_aside", move_aside_then_open)
    restore_backup(path)
    worker.join(10)
    (store,) = opened
    with store:
        store.set_setting("ui.theme", "textual-light")
        assert [m.text for m in store.messages(1)] == TEXTS
    assert store_problem(path) is None and texts_in(path) == TEXTS


def test_doctor_restore_refuses_while_the_store_is_open(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locations = Locations.from_env()
    old_store(locations.store)
    with Store.open(locations.store):  # migrated, backed up
        pass
    app = Store.open(locations.store)  # e.g. the app, open since before the damage
    try:
        data = damage(locations.store)
        assert main(["doctor", "--restore"]) == 2
        err = capsys.readouterr().err
        assert f"the store {locations.store} is open in another convsim" in err
        assert locations.store.read_bytes() == data and damaged_copies(locations.store) == []
    finally:
        with contextlib.suppress(sqlite3.Error):
            app.close()
    assert main(["doctor", "--restore"]) == 0
    assert texts_in(locations.store) == TEXTS


def test_a_store_opened_during_a_long_restore_says_so(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from convsim.core import store as store_module
    from convsim.core.locks import acquire

    locations = Locations.from_env()
    with Store.open(locations.store):
        pass
    monkeypatch.setattr(store_module, "RESTORE_WAIT_S", 0.2)
    with acquire(backups.lock_path(locations.store)):  # a restore, still copying
        assert main(["chats"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"convsim: error: the store {locations.store} is being restored "
        "(`convsim doctor --restore`): try again once that has finished"
    )
    assert main(["chats"]) == 0
