"""macOS Messages (iMessage/SMS) importer: reads `~/Library/Messages/chat.db` directly.

Input is the SQLite file itself or a folder holding it (a copy of `~/Library/Messages`). The
database is opened read-only through a `mode=ro` URI and never written. One `ParsedChat` per
`chat` row; `source_key` is "imessage:<chat guid>".

Bodies come from `message.text`, or when that is NULL from `message.attributedBody`, an
NSArchiver "streamtyped" NSAttributedString whose NSString payload is decoded here. Dates are
Apple-epoch (2001-01-01 UTC) seconds on old databases and nanoseconds since macOS 10.13; both are
rendered in UTC. Tapbacks (associated_message_type 2000-2006 add, 3000-3006 remove) become
`meta["reactions"]` on their target; `item_type != 0` rows (renames, member changes) are system
messages; attachment-only rows are media. A damaged cell reads as empty (or U+FFFD: bad UTF-8).
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from convsim.core.chats import messages as model
from convsim.core.chats.importers.base import ImportOptions, Source, sniffer
from convsim.core.chats.messages import ChatImportError, ParsedChat, ParsedMessage, Skipped

NAME = "imessage"

SQLITE_MAGIC = b"SQLite format 3\x00"
DB_NAME = "chat.db"
REQUIRED_TABLES = ("message", "handle", "chat", "chat_message_join")
# message columns the importer cannot do without; every other column is optional (read as NULL)
# because the schema has grown over macOS releases.
REQUIRED_MESSAGE_COLUMNS = ("guid", "date", "is_from_me", "handle_id")
# fmt: off
OPTIONAL_MESSAGE_COLUMNS = (
    "text", "attributedBody", "date_edited", "date_retracted", "associated_message_guid",
    "associated_message_type", "associated_message_emoji", "cache_has_attachments", "item_type",
    "group_action_type", "group_title", "other_handle", "thread_originator_guid",
)
# fmt: on
EXPECTED = "expected the chat.db from ~/Library/Messages on a Mac"

APPLE_EPOCH = datetime(2001, 1, 1, tzinfo=timezone.utc)
# Seconds since 2001 stay far below this until the year 5000; nanoseconds pass it 100 s in.
NANOSECOND_THRESHOLD = 100_000_000_000

# associated_message_type: 2000 + n adds tapback n, 3000 + n removes it; 6 is a custom emoji.
TAPBACK_REMOVE, CUSTOM_EMOJI = 3000, 6
# love, like, dislike, laugh, emphasis, question
TAPBACK_EMOJI = ("\u2764\ufe0f", "\U0001f44d", "\U0001f44e", "\U0001f602", "\u203c\ufe0f", "\u2753")
# A sticker placed on a message (1000) or sent as a tapback (2007, iOS 18).
STICKER_TYPES = (1000, 2007)
TAPBACK_PREFIX = re.compile(r"^(?:p:\d+/|bp:)")
REACTED_TEXT = re.compile(r"^Reacted (\S+) to ")
OBJECT_REPLACEMENT = "\ufffc"
# item_type 3 rows by group_action_type.
GROUP_EVENTS = {0: "left the conversation", 1: "changed group photo", 2: "removed group photo"}


# --- attributedBody (typedstream) -------------------------------------------------------------

# Typedstream integer tags (pytypedstream's _TAG_INTEGER_2/_4): 0x81 = 2-byte, 0x82 = 4-byte
# integer follows; other bytes in 0x80..0x91 are tags that cannot start a length.
_INT2, _INT4, _FIRST_TAG, _LAST_TAG = 0x81, 0x82, 0x80, 0x91
_Order = Literal["little", "big"]
_BYTE_ORDER: dict[bytes, _Order] = {b"streamtyped": "little", b"typedstream": "big"}


def decode_attributed_body(blob: bytes | None) -> str | None:
    """The NSString text inside an archived NSAttributedString, or None when the blob is not
    a typedstream or its string cannot be located/decoded. Never raises."""
    if not isinstance(blob, bytes) or len(blob) < 13:
        return None
    order = _BYTE_ORDER.get(bytes(blob[2:13]))
    at = blob.find(b"NSString")
    if order is None or at < 0:
        return None
    # After the class name come its version and superclass reference, then the value's type
    # encoding, a new shared string "+" (\x84 \x01 +): an unshared string = length + bytes.
    plus = blob.find(b"\x01+", at + 8, at + 8 + 16)
    length_at = _read_length(blob, plus + 2, order) if plus >= 0 else None
    if length_at is None:
        return None
    length, start = length_at
    raw = bytes(blob[start : start + length])
    try:
        return raw.decode("utf-8") if len(raw) == length else None
    except UnicodeDecodeError:
        return None


def _read_length(blob: bytes, i: int, order: _Order) -> tuple[int, int] | None:
    """(value, offset after it) for the typedstream unsigned integer at `i`."""
    if i >= len(blob):
        return None
    head = blob[i]
    width = {_INT2: 2, _INT4: 4}.get(head, 0)
    if width:
        raw = blob[i + 1 : i + 1 + width]
        if len(raw) != width:
            return None
        return int.from_bytes(raw, order), i + 1 + width
    if _FIRST_TAG <= head <= _LAST_TAG:
        return None
    return head, i + 1


def _db_path(source: Source) -> Path | None:
    """The chat.db to read: the file itself, or chat.db in the folder or one level below."""
    if source.is_zip:
        return None
    if not source.is_dir:
        return source.path
    direct = source.path / DB_NAME
    if direct.is_file():
        return direct
    nested = sorted(p for p in source.path.glob(f"*/{DB_NAME}") if p.is_file())
    return nested[0] if nested else None


def _connect(path: Path) -> sqlite3.Connection:
    """Open read-only: the user's database must never be modified."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def _tables(db: sqlite3.Connection) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})").fetchall()}


