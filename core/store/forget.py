"""Forgetting a chat or a person: what goes, and erasing it from the database file itself.

`plan_chat` / `plan_person` only read: they say which messages, datasets and models would go.
`erase` deletes those rows in one transaction and then leaves no copy of them in the file:
`secure_delete` zeroes freed cells and pages, VACUUM rewrites the file, and a TRUNCATE checkpoint
empties the WAL. Files on disk (datasets, models, transcripts, backups) are the workspace's part.

Contract: a plan names everything stored that is derived from the forgotten messages; `erase`
removes exactly that (widened, under its write lock, to what the same chat or person gained
since the plan was made), or nothing when it fails before its commit. A table added later that
holds text derived from messages (feedback...) must be added to `_DERIVED`; memory (facts and
the search index) is handled by `_delete_memory`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convsim.core.store.records import DATASETS, ModelRecord, home_of, in_home, model_in_home

# Tables whose rows hang off a model and are derived from its training data; each has a
# `model_id` column. Later subsystems add theirs here.
_DERIVED: tuple[str, ...] = ("feedback", "model_versions")


@dataclass
class ForgetPlan:
    """What forgetting `subject` removes from the store."""

    subject: str  # "chat 3 (Riya)" or "person Riya"
    chat_ids: list[int]  # chats removed whole
    participant_ids: list[int]  # people whose messages are removed from chats that stay
    messages: int  # messages removed
    datasets: list[dict[str, Any]]  # {"id", "chat_id", "target", "path"}
    models: list[ModelRecord]
    names: list[str] = field(default_factory=list)  # the forgotten person's names
    facts: list[int] = field(default_factory=list)  # memory: facts about them or from them
    reindex: list[int] = field(default_factory=list)  # chats whose search index is rebuilt
    files: list[Path] = field(default_factory=list)  # filled in by the workspace
    folders: set[Path] = field(default_factory=set)  # which of them are folders
    chat: int | None = None  # what was asked for: a chat...
    person: str | None = None  # ...or a person

    def row_folders(self) -> list[Path]:
        """The folders of the plan's datasets and models (exports included)."""
        return [Path(d["path"]) for d in self.datasets] + [Path(m.path) for m in self.models]

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "chats": self.chat_ids,
            "messages": self.messages,
            "datasets": [d["id"] for d in self.datasets],
            "models": [m.id for m in self.models],
            "facts": len(self.facts),
            "files": [str(f) for f in self.files],
        }

    def lines(self, relative_to: Path | None = None) -> list[str]:
        """Everything that will go, one line each, for a confirmation; files under
        `relative_to` (the data folder) are named from there."""
        out = [f"{self.subject}: {self.messages} message{'s' * (self.messages != 1)}"]
        out += [f"dataset {d['id']} (chat {d['chat_id']}, {d['target']})" for d in self.datasets]
        out += [f"model {m.id} ({m.person}, {m.status}) with its exports" for m in self.models]
        if self.facts:
            out.append(f"{len(self.facts)} remembered fact{'s' * (len(self.facts) != 1)}")
        for f in self.files:
            inside = relative_to is not None and f.is_relative_to(relative_to)
            shown = f.relative_to(relative_to) if inside else f  # type: ignore[arg-type]
            out.append(f"{'folder' if f in self.folders else 'file'} {shown}")
        return out


def plan_chat(conn: sqlite3.Connection, chat_id: int) -> ForgetPlan:
    row = conn.execute("SELECT title FROM chats WHERE id = ?", (chat_id,)).fetchone()
    if row is None:
        raise KeyError(f"no chat with id {chat_id}")
    (messages,) = conn.execute(  # ranges of ids, less any already forgotten
        "SELECT count(*) FROM segments s JOIN messages m ON m.id BETWEEN s.first_id AND s.last_id"
        " WHERE s.chat_id = ?",
        (chat_id,),
    ).fetchone()
    plan = ForgetPlan(
        f"chat {chat_id} ({row[0]})", [chat_id], [], messages, *_derived(conn, [chat_id])
    )
    plan.chat = chat_id
    plan.facts = [i for (i,) in conn.execute("SELECT id FROM facts WHERE chat_id = ?", (chat_id,))]
    plan.reindex = [chat_id]
    return plan


