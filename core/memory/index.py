"""The search index of a chat's messages: full text (SQLite FTS5) and embeddings.

An import does not index (it stays fast); the index is brought up to date on first use and then
covers only new messages: `memory_progress` records, per chat, the highest message id indexed
(`indexed_upto`) and embedded (`embedded_upto`). Message ids only grow, and a newer export of a
chat appends a new run of ids, so "everything after the mark" is exactly what is new.

Each text message is one row of `message_index`: its text, the message before it (`context`,
so "how's the new job?" / "chaos, but I like it" is found by "job") and its sender's name.
Embeddings (`message_vectors`) are of the message, or of the message with the one before it
when it is too short to mean much alone. Embedding is the slow part (about 300 messages/s on two
cores): it runs in batches, each committed with its mark, so a stopped run resumes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from convsim.core.chats.messages import TEXT
from convsim.core.memory.embedder import Embedder, to_blob
from convsim.core.store import Store

EMBED_BATCH = 512  # messages per committed batch
SHORT_WORDS = 3  # a message with fewer words ("ok", "yes lol") is embedded with the one before

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class IndexState:
    messages: int  # text messages of the chat
    indexed: int  # messages added to the full-text index by this call
    embedded: int  # messages embedded by this call


@dataclass(frozen=True)
class Row:
    id: int
    ts: str
    sender: str | None
    text: str
    context: str  # the text of the message before it in the chat ("" for the first)


def chat_rows(store: Store, chat_id: int, after: int = 0) -> list[Row]:
    """The chat's text messages with ids above `after`, oldest first, each with the text of
    the message before it (even when that one is at or below `after`)."""
    segments = store.conn.execute(
        "SELECT first_id, last_id FROM segments WHERE chat_id = ? AND last_id > ?"
        " ORDER BY first_id",
        (chat_id, after),
    ).fetchall()
    names = dict(
        store.conn.execute("SELECT id, name FROM participants WHERE chat_id = ?", (chat_id,))
    )
    out: list[Row] = []
    for first, last in segments:
        start = max(first, after + 1)
        before = store.conn.execute(
            "SELECT text FROM messages WHERE id >= ? AND id < ? AND kind = ?"
            " ORDER BY id DESC LIMIT 1",
            (first, start, TEXT),
        ).fetchone()
        previous = before[0] if before else ""
        for mid, ts, pid, text in store.conn.execute(
            "SELECT id, ts, participant_id, text FROM messages"
            " WHERE id BETWEEN ? AND ? AND kind = ? ORDER BY id",
            (start, last, TEXT),
        ):
            out.append(Row(mid, ts, names.get(pid), text, previous))
            previous = text
    return out


def progress_of(store: Store, chat_id: int) -> tuple[int, int, int]:
    """(indexed_upto, embedded_upto, extracted_upto) of a chat."""
    row = store.conn.execute(
        "SELECT indexed_upto, embedded_upto, extracted_upto FROM memory_progress WHERE chat_id = ?",
        (chat_id,),
    ).fetchone()
    return (row[0], row[1], row[2]) if row else (0, 0, 0)


def set_mark(conn: sqlite3.Connection, chat_id: int, column: str, value: int) -> None:
    """Move one of a chat's marks (inside the caller's transaction)."""
    assert column in ("indexed_upto", "embedded_upto", "extracted_upto")
    conn.execute(
        "INSERT INTO memory_progress (chat_id) VALUES (?) ON CONFLICT (chat_id) DO NOTHING",
        (chat_id,),
    )
    conn.execute(f"UPDATE memory_progress SET {column} = ? WHERE chat_id = ?", (value, chat_id))


def still_stored(conn: sqlite3.Connection, ids: list[int]) -> set[int]:
    """Which of the message `ids` are still stored (a forget may have deleted some)."""
    marks = ", ".join("?" * len(ids))
    return {i for (i,) in conn.execute(f"SELECT id FROM messages WHERE id IN ({marks})", ids)}


def embedding_text(row: Row) -> str:
    if len(row.text.split()) < SHORT_WORDS and row.context:
        return f"{row.context}\n{row.text}"
    return row.text


def update_index(
    store: Store,
    chat_id: int,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> IndexState:
    """Bring a chat's index up to date: full text always, embeddings when an `embedder` is
    given. `progress(done, total)` follows the embedding; `stop` ends it after a batch (what
    was embedded is kept and the next call goes on from there)."""
    if not store.has_chat(chat_id):
        raise KeyError(f"no chat with id {chat_id}")
    new_text = chat_rows(store, chat_id, after=progress_of(store, chat_id)[0])
    if new_text:  # (nothing new, the usual case before a search: no write lock taken)
        # Read again and written under one lock: another indexer of the chat, or a forget
        # (which deletes messages and resets the marks), cannot come between.
        with store.transaction() as conn:
            new_text = chat_rows(store, chat_id, after=progress_of(store, chat_id)[0])
            conn.executemany(
                "INSERT INTO message_index (rowid, text, context, sender) VALUES (?, ?, ?, ?)",
                [(r.id, r.text, r.context, r.sender or "") for r in new_text],
            )
            if new_text:
                set_mark(conn, chat_id, "indexed_upto", new_text[-1].id)
    embedded = 0
    if embedder is not None:
        mark = progress_of(store, chat_id)[1]
        todo = chat_rows(store, chat_id, after=mark)
        for start in range(0, len(todo), EMBED_BATCH):
            if stop is not None and stop.is_set():
                break
            if progress:
                progress(start, len(todo))
            batch = todo[start : start + EMBED_BATCH]
            vectors = embedder.embed([embedding_text(r) for r in batch])  # seconds: no lock
            with store.transaction() as conn:
                if progress_of(store, chat_id)[1] != mark:
                    break  # a forget or another indexer moved it: the next update goes on
                kept = still_stored(conn, [r.id for r in batch])
                conn.executemany(
                    "INSERT OR REPLACE INTO message_vectors (message_id, vec) VALUES (?, ?)",
                    [(r.id, to_blob(v)) for r, v in zip(batch, vectors, strict=True)
                     if r.id in kept],
                )  # fmt: skip
                mark = batch[-1].id
                set_mark(conn, chat_id, "embedded_upto", mark)
            embedded += len(batch)
        if progress and todo:
            progress(embedded, len(todo))
    total = store.conn.execute(
        "SELECT count(*) FROM segments s JOIN messages m ON m.id BETWEEN s.first_id AND s.last_id"
        " WHERE s.chat_id = ? AND m.kind = ?",
        (chat_id, TEXT),
    ).fetchone()[0]
    return IndexState(total, len(new_text), embedded)