@sniffer
def sniff(source: Source) -> bool:
    """A SQLite file (or folder holding chat.db) with the Messages core tables."""
    path = _db_path(source)
    if path is None or not path.is_file() or not _is_sqlite(path):
        return False
    with closing(_connect(path)) as db:
        return set(REQUIRED_TABLES) <= _tables(db)


def parse(source: Source, options: ImportOptions) -> list[ParsedChat]:
    """Every chat that has messages, in chat ROWID order; raises ChatImportError for anything
    that is not a readable chat.db."""
    path = _db_path(source)
    if path is None:
        what = "a zip archive (unzip it first)" if source.is_zip else f"no {DB_NAME} in this folder"
        raise ChatImportError(f"{source.name}: {what}; {EXPECTED}")
    name = str(path) if source.is_dir else source.name
    if not path.is_file() or not _is_sqlite(path):
        raise ChatImportError(f"{name}: not a SQLite database (bad header at byte 0); {EXPECTED}")
    try:
        with closing(_connect(path)) as db:
            db.row_factory = sqlite3.Row
            db.text_factory = lambda raw: raw.decode("utf-8", "replace")
            return _read_chats(db, name, options)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:  # the latter: in SQLite's message
        raise ChatImportError(f"{name}: unreadable SQLite database ({e}); {EXPECTED}") from e


# --- reading ----------------------------------------------------------------------------------


@dataclass
class _Context:
    me: str
    handles: dict[int, str]
    attachments: dict[int, list[str]]
    members: list[str] = field(default_factory=list)


def _read_chats(db: sqlite3.Connection, name: str, options: ImportOptions) -> list[ParsedChat]:
    tables = _tables(db)
    for table in REQUIRED_TABLES:
        if table not in tables:
            raise ChatImportError(f"{name}: no `{table}` table; {EXPECTED}")
    columns = _columns(db, "message")
    for column in REQUIRED_MESSAGE_COLUMNS:
        if column not in columns:
            raise ChatImportError(f"{name}: table `message` has no `{column}` column; {EXPECTED}")
    handles = {r[0]: r[1] for r in db.execute("SELECT ROWID, id FROM handle") if _str(r[1])}
    ctx = _Context(options.me_name, handles, _attachments(db, tables))
    members = _members(db, tables, handles)
    rows_by_chat: dict[int, list[sqlite3.Row]] = {}
    for row in db.execute(_message_query(columns)):
        rows_by_chat.setdefault(row["chat_id"], []).append(row)
    chats = []
    for chat in db.execute("SELECT ROWID, guid, chat_identifier, display_name FROM chat"):
        rows = rows_by_chat.get(chat["ROWID"])
        if rows:
            ctx.members = members.get(chat["ROWID"], [])
            chats.append(_build_chat(chat, rows, ctx))
    return chats


