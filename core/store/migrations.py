"""Schema versions of the store. Each step moves the schema forward by one version and never
drops user data. `PRAGMA user_version` records the version a file is at."""

from __future__ import annotations

import sqlite3

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
]

VERSION = len(STEPS)


class NewerStoreError(RuntimeError):
    pass


def migrate(conn: sqlite3.Connection, upto: int = VERSION) -> int:
    """Bring the schema to version `upto`, one transaction per step. Returns the new version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > VERSION:
        raise NewerStoreError(
            f"this store is at schema version {current}, newer than this convsim knows "
            f"({VERSION}); upgrade convsim"
        )
    for version in range(current + 1, upto + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another connection (the app and a command at once) may have taken this step while
            # this one waited for the write lock: the version read under the lock decides.
            if conn.execute("PRAGMA user_version").fetchone()[0] >= version:
                conn.execute("COMMIT")
                continue
            for statement in STEPS[version - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(current, upto)
