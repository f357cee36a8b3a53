"""Schema versions of the store. Each step moves the schema forward by one version and never
drops user data. `PRAGMA user_version` records the version a file is at. Before the first step
on a file that already has a schema, the file is backed up (`backups.backup_store`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from convsim.core.store.backups import backup_store

STEPS: list[str] = [
    # v1: chats, people, messages, imports, datasets, settings.
    """
    CREATE TABLE chats (
        id INTEGER PRIMARY KEY,
        format TEXT NOT NULL,
        title TEXT NOT NULL,
        source_key TEXT UNIQUE,
        created TEXT NOT NULL
    );
    CREATE TABLE persons (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE participants (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        person_id INTEGER REFERENCES persons(id) ON DELETE SET NULL,
        is_me INTEGER NOT NULL DEFAULT 0,
        UNIQUE (chat_id, name)
    );
    -- Messages carry no chat column and no secondary index: each import appends one
    -- contiguous run of ids, recorded in `segments`, so a chat is read by rowid ranges and an
    -- import of 200k messages maintains a single B-tree with one less value per row.
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        participant_id INTEGER REFERENCES participants(id),
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        meta TEXT
    );
    CREATE TABLE segments (
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        first_id INTEGER NOT NULL,
        last_id INTEGER NOT NULL,
        PRIMARY KEY (chat_id, first_id)
    ) WITHOUT ROWID;
    -- Hashes of the first and last messages of every import: how a newer export of a chat
    -- that has no stable id of its own is recognised.
    CREATE TABLE anchors (
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        ts TEXT NOT NULL,
        fingerprint INTEGER NOT NULL,
        PRIMARY KEY (chat_id, fingerprint)
    ) WITHOUT ROWID;
    CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        new_messages INTEGER NOT NULL,
        report TEXT NOT NULL
    );
    CREATE TABLE datasets (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        target TEXT NOT NULL,
        created TEXT NOT NULL,
        config TEXT NOT NULL,
        stats TEXT NOT NULL,
        path TEXT NOT NULL
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # v2: trained models (LoRA adapters) and where their files are.
    """
    CREATE TABLE models (
        id TEXT PRIMARY KEY,
        chat_id INTEGER REFERENCES chats(id) ON DELETE SET NULL,
        dataset_id INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
        person TEXT NOT NULL,
        base TEXT NOT NULL,
        base_sha256 TEXT NOT NULL,
        created TEXT NOT NULL,
        status TEXT NOT NULL,
        path TEXT NOT NULL,
        metrics TEXT
    );
    """,
    # v3: memory (core/memory). Facts about people, with their sources and every change; a
    # full-text index and embeddings of messages for search, kept beside the messages so an
    # import stays fast (they are built on first use and for new messages only).
    """
    CREATE TABLE facts (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER REFERENCES chats(id) ON DELETE CASCADE,
        person TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        sources TEXT NOT NULL DEFAULT '[]',
        origin TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        importance REAL NOT NULL DEFAULT 0.5,
        status TEXT NOT NULL DEFAULT 'active',
        replaced_by INTEGER REFERENCES facts(id) ON DELETE SET NULL
    );
    CREATE INDEX facts_by_person ON facts (person, key);
    CREATE INDEX facts_by_chat ON facts (chat_id);
    CREATE TABLE fact_events (
        id INTEGER PRIMARY KEY,
        fact_id INTEGER NOT NULL REFERENCES facts(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX fact_events_by_fact ON fact_events (fact_id);
    CREATE TABLE fact_conflicts (
        old_id INTEGER NOT NULL REFERENCES facts(id) ON DELETE CASCADE,
        new_id INTEGER NOT NULL REFERENCES facts(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        resolution TEXT,
        PRIMARY KEY (old_id, new_id)
    ) WITHOUT ROWID;
    CREATE TABLE memory_progress (
        chat_id INTEGER PRIMARY KEY REFERENCES chats(id) ON DELETE CASCADE,
        indexed_upto INTEGER NOT NULL DEFAULT 0,
        embedded_upto INTEGER NOT NULL DEFAULT 0,
        extracted_upto INTEGER NOT NULL DEFAULT 0
    );
    CREATE VIRTUAL TABLE message_index USING fts5 (
        text, context, sender, tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE VIRTUAL TABLE fact_index USING fts5 (
        text, tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TABLE message_vectors (
        message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
        vec BLOB NOT NULL
    );
    """,
    # v4: learning (core/learning). Feedback on a persona's messages, kept with the transcript
    # before them and the candidates; the versions of a persona that updates made.
    """
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY,
        model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        speaker TEXT NOT NULL,
        transcript TEXT NOT NULL,
        reply TEXT NOT NULL,
        better TEXT,
        candidates TEXT NOT NULL DEFAULT '[]',
        origin TEXT NOT NULL,
        created TEXT NOT NULL,
        used_in INTEGER
    );
    CREATE INDEX feedback_by_model ON feedback (model_id);
    CREATE TABLE model_versions (
        model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        created TEXT NOT NULL,
        status TEXT NOT NULL,
        kept INTEGER NOT NULL DEFAULT 0,
        path TEXT NOT NULL,
        record TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (model_id, version)
    ) WITHOUT ROWID;
    """,
]

VERSION = len(STEPS)


class NewerStoreError(RuntimeError):
    pass


def migrate(conn: sqlite3.Connection, upto: int = VERSION, backup: bool = True) -> int:
    """Bring the schema to version `upto`, one transaction per step. Returns the new version.
    With `backup`, a store file that has a schema is backed up before it is changed, once, by
    the connection that takes the first step, even when several migrate it at once (a damaged
    file raises `StoreCorruptError` and is left as it was; so does a backup that cannot be
    written)."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > VERSION:
        raise NewerStoreError(
            f"this store is at schema version {current}, newer than this convsim knows "
            f"({VERSION}); upgrade convsim"
        )
    backed_up = not backup
    for version in range(current + 1, upto + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another connection (the app and a command at once) may have taken this step while
            # this one waited for the write lock: the version read under the lock decides.
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found >= version:
                conn.execute("COMMIT")
                continue
            if not backed_up:  # before the first step this connection takes
                backed_up = True
                path = _file_of(conn)
                # Only when no other connection has started migrating since this one looked
                # (it backed the file up before its first step); other connections read the
                # file as last committed: nothing written yet.
                if 0 < found == current and path is not None:
                    backup_store(path)
            for statement in STEPS[version - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(current, upto)


def _file_of(conn: sqlite3.Connection) -> Path | None:
    """The file of the connection's main database (None in memory or a temporary one)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return Path(file) if file else None
    return None
