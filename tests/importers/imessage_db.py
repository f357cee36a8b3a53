"""Builds small macOS Messages `chat.db` files for the iMessage importer tests.

The schema is a column subset of the real one (macOS 14): same table and column names, types and
defaults, minus columns the importer never reads. `attributed_body()` produces NSArchiver
"streamtyped" NSAttributedString blobs shaped like the ones Messages stores.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = """
CREATE TABLE handle (ROWID INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, id TEXT NOT NULL,
  country TEXT, service TEXT NOT NULL, uncanonicalized_id TEXT,
  person_centric_id TEXT, UNIQUE (id, service));
CREATE TABLE chat (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL,
  style INTEGER, state INTEGER, account_id TEXT, properties BLOB, chat_identifier TEXT,
  service_name TEXT, room_name TEXT, account_login TEXT, is_archived INTEGER DEFAULT 0,
  last_addressed_handle TEXT, display_name TEXT, group_id TEXT, is_filtered INTEGER DEFAULT 0);
CREATE TABLE message (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL,
  text TEXT, replace INTEGER DEFAULT 0, service_center TEXT, handle_id INTEGER DEFAULT 0,
  subject TEXT, country TEXT, attributedBody BLOB, version INTEGER DEFAULT 0,
  type INTEGER DEFAULT 0, service TEXT, account TEXT, account_guid TEXT,
  error INTEGER DEFAULT 0, date INTEGER, date_read INTEGER, date_delivered INTEGER,
  is_delivered INTEGER DEFAULT 0, is_finished INTEGER DEFAULT 0, is_from_me INTEGER DEFAULT 0,
  is_read INTEGER DEFAULT 0, is_sent INTEGER DEFAULT 0, cache_has_attachments INTEGER DEFAULT 0,
  item_type INTEGER DEFAULT 0, other_handle INTEGER DEFAULT 0, group_title TEXT,
  group_action_type INTEGER DEFAULT 0, associated_message_guid TEXT,
  associated_message_type INTEGER DEFAULT 0, balloon_bundle_id TEXT, payload_data BLOB,
  expressive_send_style_id TEXT, associated_message_range_location INTEGER DEFAULT 0,
  associated_message_range_length INTEGER DEFAULT 0, message_summary_info BLOB,
  thread_originator_guid TEXT, thread_originator_part TEXT, date_retracted INTEGER DEFAULT 0,
  date_edited INTEGER DEFAULT 0, part_count INTEGER, associated_message_emoji TEXT);
CREATE TABLE chat_message_join (chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
  message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE,
  message_date INTEGER DEFAULT 0, PRIMARY KEY (chat_id, message_id));
CREATE TABLE chat_handle_join (chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
  handle_id INTEGER REFERENCES handle (ROWID) ON DELETE CASCADE, UNIQUE(chat_id, handle_id));
CREATE TABLE attachment (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL,
  created_date INTEGER DEFAULT 0, start_date INTEGER DEFAULT 0, filename TEXT, uti TEXT,
  mime_type TEXT, transfer_state INTEGER DEFAULT 0, is_outgoing INTEGER DEFAULT 0,
  user_info BLOB, transfer_name TEXT, total_bytes INTEGER DEFAULT 0);
CREATE TABLE message_attachment_join (
  message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE,
  attachment_id INTEGER REFERENCES attachment (ROWID) ON DELETE CASCADE,
  UNIQUE(message_id, attachment_id));