def plan_person(conn: sqlite3.Connection, name: str) -> ForgetPlan:
    """Everyone called `name` in any chat, or merged into the person `name`."""
    rows = conn.execute(
        "SELECT p.id, p.chat_id, p.name FROM participants p"
        " LEFT JOIN persons s ON s.id = p.person_id WHERE p.name = ? OR s.name = ?",
        (name, name),
    ).fetchall()
    if not rows:
        raise KeyError(f"nobody called {name!r} in any chat")
    ids = [r[0] for r in rows]
    marks = ", ".join("?" * len(ids))
    (messages,) = conn.execute(
        f"SELECT count(*) FROM messages WHERE participant_id IN ({marks})", ids
    ).fetchone()
    # Every dataset of their chats holds their messages, as targets or as context.
    chats = sorted({r[1] for r in rows})
    plan = ForgetPlan(f"person {name}", [], ids, messages, *_derived(conn, chats))
    plan.person = name
    plan.names = sorted({name, *(r[2] for r in rows)})
    plan.facts = _facts_of_person(conn, plan.names, ids)
    plan.reindex = chats
    return plan


def _facts_of_person(
    conn: sqlite3.Connection, names: list[str], participant_ids: list[int]
) -> list[int]:
    """Facts about any of `names`, and facts anyone learned from their messages."""
    marks = ", ".join("?" * len(participant_ids))
    rows = conn.execute(
        f"SELECT id FROM messages WHERE participant_id IN ({marks})", participant_ids
    )
    theirs = {i for (i,) in rows}
    out = []
    for fact_id, person, sources in conn.execute("SELECT id, person, sources FROM facts"):
        if person in names or theirs.intersection(json.loads(sources)):
            out.append(fact_id)
    return out


def _derived(
    conn: sqlite3.Connection, chat_ids: list[int]
) -> tuple[list[dict[str, Any]], list[ModelRecord]]:
    marks = ", ".join("?" * len(chat_ids))
    home = home_of(conn)
    datasets = [
        {"id": i, "chat_id": c, "target": t, "path": in_home(p, home, DATASETS, str(i))}
        for i, c, t, p in conn.execute(
            f"SELECT id, chat_id, target, path FROM datasets WHERE chat_id IN ({marks})"
            " ORDER BY id",
            chat_ids,
        )
    ]
    dataset_ids = [d["id"] for d in datasets]
    rows = conn.execute(
        "SELECT id, chat_id, dataset_id, person, base, base_sha256, created, status, path"
        f" FROM models WHERE chat_id IN ({marks})"
        f" OR dataset_id IN ({', '.join('?' * len(dataset_ids))}) ORDER BY created, id",
        [*chat_ids, *dataset_ids],
    )
    return datasets, [model_in_home(ModelRecord(*r), home) for r in rows]


def texts(conn: sqlite3.Connection, plan: ForgetPlan, shortest: int = 12) -> set[str]:
    """The texts of the plan's messages that are long enough to recognise elsewhere (in a
    saved transcript): "ok" is everyone's, a sentence is theirs."""
    out: set[str] = set()
    for chat_id in plan.chat_ids:
        out.update(
            text
            for (text,) in conn.execute(
                "SELECT m.text FROM segments s JOIN messages m"
                " ON m.id BETWEEN s.first_id AND s.last_id WHERE s.chat_id = ?",
                (chat_id,),
            )
        )
    ids = plan.participant_ids
    if ids:
        rows = conn.execute(
            f"SELECT text FROM messages WHERE participant_id IN ({', '.join('?' * len(ids))})",
            ids,
        )
        out.update(text for (text,) in rows)
    return {t for t in out if len(t) >= shortest}


def erase(conn: sqlite3.Connection, plan: ForgetPlan) -> bool:
    """Delete the plan's rows, then rewrite the file and empty the WAL. Returns False when
    another connection kept the WAL from being emptied (the app reading at that moment); the
    rows are gone either way, and the next checkpoint finishes the job.

    Under the write lock the plan is first widened (in place) to what its chat or person
    covers at that moment: a dataset, model or fact added since it was made (while the user
    read the confirmation) goes too, and the caller deletes the files of the widened plan."""
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("BEGIN IMMEDIATE")
    try:
        _widen(conn, plan)
        _delete(conn, plan)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return compact(conn)


