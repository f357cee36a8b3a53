"""The conversation store: one SQLite file (WAL) holding chats, participants and messages.

Public API: `Store.open(path)`, `Store.add_import(...)`, `Store.chats()`, `Store.messages(...)`,
`Store.participants(...)`, `Store.merge(...)`, settings and datasets. An import is one
transaction: it either lands whole or leaves the file exactly as it was.

Re-imports are recognised by the export's own chat id (`source_key`) or, for formats without one,
by "anchor" fingerprints (first and last messages of every earlier import); messages are
deduplicated by a fingerprint of (timestamp, sender, kind, text, nth repeat of those).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from convsim.core.model import SYSTEM, ParsedChat, StoredMessage
from convsim.core.store.migrations import VERSION, NewerStoreError, migrate

__all__ = [
    "VERSION",
    "ChatInfo",
    "ImportReport",
    "ModelRecord",
    "NewerStoreError",
    "Participant",
    "Store",
]

ANCHORS_PER_END = 50


@dataclass
class ImportReport:
    """What one import did to one chat. `to_json()` is the CLI's `import --json` contract."""

    chat_id: int
    format: str
    title: str
    messages: int  # non-system messages in the export
    new: int  # messages (any kind) added to the store by this import
    participants: list[dict[str, Any]]
    first: str | None
    last: str | None
    kinds: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "format": self.format,
            "title": self.title,
            "messages": self.messages,
            "new": self.new,
            "participants": self.participants,
            "first": self.first,
            "last": self.last,
            "kinds": self.kinds,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class ChatInfo:
    id: int
    format: str
    title: str
    messages: int
    first: str | None
    last: str | None
    participants: tuple[str, ...]


@dataclass(frozen=True)
class Participant:
    id: int
    chat_id: int
    name: str
    messages: int
    person: str | None
    is_me: bool


@dataclass
class ModelRecord:
    """A trained persona model: a LoRA for `person` on the base GGUF `base`."""

    id: str
    chat_id: int | None
    dataset_id: int | None
    person: str
    base: str
    base_sha256: str
    created: str
    status: str  # training, cancelled, ready, failed
    path: str  # the model's folder (run.json, checkpoint/, adapter/, adapter.gguf, exports)
    metrics: dict[str, Any] | None = None