"""

# Archive header up to the NSString's "+" (unshared string) type encoding: streamer version 4,
# little-endian signature, system version 1000, then the NSAttributedString/NSObject/NSString
# class chain.
BODY_HEAD = (
    b"\x04\x0bstreamtyped\x81\xe8\x03\x84\x01@\x84\x84\x84\x12NSAttributedString\x00"
    b"\x84\x84\x08NSObject\x00\x85\x92\x84\x84\x84\x08NSString\x01\x94\x84\x01+"
)
# End of the NSString object, then the attribute run (location 1, length = UTF-16 units)...
RUN_HEAD = b"\x86\x84\x02iI\x01"
# ...and its attribute dictionary {__kIMMessagePartAttributeName: 0}, closing every object.
BODY_TAIL = (
    b"\x92\x84\x84\x84\x0cNSDictionary\x00\x94\x84\x01i\x01\x92\x84\x96\x96"
    b"\x1d__kIMMessagePartAttributeName\x86\x92\x84\x84\x84\x08NSNumber\x00\x84\x84"
    b"\x07NSValue\x00\x94\x84\x01*\x84\x99\x99\x00\x86\x86\x86"
)
APPLE_EPOCH = datetime(2001, 1, 1, tzinfo=timezone.utc)


def ts_int(n: int) -> bytes:
    """A typedstream integer as Apple's writer emits it: one byte, else 0x81 + int16 LE, else
    0x82 + int32 LE."""
    if 0 <= n < 0x80:
        return bytes([n])
    if n <= 0x7FFF:
        return b"\x81" + n.to_bytes(2, "little")
    return b"\x82" + n.to_bytes(4, "little")


def attributed_body(text: str, length: bytes | None = None) -> bytes:
    """A streamtyped NSAttributedString holding `text`; `length` overrides the encoded length."""
    data = text.encode("utf-8")
    units = len(text.encode("utf-16-le")) // 2
    prefix = ts_int(len(data)) if length is None else length
    return BODY_HEAD + prefix + data + RUN_HEAD + ts_int(units) + BODY_TAIL


def apple_ns(iso: str) -> int:
    """Nanoseconds since 2001-01-01 UTC (macOS 10.13+ `date` values) for a UTC ISO time."""
    moment = datetime.fromisoformat(iso).replace(tzinfo=timezone.utc)
    return int((moment - APPLE_EPOCH).total_seconds()) * 1_000_000_000


def apple_s(iso: str) -> int:
    """Seconds since 2001-01-01 UTC, as databases before macOS 10.13 store `date`."""
    return apple_ns(iso) // 1_000_000_000


class ChatDb:
    """A chat.db under construction. `drop` names message columns to leave out (older schemas)."""

    def __init__(self, path: Path, drop: tuple[str, ...] = ()) -> None:
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.executescript(SCHEMA)
        for column in drop:
            self.db.execute(f"ALTER TABLE message DROP COLUMN {column}")

    def handle(self, handle_id: str, service: str = "iMessage") -> int:
        cur = self.db.execute(
            "INSERT INTO handle (id, country, service, uncanonicalized_id) VALUES (?, 'us', ?, ?)",
            (handle_id, service, handle_id),
        )
        return int(cur.lastrowid or 0)

    def chat(
        self, guid: str, identifier: str, name: str = "", handles: tuple[int, ...] = ()
    ) -> int:
        style = 43 if ";+;" in guid else 45  # group / one-to-one
        cur = self.db.execute(
            "INSERT INTO chat (guid, style, chat_identifier, service_name, display_name)"
            " VALUES (?, ?, ?, 'iMessage', ?)",
            (guid, style, identifier, name),
        )
        chat_id = int(cur.lastrowid or 0)
        for handle in handles:
            self.db.execute("INSERT INTO chat_handle_join VALUES (?, ?)", (chat_id, handle))
        return chat_id

    def message(self, chat_id: int, guid: str, date: int, **columns: object) -> int:
        """Insert a message row (columns by their chat.db names) and join it to the chat."""
        values = {"guid": guid, "date": date, "service": "iMessage", **columns}
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cur = self.db.execute(
            f"INSERT INTO message ({names}) VALUES ({marks})", list(values.values())
        )
        message_id = int(cur.lastrowid or 0)
        self.db.execute(
            "INSERT INTO chat_message_join VALUES (?, ?, ?)", (chat_id, message_id, date)
        )
        return message_id

    def tapback(
        self, chat_id: int, guid: str, date: int, target: str, kind: int, **columns: object
    ) -> int:
        """A tapback row: `target` is the associated_message_guid ("p:0/<guid>", "bp:<guid>")."""
        extra = {"associated_message_guid": target, "associated_message_type": kind, **columns}
        return self.message(chat_id, guid, date, **extra)

    def attachment(self, message_id: int, transfer_name: str | None, filename: str) -> None:
        cur = self.db.execute(
            "INSERT INTO attachment (guid, filename, mime_type, transfer_name) VALUES (?, ?, ?, ?)",
            (f"at_{message_id}_{transfer_name}", filename, "image/heic", transfer_name),
        )
        self.db.execute(
            "INSERT INTO message_attachment_join VALUES (?, ?)", (message_id, cur.lastrowid)
        )

    def close(self) -> Path:
        self.db.commit()
        self.db.close()
        return self.path