def _widen(conn: sqlite3.Connection, plan: ForgetPlan) -> None:
    """Add to `plan` what planning its chat or person again finds now (nothing when it is
    gone already, or when the plan names neither)."""
    try:
        if plan.chat is not None:
            now = plan_chat(conn, plan.chat)
        elif plan.person is not None:
            now = plan_person(conn, plan.person)
        else:
            return
    except KeyError:
        return
    for name in ("chat_ids", "participant_ids", "names", "facts", "reindex"):
        setattr(plan, name, sorted({*getattr(plan, name), *getattr(now, name)}))
    known = {d["id"] for d in plan.datasets}
    plan.datasets += [d for d in now.datasets if d["id"] not in known]
    known = {m.id for m in plan.models}
    plan.models += [m for m in now.models if m.id not in known]
    plan.messages = max(plan.messages, now.messages)


def compact(conn: sqlite3.Connection, tries: int = 50) -> bool:
    """Checkpoint, VACUUM, and checkpoint again until the WAL is empty (True) or `tries` is
    spent waiting for other connections' readers (False)."""
    _checkpoint(conn, 1)
    conn.execute("VACUUM")
    return _checkpoint(conn, tries)


def _checkpoint(conn: sqlite3.Connection, tries: int) -> bool:
    for _ in range(tries):
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(0.1)
    return False


def _delete(conn: sqlite3.Connection, plan: ForgetPlan) -> None:
    model_ids = [m.id for m in plan.models]
    for table in _DERIVED:
        conn.executemany(f"DELETE FROM {table} WHERE model_id = ?", [(i,) for i in model_ids])
    conn.executemany("DELETE FROM models WHERE id = ?", [(i,) for i in model_ids])
    _delete_memory(conn, plan)
    conn.executemany("DELETE FROM datasets WHERE id = ?", [(d["id"],) for d in plan.datasets])
    for chat_id in plan.chat_ids:
        conn.execute(
            "DELETE FROM messages WHERE id IN (SELECT m.id FROM segments s"
            " JOIN messages m ON m.id BETWEEN s.first_id AND s.last_id WHERE s.chat_id = ?)",
            (chat_id,),
        )
        conn.execute("DELETE FROM chats WHERE id = ?", (chat_id,))  # cascades to the rest
    ids = plan.participant_ids
    if ids:
        marks = ", ".join("?" * len(ids))
        conn.execute(f"DELETE FROM messages WHERE participant_id IN ({marks})", ids)
        conn.execute(f"DELETE FROM participants WHERE id IN ({marks})", ids)
        conn.execute(
            "DELETE FROM persons WHERE id NOT IN"
            " (SELECT person_id FROM participants WHERE person_id IS NOT NULL)"
        )
        _scrub_reports(conn, set(plan.names))
    # Facts that went with their chat (by cascade) leave their full-text rows behind, whose
    # ids a new fact would then collide with.
    conn.execute("DELETE FROM fact_index WHERE rowid NOT IN (SELECT id FROM facts)")


def _delete_memory(conn: sqlite3.Connection, plan: ForgetPlan) -> None:
    """Facts (their events, conflicts and vectors go by cascade) and the search index rows of
    the chats involved: other rows of those chats hold the forgotten messages as context. The
    full-text tables are then merged into fresh segments, so no old segment keeps the words."""
    conn.executemany("DELETE FROM fact_index WHERE rowid = ?", [(i,) for i in plan.facts])
    conn.executemany("DELETE FROM facts WHERE id = ?", [(i,) for i in plan.facts])
    for chat_id in plan.reindex:
        for first, last in conn.execute(
            "SELECT first_id, last_id FROM segments WHERE chat_id = ?", (chat_id,)
        ).fetchall():
            conn.execute("DELETE FROM message_index WHERE rowid BETWEEN ? AND ?", (first, last))
            conn.execute(
                "DELETE FROM message_vectors WHERE message_id BETWEEN ? AND ?", (first, last)
            )
        conn.execute(
            "UPDATE memory_progress SET indexed_upto = 0, embedded_upto = 0 WHERE chat_id = ?",
            (chat_id,),
        )
    for table in ("message_index", "fact_index"):
        conn.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")


def _scrub_reports(conn: sqlite3.Connection, names: set[str]) -> None:
    """Drop the forgotten person from the import reports kept for each import."""
    for import_id, text in conn.execute("SELECT id, report FROM imports").fetchall():
        report = json.loads(text)
        people = report.get("participants", [])
        kept = [p for p in people if p.get("name") not in names]
        if len(kept) != len(people):
            report["participants"] = kept
            conn.execute(
                "UPDATE imports SET report = ? WHERE id = ?", (json.dumps(report), import_id)
            )