def fingerprints(chat: ParsedChat) -> list[int]:
    """A stable 63-bit id per message; the nth identical (time, sender, kind, text) gets n."""
    seen: dict[str, int] = {}
    out = []
    blake = hashlib.blake2b
    for m in chat.messages:
        key = f"{m.timestamp}\x1f{m.sender or ''}\x1f{m.kind}\x1f{m.text}"
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n:
            key = f"{key}\x1f{n}"
        digest = blake(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little") >> 1)
    return out


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if needed) the store at `path`, migrated to the current schema."""
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if new and os.name == "posix":
            path.chmod(0o600)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- importing --------------------------------------------------------------------------

    def add_import(self, chats: list[ParsedChat], path: str) -> list[ImportReport]:
        """Store every chat of one export in a single transaction; one report per chat."""
        with self.transaction():
            return [self._add_chat(chat, path) for chat in chats]

    def _add_chat(self, chat: ParsedChat, path: str) -> ImportReport:
        conn = self.conn
        prints = fingerprints(chat)
        chat_id = self._find_chat(chat, prints)
        now = datetime.now().isoformat(timespec="seconds")
        if chat_id is None:
            chat_id = conn.execute(
                "INSERT INTO chats (format, title, source_key, created) VALUES (?, ?, ?, ?)",
                (chat.format, chat.title, chat.source_key, now),
            ).lastrowid
            assert chat_id is not None
            existing: set[int] = set()
        else:
            existing = {
                fp
                for (fp,) in conn.execute(
                    "SELECT fingerprint FROM messages WHERE chat_id = ?", (chat_id,)
                )
            }

        names = list(dict.fromkeys([*chat.participants, *(m.sender for m in chat.messages)]))
        ids = self._participant_ids(chat_id, [n for n in names if n is not None], chat.me)

        rows = [
            (
                chat_id,
                m.timestamp,
                ids[m.sender] if m.sender is not None else None,
                m.kind,
                m.text,
                json.dumps(m.meta, ensure_ascii=False) if m.meta else None,
                fp,
            )
            for m, fp in zip(chat.messages, prints, strict=True)
            if fp not in existing
        ]
        conn.executemany(
            "INSERT INTO messages (chat_id, ts, participant_id, kind, text, meta, fingerprint)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        anchors = prints[:ANCHORS_PER_END] + prints[-ANCHORS_PER_END:]
        conn.executemany(
            "INSERT OR IGNORE INTO anchors (chat_id, fingerprint) VALUES (?, ?)",
            [(chat_id, fp) for fp in anchors],
        )
        report = self._report(chat, chat_id, new=len(rows))
        conn.execute(
            "INSERT INTO imports (chat_id, at, path, format, new_messages, report)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (chat_id, now, path, chat.format, len(rows), json.dumps(report.to_json())),
        )
        return report

    def _find_chat(self, chat: ParsedChat, prints: list[int]) -> int | None:
        """The stored chat this export continues, if any."""
        conn = self.conn
        if chat.source_key is not None:
            row = conn.execute(
                "SELECT id FROM chats WHERE source_key = ?", (chat.source_key,)
            ).fetchone()
            return row[0] if row else None
        candidates: dict[int, set[int]] = {}
        for cid, fp in conn.execute(
            "SELECT a.chat_id, a.fingerprint FROM anchors a JOIN chats c ON c.id = a.chat_id"
            " WHERE c.format = ? AND c.source_key IS NULL",
            (chat.format,),
        ):
            candidates.setdefault(cid, set()).add(fp)
        if not candidates:
            return None
        mine = set(prints)
        best, best_hits = None, 0
        for cid, anchors in candidates.items():
            hits = len(anchors & mine)
            # Half of the anchors (at most 5 needed) must reappear: a newer export of a chat
            # repeats the old messages, an unrelated chat shares none of them.
            if hits >= min(5, (len(anchors) + 1) // 2) and hits > best_hits:
                best, best_hits = cid, hits
        return best

    def _participant_ids(self, chat_id: int, names: list[str], me: str | None) -> dict[str, int]:
        conn = self.conn
        conn.executemany(
            "INSERT OR IGNORE INTO participants (chat_id, name) VALUES (?, ?)",
            [(chat_id, n) for n in names],
        )
        if me is not None:
            conn.execute(
                "UPDATE participants SET is_me = 1 WHERE chat_id = ? AND name = ?", (chat_id, me)
            )
        return dict(conn.execute("SELECT name, id FROM participants WHERE chat_id = ?", (chat_id,)))

    @staticmethod
    def _report(chat: ParsedChat, chat_id: int, new: int) -> ImportReport:
        kinds = Counter(m.kind for m in chat.messages)
        senders = Counter(m.sender for m in chat.messages if m.kind != SYSTEM and m.sender)
        order = dict.fromkeys([*chat.participants, *senders])
        return ImportReport(
            chat_id=chat_id,
            format=chat.format,
            title=chat.title,
            messages=sum(n for k, n in kinds.items() if k != SYSTEM),
            new=new,
            participants=[{"name": n, "messages": senders.get(n, 0)} for n in order],
            first=min((m.timestamp for m in chat.messages), default=None),
            last=max((m.timestamp for m in chat.messages), default=None),
            kinds=dict(sorted(kinds.items())),
            skipped=[{"position": s.position, "reason": s.reason} for s in chat.skipped],
        )

    # -- reading ----------------------------------------------------------------------------

    def chats(self) -> list[ChatInfo]:
        rows = self.conn.execute(
            "SELECT c.id, c.format, c.title,"
            " (SELECT count(*) FROM messages m WHERE m.chat_id = c.id AND m.kind != 'system'),"
            " (SELECT min(ts) FROM messages m WHERE m.chat_id = c.id),"
            " (SELECT max(ts) FROM messages m WHERE m.chat_id = c.id),"
            " (SELECT group_concat(name, char(31)) FROM"
            "   (SELECT name FROM participants p WHERE p.chat_id = c.id ORDER BY p.id))"
            " FROM chats c ORDER BY c.id"
        ).fetchall()
        return [
            ChatInfo(cid, fmt, title, n, first, last, tuple(names.split("\x1f")) if names else ())
            for cid, fmt, title, n, first, last, names in rows
        ]

    def chat(self, chat_id: int) -> ChatInfo:
        for info in self.chats():
            if info.id == chat_id:
                return info
        raise KeyError(f"no chat with id {chat_id}")

    def messages(self, chat_id: int) -> list[StoredMessage]:
        """Every message of a chat, oldest first."""
        self.chat(chat_id)
        rows = self.conn.execute(
            "SELECT m.id, m.ts, p.name, m.text, m.kind FROM messages m"
            " LEFT JOIN participants p ON p.id = m.participant_id"
            " WHERE m.chat_id = ? ORDER BY m.ts, m.id",
            (chat_id,),
        )
        return [StoredMessage(*row) for row in rows]

    def participants(self, chat_id: int | None = None) -> list[Participant]:
        where, args = ("WHERE p.chat_id = ?", (chat_id,)) if chat_id is not None else ("", ())
        rows = self.conn.execute(
            "SELECT p.id, p.chat_id, p.name,"
            " (SELECT count(*) FROM messages m WHERE m.participant_id = p.id),"
            f" s.name, p.is_me FROM participants p LEFT JOIN persons s ON s.id = p.person_id"
            f" {where} ORDER BY p.chat_id, p.id",
            args,
        )
        return [Participant(i, c, n, k, s, bool(me)) for i, c, n, k, s, me in rows]

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
        return [
            {
                "id": i,
                "chat_id": c,
                "target": t,
                "created": at,
                "config": json.loads(cfg),
                "stats": json.loads(st),
                "path": p,
            }
            for i, c, t, at, cfg, st, p in rows
        ]

    # -- models -----------------------------------------------------------------------------

    def new_model_id(self, person: str) -> str:
        """A short id such as "sam-2": the person's name, made safe, and a counter."""
        slug = "".join(c if c.isalnum() else "-" for c in person.lower()).strip("-") or "model"
        taken = {row[0] for row in self.conn.execute("SELECT id FROM models")}
        n = 1
        while f"{slug}-{n}" in taken:
            n += 1
        return f"{slug}-{n}"

    def add_model(self, record: ModelRecord) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO models (id, chat_id, dataset_id, person, base, base_sha256, created,"
                " status, path, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.chat_id,
                    record.dataset_id,
                    record.person,
                    record.base,
                    record.base_sha256,
                    record.created,
                    record.status,
                    record.path,
                    json.dumps(record.metrics) if record.metrics is not None else None,
                ),
            )

    def update_model(
        self, model_id: str, status: str, metrics: dict[str, Any] | None = None
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE models SET status = ?, metrics = coalesce(?, metrics) WHERE id = ?",
                (status, json.dumps(metrics) if metrics is not None else None, model_id),
            )

    def models(self) -> list[ModelRecord]:
        rows = self.conn.execute(
            "SELECT id, chat_id, dataset_id, person, base, base_sha256, created, status, path,"
            " metrics FROM models ORDER BY created, id"
        )
        return [
            ModelRecord(*row[:9], metrics=json.loads(row[9]) if row[9] else None) for row in rows
        ]

    def model(self, model_id: str) -> ModelRecord:
        for m in self.models():
            if m.id == model_id:
                return m
        raise KeyError(f"no model with id {model_id!r}")