def _message_query(columns: set[str]) -> str:
    """All messages with their chat, oldest first; absent optional columns read as NULL."""
    picks = [f"m.{c}" if c in columns else f"NULL AS {c}" for c in OPTIONAL_MESSAGE_COLUMNS]
    wanted = ", ".join([f"m.{c}" for c in REQUIRED_MESSAGE_COLUMNS] + picks)
    return (
        f"SELECT cmj.chat_id AS chat_id, m.ROWID AS rowid, {wanted} FROM chat_message_join cmj"
        " JOIN message m ON m.ROWID = cmj.message_id ORDER BY cmj.chat_id, m.date, m.ROWID"
    )


def _attachments(db: sqlite3.Connection, tables: set[str]) -> dict[int, list[str]]:
    """message ROWID -> attachment file names (transfer_name, else the stored file's name)."""
    if not {"attachment", "message_attachment_join"} <= tables:
        return {}
    query = (
        "SELECT j.message_id, a.transfer_name, a.filename FROM message_attachment_join j"
        " JOIN attachment a ON a.ROWID = j.attachment_id ORDER BY j.message_id, a.ROWID"
    )
    found: dict[int, list[str]] = {}
    for message_id, transfer_name, filename in db.execute(query):
        label = _str(transfer_name) or PurePosixPath(_str(filename)).name
        if label:
            found.setdefault(message_id, []).append(label)
    return found


def _members(
    db: sqlite3.Connection, tables: set[str], handles: dict[int, str]
) -> dict[int, list[str]]:
    """chat ROWID -> the handles chat_handle_join lists for it, in join order."""
    if "chat_handle_join" not in tables:
        return {}
    found: dict[int, list[str]] = {}
    for chat_id, handle_id in db.execute("SELECT chat_id, handle_id FROM chat_handle_join"):
        if handle_id in handles:
            found.setdefault(chat_id, []).append(handles[handle_id])
    return found


def _build_chat(chat: sqlite3.Row, rows: list[sqlite3.Row], ctx: _Context) -> ParsedChat:
    messages: list[ParsedMessage] = []
    skipped: list[Skipped] = []
    by_guid: dict[str, ParsedMessage] = {}
    tapbacks = []
    for row in rows:
        if _tapback_kind(row) is not None:
            tapbacks.append(row)  # applied once every possible target exists
            continue
        result = _message(row, ctx)
        if isinstance(result, Skipped):
            skipped.append(result)
        else:
            messages.append(result)
            by_guid[row["guid"]] = result
    for row in tapbacks:
        problem = _apply_tapback(row, by_guid, ctx)
        if problem is not None:
            skipped.append(problem)
    return ParsedChat(
        format=NAME,
        title=_str(chat["display_name"]) or _str(chat["chat_identifier"]) or str(chat["guid"]),
        messages=messages,
        skipped=skipped,
        source_key=f"{NAME}:{chat['guid']}",
        participants=list(ctx.members),
        me=ctx.me,
    )


def _position(row: sqlite3.Row) -> str:
    return f"message ROWID {row['rowid']}"


def _timestamp(raw: Any) -> str | None:
    """Apple-epoch seconds or nanoseconds -> UTC ISO string; None when unusable."""
    if not isinstance(raw, int | float) or raw <= 0:
        return None
    seconds = raw // 1_000_000_000 if raw > NANOSECOND_THRESHOLD else raw
    try:
        moment = APPLE_EPOCH + timedelta(seconds=int(seconds))
    except OverflowError:
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


def _sender(row: sqlite3.Row, ctx: _Context) -> str:
    """The exporting user for is_from_me rows, else the handle (phone/e-mail)."""
    if row["is_from_me"]:
        return ctx.me
    handle = ctx.handles.get(row["handle_id"])
    if handle:
        return handle
    # Some received rows carry handle_id 0; in a one-to-one chat the sender is still certain.
    return ctx.members[0] if len(ctx.members) == 1 else "unknown"


def _body(row: sqlite3.Row) -> tuple[str, bool]:
    """(text without U+FFFC placeholders, whether an attributedBody failed to decode)."""
    text: str | None = _str(row["text"])
    broken = False
    if not text and row["attributedBody"]:
        text = decode_attributed_body(row["attributedBody"])
        broken = text is None
    return (text or "").replace(OBJECT_REPLACEMENT, ""), broken


