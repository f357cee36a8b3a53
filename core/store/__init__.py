"""The conversation store: one SQLite file (WAL) holding chats, participants and messages.

Public API: `Store.open(path)`, `Store.add_import(...)`, `Store.chats()`, `Store.messages(...)`,
`Store.participants(...)`, `Store.merge(...)`, settings and datasets.
Contract: an import is one transaction: it either lands whole or leaves the file exactly as it
was; the schema is versioned and migrated forward (`migrations.py`), never dropping user data.
Backups and damage (`backups.py`): `Store.open` checks an existing file's header and schema
first and raises `StoreCorruptError` (a `sqlite3.DatabaseError` naming the file and the
damage) without writing to a damaged one (`store_problem` checks every page); before
it migrates an existing file it copies it to `backups/` beside it (the newest 3 are kept).
`store_problem(path)` checks a file without changing it, `list_backups(path)` and
`latest_good_backup(path)` find its backups, and `restore_backup(path)` puts the newest good one
in its place, keeping the damaged file as `<store>.corrupt-<stamp>`.

Re-imports are recognised by the export's own chat id (`source_key`) or, for formats without one,
by "anchors" (hashes of the first and last messages of every earlier import); messages are
deduplicated on (timestamp, sender, kind, text, nth repeat of those) — see `importing.py`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from convsim.core.chats.importers.base import gc_paused
from convsim.core.chats.messages import ChatStream, ParsedChat, StoredMessage
from convsim.core.files import DiskFullError
from convsim.core.locks import Busy, Held, acquire
from convsim.core.store.backups import (
    Backup,
    Restored,
    StoreCorruptError,
    StoreInUse,
    backup_store,
    backups_dir,
    damaged_copies,
    is_damage,
    latest_good_backup,
    list_backups,
    lock_path,
    refuse_damaged,
    restore_backup,
    store_problem,
)
from convsim.core.store.importing import add_chat, add_stream
from convsim.core.store.migrations import VERSION, NewerStoreError, migrate
from convsim.core.store.records import (
    ChatInfo,
    ImportReport,
    ModelRecord,
    Participant,
    dataset_row,
    model_in_home,
)

__all__ = [
    "VERSION",
    "Backup",
    "ChatInfo",
    "ImportReport",
    "ModelRecord",
    "NewerStoreError",
    "Participant",
    "Restored",
    "Store",
    "StoreCorruptError",
    "StoreInUse",
    "backup_store",
    "backups_dir",
    "damaged_copies",
    "is_damage",
    "latest_good_backup",
    "list_backups",
    "restore_backup",
    "store_problem",
]


BUSY_TIMEOUT_S = 300.0
RESTORE_WAIT_S = 60.0
"""How long `Store.open` waits for a restore of the store (seconds: it copies one file)."""
# What SQLite says when a write finds no room: by error name (Python 3.11+), else by text.
NO_ROOM = {"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE"}
NO_ROOM_TEXT = {"database or disk is full", "disk I/O error"}


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path, held: Held | None = None) -> None:
        self.conn = conn
        self.path = path
        self._held = held

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if needed) the store at `path`, migrated to the current schema (backed
        up first when it had an older one). A damaged file raises `StoreCorruptError`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Shared with every other open store, exclusive while a backup is put in its place.
        try:
            held = acquire(lock_path(path), shared=True, wait=RESTORE_WAIT_S)
        except Busy:
            raise StoreInUse(path, restoring=True) from None
        try:
            return cls._connect(path, held)
        except BaseException:
            held.release()
            raise

    @classmethod
    def _connect(cls, path: Path, held: Held) -> Store:
        new = not path.exists()
        # The app and commands write the store at once: a writer waits for another's
        # transaction (an import of millions of messages takes tens of seconds) instead of
        # failing at Python's default of 5 s with "database is locked".
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        if new and os.name == "posix":
            path.chmod(0o600)
        if not new:
            refuse_damaged(conn, path)  # before anything is written, even the journal mode
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # A 64 MB page cache: a large import then writes each page once.
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA foreign_keys = ON")
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, held)

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            if self._held is not None:
                self._held.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a failure rolls all of it back. No room to write (a full
        disk: SQLite says "database or disk is full", or "disk I/O error" for a file-size
        limit) raises `DiskFullError` naming the store."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLite rolls back by itself after I/O errors
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorname", "") in NO_ROOM or str(e) in NO_ROOM_TEXT:
                raise DiskFullError(self.path, str(e)) from e
            raise

    # -- importing --------------------------------------------------------------------------

    def add_import(
        self, chats: list[ParsedChat], path: str, check: Callable[[], None] = lambda: None
    ) -> list[ImportReport]:
        """Store every chat of one export in a single transaction; one report per chat.
        `check` is called before the commit: what it raises stores nothing."""
        with gc_paused(), self.transaction() as conn:
            reports = [add_chat(conn, chat, path) for chat in chats]
            check()
            return reports

    def add_stream(
        self,
        stream: ChatStream,
        path: str,
        progress: Callable[[float, int], None] | None = None,
    ) -> ImportReport:
        """Store a streamed export (`ChatStream`) in a single transaction, batch by batch;
        `progress` hears (share stored, messages read) after each batch."""
        with gc_paused(), self.transaction() as conn:
            return add_stream(conn, stream, path, progress)

    # -- reading ----------------------------------------------------------------------------

    def chats(self, chat_id: int | None = None) -> list[ChatInfo]:
        """Every chat (or just `chat_id`) with its message count and date range, in one pass
        over each chat's id ranges (segments), never a scan of the whole table."""
        one = chat_id is not None
        where, args = ("WHERE c.id = ?", (chat_id,)) if one else ("", ())
        rows = self.conn.execute(
            "SELECT c.id, c.format, c.title,"
            " coalesce(sum(m.kind != 'system'), 0), min(m.ts), max(m.ts)"
            " FROM chats c LEFT JOIN segments s ON s.chat_id = c.id"
            " LEFT JOIN messages m ON m.id BETWEEN s.first_id AND s.last_id"
            f" {where} GROUP BY c.id ORDER BY c.id",
            args,
        ).fetchall()
        names: dict[int, list[str]] = {}
        for cid, name in self.conn.execute(
            "SELECT p.chat_id, p.name FROM participants p"
            + (" WHERE p.chat_id = ?" if one else "")
            + " ORDER BY p.id",
            args,
        ):
            names.setdefault(cid, []).append(name)
        return [
            ChatInfo(cid, fmt, title, n, first, last, tuple(names.get(cid, ())))
            for cid, fmt, title, n, first, last in rows
        ]

    def chat(self, chat_id: int) -> ChatInfo:
        found = self.chats(chat_id)
        if not found:
            raise KeyError(f"no chat with id {chat_id}")
        return found[0]

    def has_chat(self, chat_id: int) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,)).fetchone() is not None
        )

    def messages(self, chat_id: int) -> list[StoredMessage]:
        """Every message of a chat, oldest first."""
        if not self.has_chat(chat_id):
            raise KeyError(f"no chat with id {chat_id}")
        names = dict(
            self.conn.execute("SELECT id, name FROM participants WHERE chat_id = ?", (chat_id,))
        )
        out: list[StoredMessage] = []
        for first, last in self.conn.execute(
            "SELECT first_id, last_id FROM segments WHERE chat_id = ? ORDER BY first_id",
            (chat_id,),
        ):
            rows = self.conn.execute(
                "SELECT id, ts, participant_id, text, kind FROM messages WHERE id BETWEEN ? AND ?",
                (first, last),
            )
            out.extend(StoredMessage(i, ts, names.get(p), text, k) for i, ts, p, text, k in rows)
        # Each import's run is in time order and a newer export only adds later messages,
        # so this sort is nearly always a linear pass over already-ordered rows.
        out.sort(key=lambda m: m.timestamp)
        return out

    def participants(self, chat_id: int | None = None) -> list[Participant]:
        where, args = ("WHERE p.chat_id = ?", (chat_id,)) if chat_id is not None else ("", ())
        counts = dict(
            self.conn.execute(
                "SELECT participant_id, count(*) FROM messages"
                " WHERE participant_id IS NOT NULL GROUP BY participant_id"
            )
        )
        rows = self.conn.execute(
            "SELECT p.id, p.chat_id, p.name, s.name, p.is_me FROM participants p"
            f" LEFT JOIN persons s ON s.id = p.person_id {where} ORDER BY p.chat_id, p.id",
            args,
        )
        return [Participant(i, c, n, counts.get(i, 0), s, bool(me)) for i, c, n, s, me in rows]

    # -- people -----------------------------------------------------------------------------

    def merge(self, person: str, members: list[tuple[int, str]]) -> list[Participant]:
        """Make the participants (chat_id, name) one person called `person`, across chats and
        platforms. Unknown participants raise KeyError and change nothing."""
        with self.transaction() as conn:
            ids = []
            for chat_id, name in members:
                row = conn.execute(
                    "SELECT id FROM participants WHERE chat_id = ? AND name = ?", (chat_id, name)
                ).fetchone()
                if row is None:
                    raise KeyError(f"chat {chat_id} has no participant named {name!r}")
                ids.append(row[0])
            conn.execute("INSERT OR IGNORE INTO persons (name) VALUES (?)", (person,))
            (pid,) = conn.execute("SELECT id FROM persons WHERE name = ?", (person,)).fetchone()
            conn.executemany(
                "UPDATE participants SET person_id = ? WHERE id = ?", [(pid, i) for i in ids]
            )
        return [p for p in self.participants() if p.person == person]

    def set_me(self, chat_id: int, name: str) -> None:
        """Mark `name` as the user in `chat_id` (and nobody else there)."""
        with self.transaction() as conn:
            if not conn.execute(
                "SELECT 1 FROM participants WHERE chat_id = ? AND name = ?", (chat_id, name)
            ).fetchone():
                raise KeyError(f"chat {chat_id} has no participant named {name!r}")
            conn.execute(
                "UPDATE participants SET is_me = (name = ?) WHERE chat_id = ?", (name, chat_id)
            )

    # -- settings and datasets --------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def add_dataset(
        self,
        chat_id: int,
        target: str,
        config: dict[str, Any],
        stats: dict[str, Any],
        publish: Callable[[int], str],
    ) -> int:
        """Register a dataset. `publish(id)` moves its files into place and returns their
        folder; it runs inside the transaction, so if it fails no row is left behind."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO datasets (chat_id, target, created, config, stats, path)"
                " VALUES (?, ?, ?, ?, ?, '')",
                (
                    chat_id,
                    target,
                    datetime.now().isoformat(timespec="seconds"),
                    json.dumps(config),
                    json.dumps(stats),
                ),
            )
            dataset_id = cur.lastrowid
            assert dataset_id is not None
            conn.execute(
                "UPDATE datasets SET path = ? WHERE id = ?", (publish(dataset_id), dataset_id)
            )
            return dataset_id

    def dataset(self, dataset_id: int) -> dict[str, Any]:
        for d in self.datasets():
            if d["id"] == dataset_id:
                return d
        raise KeyError(f"no dataset with id {dataset_id}")

    def datasets(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE chat_id = ?", (chat_id,)) if chat_id is not None else ("", ())
        rows = self.conn.execute(
            f"SELECT id, chat_id, target, created, config, stats, path FROM datasets {where}"
            " ORDER BY id",
            args,
        )
        return [dataset_row(row, self.path.parent) for row in rows]

    # -- models -----------------------------------------------------------------------------

    def add_new_model(
        self,
        person: str,
        make: Callable[[str], ModelRecord],
        taken: Callable[[str], bool] = lambda model_id: False,
    ) -> ModelRecord:
        """Store `make(model_id)` under a new id such as "sam-2" (the person's name, made safe,
        and a counter), picked in the same transaction: two trainings started at once get two.
        An id that `taken` says is in use elsewhere (its folder still exists) is skipped."""
        slug = "".join(c if c.isalnum() else "-" for c in person.lower()).strip("-") or "model"
        with self.transaction() as conn:
            stored = {row[0] for row in conn.execute("SELECT id FROM models")}
            n = 1
            while f"{slug}-{n}" in stored or taken(f"{slug}-{n}"):
                n += 1
            record = make(f"{slug}-{n}")
            conn.execute(ModelRecord.INSERT, record.row())
        return record

    def add_model(self, record: ModelRecord) -> None:
        with self.transaction() as conn:
            conn.execute(ModelRecord.INSERT, record.row())

    def update_model(
        self, model_id: str, status: str, metrics: dict[str, Any] | None = None
    ) -> bool:
        """Set a model's status (and metrics); False when there is no such model (any more)."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE models SET status = ?, metrics = coalesce(?, metrics) WHERE id = ?",
                (status, json.dumps(metrics) if metrics is not None else None, model_id),
            )
        return cursor.rowcount == 1

    def models(self) -> list[ModelRecord]:
        rows = self.conn.execute(
            "SELECT id, chat_id, dataset_id, person, base, base_sha256, created, status, path,"
            " metrics FROM models ORDER BY created, id"
        )
        return [model_in_home(ModelRecord.from_row(row), self.path.parent) for row in rows]

    def model(self, model_id: str) -> ModelRecord:
        for m in self.models():
            if m.id == model_id:
                return m
        raise KeyError(f"no model with id {model_id!r}")
