"""Writing one export's chats into the store: matching, deduplication, the report.

Called inside the store's transaction. Speed matters here (a large export is hundreds of
thousands of messages on a laptop), so the per-message work is a handful of C-level operations:
no per-message hashing, no secondary index, and report counts taken with `Counter(map(...))`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import chain
from operator import attrgetter
from typing import Any

from convsim.core.chats.messages import SYSTEM, ChatStream, ParsedChat, ParsedMessage
from convsim.core.store.records import ImportReport

ANCHORS_PER_END = 50

Row = tuple[str, str | None, str, str]  # timestamp, sender, kind, text
Key = tuple[str, str | None, str, str, int]  # and how many identical rows came before


def message_keys(rows: Sequence[Row], seen: dict[Row, int] | None = None) -> list[Key]:
    """(timestamp, sender, kind, text, n): n counts earlier identical messages, so two real
    "ok"s in the same minute stay two messages while a re-imported one is recognised. `seen`
    carries the counts over from earlier rows (the batches of a streamed export)."""
    seen = {} if seen is None else seen
    out = []
    for row in rows:
        n = seen.get(row, 0)
        seen[row] = n + 1
        out.append((*row, n))
    return out


def _parsed_rows(messages: Sequence[ParsedMessage]) -> list[tuple[str, str | None, str, str]]:
    return [(m.timestamp, m.sender, m.kind, m.text) for m in messages]


def anchor(key: Key) -> int:
    """A stable 63-bit hash of a message key (stored, so Python's salted hash() won't do)."""
    data = "\x1f".join(map(str, key)).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def anchors_of(messages: Sequence[ParsedMessage]) -> set[tuple[str, int]]:
    """(timestamp, hash) of the first and last messages of an export."""
    ends = ANCHORS_PER_END
    if len(messages) <= 2 * ends:
        keys = message_keys(_parsed_rows(messages))
    else:
        # Repeat counts of the tail need the identical messages before it, which share its
        # timestamps: take every message sent at those times.
        tail_times = {m.timestamp for m in messages[-ends:]}
        tail = [m for m in messages if m.timestamp in tail_times]
        head = message_keys(_parsed_rows(messages[:ends]))
        keys = head + message_keys(_parsed_rows(tail))[-ends:]
    return {(k[0], anchor(k)) for k in keys}


def find_chat(
    conn: sqlite3.Connection,
    chat: ParsedChat,
    batches: Callable[[], Iterable[list[ParsedMessage]]] | None = None,
) -> int | None:
    """The stored chat this export continues, if any: by the export's own chat id, else by
    anchors (a newer export of a chat repeats its old messages; an unrelated one shares none).
    `batches`: the messages of a streamed export (read once more, only if anchors are needed)."""
    if chat.source_key is not None:
        row = conn.execute("SELECT id FROM chats WHERE source_key = ?", (chat.source_key,))
        found = row.fetchone()
        return found[0] if found else None
    stored: dict[int, set[int]] = {}
    times: set[str] = set()
    # Any format: the same messages read by another importer (a text log that is both a
    # WhatsApp and a Signal layout, imported again with --format) are the same chat.
    for cid, ts, fp in conn.execute(
        "SELECT a.chat_id, a.ts, a.fingerprint FROM anchors a JOIN chats c ON c.id = a.chat_id"
        " WHERE c.source_key IS NULL"
    ):
        stored.setdefault(cid, set()).add(fp)
        times.add(ts)
    if not stored:
        return None
    # Only messages sent at an anchor's time can match it; identical earlier messages share
    # that time too, so their repeat counts come out the same as over the whole export.
    every = chain.from_iterable(batches()) if batches else chat.messages
    candidates = [m for m in every if m.timestamp in times]
    mine = {anchor(k) for k in message_keys(_parsed_rows(candidates))}
    best, best_hits = None, 0
    for cid, anchors in stored.items():
        hits = len(anchors & mine)
        if hits >= min(5, (len(anchors) + 1) // 2) and hits > best_hits:
            best, best_hits = cid, hits
    return best


def existing_keys(conn: sqlite3.Connection, chat_id: int) -> set[Key]:
    rows = conn.execute(
        "SELECT m.ts, p.name, m.kind, m.text FROM segments s"
        " JOIN messages m ON m.id BETWEEN s.first_id AND s.last_id"
        " LEFT JOIN participants p ON p.id = m.participant_id"
        " WHERE s.chat_id = ? ORDER BY m.id",
        (chat_id,),
    ).fetchall()
    return set(message_keys(rows))


def keep_me(conn: sqlite3.Connection, chat_id: int, chat: ParsedChat) -> None:
    """Read the exporting user of a stored chat under the name they were stored with, when this
    import calls them otherwise (`--me Sam` on an iMessage or SMS export first imported as
    "Me"): their messages are then known again instead of stored twice, and what was made
    from the old name (datasets, personas, facts) still finds them. Said in the report's
    warnings. A name someone else in the chat has is left alone."""
    mine = conn.execute(
        "SELECT name FROM participants WHERE chat_id = ? AND is_me = 1", (chat_id,)
    ).fetchall()
    taken = conn.execute(
        "SELECT 1 FROM participants WHERE chat_id = ? AND name = ?", (chat_id, chat.me)
    ).fetchone()
    if len(mine) != 1 or taken is not None or mine[0][0] == chat.me:
        return
    stored, given = mine[0][0], chat.me
    for m in chat.messages:
        if m.sender == given:
            m.sender = stored
    chat.participants = [stored if p == given else p for p in chat.participants]
    chat.me = stored
    chat.warnings.append(
        f"you are {stored!r} in this chat, as it was first imported: your messages here, "
        f"given as {given!r}, are stored under {stored!r} too"
    )


def participant_ids(
    conn: sqlite3.Connection, chat_id: int, names: list[str], me: str | None
) -> dict[str | None, int | None]:
    conn.executemany(
        "INSERT OR IGNORE INTO participants (chat_id, name) VALUES (?, ?)",
        [(chat_id, n) for n in names],
    )
    if me is not None:
        conn.execute(
            "UPDATE participants SET is_me = 1 WHERE chat_id = ? AND name = ?", (chat_id, me)
        )
    ids: dict[str | None, int | None] = dict(
        conn.execute("SELECT name, id FROM participants WHERE chat_id = ?", (chat_id,))
    )
    ids[None] = None
    return ids


ROWS_PER_INSERT = 100  # x 5 values, far below SQLite's limit of 32766 bound variables
_INSERT = "INSERT INTO messages (ts, participant_id, kind, text, meta) VALUES "


def insert_messages(
    conn: sqlite3.Connection, messages: Sequence[ParsedMessage], ids: dict[str | None, int | None]
) -> None:
    """Append messages in multi-row INSERTs: per-statement overhead, not SQLite's B-tree, is
    what dominates a single-row `executemany` (measured: about half the time saved)."""
    dumps = json.dumps

    def values(batch: Sequence[ParsedMessage]) -> tuple[Any, ...]:
        return tuple(
            chain.from_iterable(
                (m.timestamp, ids[m.sender], m.kind, m.text,
                 dumps(m.meta, ensure_ascii=False) if m.meta else None)
                for m in batch
            )
        )  # fmt: skip

    per = ROWS_PER_INSERT
    whole = len(messages) - len(messages) % per
    if whole:
        conn.executemany(
            _INSERT + ", ".join(["(?, ?, ?, ?, ?)"] * per),
            (values(messages[i : i + per]) for i in range(0, whole, per)),
        )
    if whole < len(messages):
        conn.execute(
            _INSERT + ", ".join(["(?, ?, ?, ?, ?)"] * (len(messages) - whole)),
            values(messages[whole:]),
        )


def add_chat(conn: sqlite3.Connection, chat: ParsedChat, path: str) -> ImportReport:
    messages = chat.messages
    chat_id = find_chat(conn, chat)
    if chat_id is None:
        chat_id = _new_chat(conn, chat)
        new = list(messages)
    else:
        if chat.me is not None:
            keep_me(conn, chat_id, chat)
        have = existing_keys(conn, chat_id)
        keys = message_keys(_parsed_rows(messages))
        new = [m for m, k in zip(messages, keys, strict=True) if k not in have]

    senders = Counter(map(attrgetter("sender"), messages))
    names = list(dict.fromkeys([*chat.participants, *(s for s in senders if s is not None)]))
    ids = participant_ids(conn, chat_id, names, chat.me)
    first_id = _next_id(conn)
    insert_messages(conn, new, ids)
    report = build_report(chat, chat_id, len(new), senders)
    _record(conn, chat_id, first_id, len(new), anchors_of(messages), report, path)
    return report


# A streamed export is deduplicated by repeat counts; their memory is bounded by forgetting
# the counts of timestamps older than the batch once this many are held.
_SEEN_LIMIT = 200_000
# Messages kept from the end of a streamed export, for its anchors.
_TAIL_KEPT = 2_000


def add_stream(
    conn: sqlite3.Connection,
    stream: ChatStream,
    path: str,
    progress: Callable[[float, int], None] | None = None,
) -> ImportReport:
    """`add_chat` for an export read in batches: memory is bounded by a batch (plus, for a
    newer export of a stored chat, one hash per stored message of that chat). `progress`
    hears (share of the export stored, messages read) after each batch."""
    chat = stream.chat
    chat_id = find_chat(conn, chat, stream.batches)
    have: set[int] | None = None
    if chat_id is None:
        chat_id = _new_chat(conn, chat)
    else:
        have = {hash(k) for k in existing_keys(conn, chat_id)}
    ids = participant_ids(conn, chat_id, list(chat.participants), chat.me)
    senders: Counter[str | None] = Counter()
    kinds: Counter[str] = Counter()
    head: list[ParsedMessage] = []
    tail: deque[ParsedMessage] = deque(maxlen=_TAIL_KEPT)
    seen: dict[Row, int] = {}
    first_id, new, first, last = _next_id(conn), 0, "\uffff", ""
    for batch in stream.batches():
        if not batch:
            continue
        fresh = [n for n in dict.fromkeys(map(attrgetter("sender"), batch)) if n not in ids]
        if fresh:
            ids = participant_ids(conn, chat_id, fresh, None)
        if have is not None:
            if len(seen) > _SEEN_LIMIT:
                oldest = min(map(attrgetter("timestamp"), batch))
                seen = {k: n for k, n in seen.items() if k[0] >= oldest}
            keys = message_keys(_parsed_rows(batch), seen)
            batch_new = [m for m, k in zip(batch, keys, strict=True) if hash(k) not in have]
        else:
            batch_new = batch
        insert_messages(conn, batch_new, ids)
        new += len(batch_new)
        senders.update(map(attrgetter("sender"), batch))
        kinds.update(map(attrgetter("kind"), batch))
        stamps = list(map(attrgetter("timestamp"), batch))
        first, last = min(first, *stamps), max(last, *stamps)
        head += batch[: ANCHORS_PER_END - len(head)]
        tail.extend(batch[-_TAIL_KEPT:])
        del batch, batch_new, stamps  # before the next batch is read
        if progress:
            progress(stream.done, sum(kinds.values()))
    span = (first, last) if new or kinds else (None, None)
    report = build_report(chat, chat_id, new, senders, kinds, span)
    overlap = max(0, len(head) + len(tail) - sum(kinds.values()))  # a short export: all kept
    ends = head + list(tail)[overlap:]
    _record(conn, chat_id, first_id, new, anchors_of(ends), report, path)
    return report


def _new_chat(conn: sqlite3.Connection, chat: ParsedChat) -> int:
    cur = conn.execute(
        "INSERT INTO chats (format, title, source_key, created) VALUES (?, ?, ?, ?)",
        (chat.format, chat.title, chat.source_key, datetime.now().isoformat(timespec="seconds")),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _next_id(conn: sqlite3.Connection) -> int:
    """The id the next inserted message gets (inside the write transaction: nobody else can)."""
    return int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM messages").fetchone()[0])


def _record(
    conn: sqlite3.Connection,
    chat_id: int,
    first_id: int,
    new: int,
    anchors: set[tuple[str, int]],
    report: ImportReport,
    path: str,
) -> None:
    """The import's segment of message ids, its anchors and its report."""
    if new:
        conn.execute(
            "INSERT INTO segments (chat_id, first_id, last_id) VALUES (?, ?, ?)",
            (chat_id, first_id, first_id + new - 1),
        )
    conn.executemany(
        "INSERT OR IGNORE INTO anchors (chat_id, ts, fingerprint) VALUES (?, ?, ?)",
        [(chat_id, ts, fp) for ts, fp in anchors],
    )
    conn.execute(
        "INSERT INTO imports (chat_id, at, path, format, new_messages, report)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (chat_id, datetime.now().isoformat(timespec="seconds"), path, report.format, new,
         json.dumps(report.to_json())),
    )  # fmt: skip


def build_report(
    chat: ParsedChat,
    chat_id: int,
    new: int,
    senders: Counter[Any],
    kinds: Counter[str] | None = None,
    span: tuple[str | None, str | None] | None = None,
) -> ImportReport:
    """The report of one chat's import; `kinds` and `span` (first, last) are counted from
    `chat.messages` unless given (a streamed export keeps no messages)."""
    kinds = kinds if kinds is not None else Counter(map(attrgetter("kind"), chat.messages))
    if span is None:
        timestamps = list(map(attrgetter("timestamp"), chat.messages))
        span = min(timestamps, default=None), max(timestamps, default=None)
    # System messages have no sender, so the sender counts are of real messages already.
    order = dict.fromkeys([*chat.participants, *(s for s in senders if s is not None)])
    return ImportReport(
        chat_id=chat_id,
        format=chat.format,
        title=chat.title,
        messages=sum(kinds.values()) - kinds.get(SYSTEM, 0),
        new=new,
        participants=[{"name": n, "messages": senders.get(n, 0)} for n in order],
        first=span[0],
        last=span[1],
        kinds=dict(sorted(kinds.items())),
        skipped=[{"position": s.position, "reason": s.reason} for s in chat.skipped],
        warnings=list(chat.warnings),
    )