def _message(row: sqlite3.Row, ctx: _Context) -> ParsedMessage | Skipped:
    timestamp = _timestamp(row["date"])
    if timestamp is None:
        return Skipped(_position(row), f"unusable date {row['date']!r}")
    meta: dict[str, Any] = {"source_id": str(row["guid"])}
    if row["item_type"]:
        return ParsedMessage(timestamp, None, _system_text(row, ctx), model.SYSTEM, meta)
    sender = _sender(row, ctx)
    text, broken = _body(row)
    files = ctx.attachments.get(row["rowid"], [])
    if files:
        meta["attachments"] = list(files)
    if _str(row["thread_originator_guid"]):
        meta["reply_to"] = row["thread_originator_guid"]
    if _timestamp(row["date_edited"]):
        meta["edited"] = True
    if text.strip():
        return ParsedMessage(timestamp, sender, text, model.TEXT, meta)
    if files or row["cache_has_attachments"]:
        kind = model.STICKER if row["associated_message_type"] in STICKER_TYPES else model.MEDIA
        return ParsedMessage(timestamp, sender, "", kind, meta)
    if _timestamp(row["date_retracted"]) or meta.get("edited"):
        # Unsent ("Undo Send") messages keep their row with the body wiped.
        return ParsedMessage(timestamp, sender, "", model.DELETED, meta)
    reason = "attributedBody could not be decoded" if broken else "no text"
    return Skipped(_position(row), reason)


def _system_text(row: sqlite3.Row, ctx: _Context) -> str:
    """A readable line for group events (item_type 1 members, 2 rename, 3 leave/photo)."""
    actor = _sender(row, ctx)
    item, action = row["item_type"], row["group_action_type"] or 0
    other = ctx.handles.get(row["other_handle"] or 0, "someone")
    if item == 1:
        verb = "removed" if action == 1 else "added"
        where = "from" if action == 1 else "to"
        return f"{actor} {verb} {other} {where} the conversation"
    if item == 2:
        return f'{actor} named the conversation "{row["group_title"] or ""}"'
    if item == 3 and action in GROUP_EVENTS:
        return f"{actor} {GROUP_EVENTS[action]}"
    return f"system event (item_type {item})"


def _tapback_kind(row: sqlite3.Row) -> int | None:
    """associated_message_type for tapbacks we understand (2000-2006, 3000-3006), else None."""
    kind = row["associated_message_type"]
    ok = isinstance(kind, int) and kind % 1000 <= CUSTOM_EMOJI and kind // 1000 in (2, 3)
    return kind if ok else None


def _tapback_emoji(row: sqlite3.Row) -> str | None:
    n = row["associated_message_type"] % 1000
    if n != CUSTOM_EMOJI:
        return TAPBACK_EMOJI[n]
    if row["associated_message_emoji"]:
        return str(row["associated_message_emoji"])
    # Databases without associated_message_emoji still say "Reacted 🎉 to “…”" in `text`.
    match = REACTED_TEXT.match(_str(row["text"]))
    return match.group(1) if match else None


def _apply_tapback(
    row: sqlite3.Row, by_guid: dict[str, ParsedMessage], ctx: _Context
) -> Skipped | None:
    """Add or remove one sender's reaction on the target; Skipped if it can't be placed."""
    target_guid = TAPBACK_PREFIX.sub("", _str(row["associated_message_guid"]))
    target = by_guid.get(target_guid)
    if target is None:
        return Skipped(_position(row), f"reaction to unknown message {target_guid or '(none)'}")
    emoji = _tapback_emoji(row)
    if emoji is None:
        return Skipped(_position(row), "custom emoji reaction without an emoji")
    sender = _sender(row, ctx)
    meta = target.meta = target.meta if target.meta is not None else {}
    # Messages keeps one tapback per person per message: a new one replaces the old one, and a
    # removal clears it.
    reactions = [r for r in meta.get("reactions", []) if r["sender"] != sender]
    if row["associated_message_type"] < TAPBACK_REMOVE:
        reactions.append({"sender": sender, "emoji": emoji})
    if reactions:
        meta["reactions"] = reactions
    else:
        meta.pop("reactions", None)
    return None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
