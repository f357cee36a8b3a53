"""Seeded fuzzing of every importer with damaged copies of real exports.

Sources are the project's fixtures, a chat.db built by `imessage_db`, a zip export per format
and, when the folder is there, the real-world files under ../shared/fixtures/real/ (their own
groups, skipped without it). Mutations: truncated (also mid-UTF-8 and at a database page),
flipped bytes (also digits only, odd JSON/XML values, odd-typed database cells), mixed encodings
(latin-1, cp1252, UTF-16 with and without BOM), BOMs, 1-5 MB lines, empty files.

Case `fmt/mutation/i` (`real:fmt/mutation/i`) is built from `random.Random(f"{SEED}/{case id}")`
alone, so an id reproduces it. The rule for every case: `parse_export` (with the format, and for
every third case also detecting it) gives well-formed chats, or raises `ChatImportError` naming
the file and, for content, the place; never anything else. Run with -s to see the counts.
"""

from __future__ import annotations

import functools
import io
import json
import random
import re
import sqlite3
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from imessage_db import ChatDb, apple_ns, attributed_body

from convsim.core.chats.importers import FORMATS, parse_export
from convsim.core.chats.messages import KINDS, ChatImportError, ParsedChat, ParsedMessage

SEED = 20240302
HERE = Path(__file__).resolve()
FIXTURES = HERE.parents[1] / "fixtures"
REAL = HERE.parents[3] / "shared" / "fixtures" / "real" / "chat-miner"
SAMPLE = HERE.parents[2] / "core" / "chats" / "samples" / "sample_whatsapp.txt"

MUTATIONS = ("truncate", "flip", "encoding", "bom", "long_line", "empty")
CASES = {"truncate": 100, "flip": 120, "encoding": 60, "bom": 16, "long_line": 4, "empty": 9}
DETECT_EVERY = 3  # every third case is also auto-detected
SLOW_S = 10.0  # one parse taking longer than this is a failure too
BOM = b"\xef\xbb\xbf"

RAN: Counter[str] = Counter()  # cases run per format, for the summary test


# ---- sources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Src:
    """A file to damage: `data` itself, or when `member` is set, a zip holding `data` as it."""

    name: str
    data: bytes
    member: str | None = None

    def build(self, content: bytes | None = None) -> bytes:
        content = self.data if content is None else content
        return content if self.member is None else zipped({self.member: content})


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in members.items():
            z.writestr(name, content)
    return out.getvalue()


def _files(*paths: Path) -> list[Src]:
    return [Src(p.name, p.read_bytes()) for p in paths if p.is_file()]


def _real(folder: str) -> list[Path]:
    return sorted((REAL / folder).glob("test_*")) if REAL.is_dir() else []


@functools.cache
def chat_db() -> bytes:
    """A small chat.db: one-to-one and group chats, text and attributedBody bodies, an
    attachment, an edit, a reply, tapbacks and a group event."""
    with tempfile.TemporaryDirectory() as folder:
        db = ChatDb(Path(folder) / "chat.db")
        alice, bob = db.handle("+15551234567"), db.handle("bob@example.com")
        dm = db.chat("iMessage;-;+15551234567", "+15551234567", handles=(alice,))
        at = [apple_ns(f"2024-03-01T09:{m:02d}:00") for m in range(20)]
        db.message(dm, "A1", at[0], text="Hey, are you around? caf\u00e9", handle_id=alice)
        db.message(dm, "A2", at[1], attributedBody=attributed_body("On my way \U0001f6b2"))
        photo = db.message(dm, "A3", at[2], text="\ufffc", cache_has_attachments=1)
        db.attachment(photo, "IMG_0042.HEIC", "~/Library/Messages/Attachments/IMG_0042.HEIC")
        db.message(dm, "A4", at[3], text="See you", date_edited=at[4], is_from_me=1)
        db.message(dm, "A5", at[5], text="Great", thread_originator_guid="A1", handle_id=alice)
        db.tapback(dm, "T1", at[6], "p:0/A1", 2000, text="Loved", is_from_me=1)
        db.tapback(dm, "T2", at[7], "p:0/A4", 2006, associated_message_emoji="\U0001f389")
        group = db.chat("iMessage;+;chat88", "chat88", "Climbing crew", handles=(alice, bob))
        db.message(group, "G1", at[8], handle_id=bob, item_type=2, group_title="Climbing crew")
        db.message(
            group, "G2", at[9], text="\u0645\u0631\u062d\u0628\u0627 \U0001f44b", is_from_me=1
        )
        db.message(group, "G3", at[10], handle_id=bob, item_type=3, group_action_type=0)
        return db.close().read_bytes()


# The project's fixtures, named one by one: a case's source (and so its id) must not change when
# a fixture is added. Add new ones at the end of a list.
FIXTURE_FILES = {
    "sms": ("sms/sms-20240302083000.xml",),
    "telegram": ("telegram/full_export.json", "telegram/single_chat.json"),
    "discord": ("discord/dm.json", "discord/group_dm.json", "discord/server.json"),
    "messenger": (
        "messenger/inbox/riyapatel_10158230517364921/message_1.json",
        "messenger/inbox/riyapatel_10158230517364921/message_2.json",
        "messenger/inbox/weekendcrew_7284619573826193/message_1.json",
        "messenger/instagram/message_1.json",
    ),
    "whatsapp": (
        "whatsapp/WhatsApp Chat with Riya.txt",
        "whatsapp/Chat de WhatsApp con Familia.txt",
        "whatsapp/_chat.txt",
    ),
    "signal": (
        "signal/text_export.txt",
        "signal/signal-export/JaneDoe/data.json",
        "signal/signal-export/JaneDoe/chat.md",
        "signal/sigtop/Book Club (group).json",
        "signal/sigtop/Jane Doe (+15551234567).json",
    ),
    "generic": (
        "generic/chat.csv",
        "generic/export.tsv",
        "generic/gruppe.csv",
        "generic/history.jsonl",
        "generic/messages.jsonl",
    ),
}
REAL_FOLDERS = {
    "telegram": "telegram",
    "messenger": "instagram",
    "whatsapp": "whatsapp",
    "signal": "signal",
}


@functools.cache
def sources(corpus: str = "project") -> dict[str, list[Src]]:
    """Per format, the files to damage: the project's own, or the real-world ones (kept apart so
    that a checkout without them runs the same project cases)."""
    if corpus == "real":
        return {fmt: _files(*_real(folder)) for fmt, folder in REAL_FOLDERS.items()}
    found = {fmt: _files(*(FIXTURES / n for n in names)) for fmt, names in FIXTURE_FILES.items()}
    found["whatsapp"] += _files(SAMPLE)
    found["imessage"] = [Src("chat.db", chat_db()), Src("messages.zip", chat_db(), "chat.db")]
    zips = {  # one zip export per format: damaged archives go through base.Source
        "sms": "sms.zip",
        "telegram": "telegram.zip",
        "discord": "discord.zip",
        "messenger": "messages.zip",
        "whatsapp": "WhatsApp Chat with Riya.zip",
        "signal": "signal.zip",
        "generic": "export.zip",
    }
    for fmt, name in zips.items():
        first = found[fmt][0]
        member = "result.json" if fmt == "telegram" else first.name
        found[fmt].append(Src(name, first.data, member))
    return {fmt: found[fmt] for fmt in FORMATS}


# ---- mutations -------------------------------------------------------------------------------

# Bytes that make a flip land on structure more often than a random byte would.
INTERESTING = b'"{}[],:\n\r<>/&;\\0 \x00\x80\xc3\xe2\xef\xff9-T.'


def truncate(rng: random.Random, data: bytes, binary: bool) -> tuple[str, bytes]:
    if not data:
        return "cut@0", data
    middles = [i for i, b in enumerate(data) if 0x80 <= b < 0xC0]
    roll = rng.random()
    if binary and roll < 0.3:
        at = rng.randrange(len(data) // 4096 + 1) * 4096  # a partly copied database
        return f"cut@{at} (page)", data[:at]
    if middles and roll < 0.4:
        at = rng.choice(middles)
        return f"cut@{at} (mid-UTF-8)", data[:at]
    at = rng.randrange(len(data) * 9 // 10, len(data)) if roll < 0.6 else rng.randrange(len(data))
    return f"cut@{at}", data[:at]


def flip(rng: random.Random, data: bytes, binary: bool) -> tuple[str, bytes]:
    if not data:
        return "flip none", data
    out = bytearray(data)
    # In a database most bytes are empty page space: aim at the ones holding something.
    # In text, a third of the cases change digits only: impossible dates, times and numbers.
    digits = not binary and rng.random() < 0.3
    places = [i for i in range(100, len(out)) if out[i]] if binary else []
    places = [i for i, b in enumerate(out) if 0x30 <= b <= 0x39] if digits else places
    done = []
    for _ in range(rng.randint(1, 4)):
        at = rng.choice(places) if places and rng.random() < 0.9 else rng.randrange(len(out))
        value = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
        value = rng.choice(b"0123456789") if digits else value
        if value == out[at]:
            value ^= 0x01
        out[at] = value
        done.append(f"{at}:{value:#04x}")
    return "flip " + ",".join(done), bytes(out)


# Values a flipped byte in the right place (or a buggy exporter) could leave in a JSON field.
ODD_JSON = (
    None, True, False, 0, -1, 1.5, 10**20, float("inf"), float("nan"), "", "x", "\ud800",
    "9999-12-31T23:59:59", "2024-13-45T25:61:61", "0000-00-00T00:00:00", [], {}, [None], {"a": 1},
)  # fmt: skip
ODD_XML = (
    b"", b"  ", b"null", b"-1", b"0", b"1", b"2", b"3", b"99999999999999999999999", b"1e5",
    b"abc", b"~", b"&amp;", b"&#55357;", b"&#56838;&#55357;", b"&#xD83D;", b"(Unknown)",
)  # fmt: skip
XML_VALUE = re.compile(rb'(\w+)="([^"]*)"')


def _slots(value: object, path: str = "") -> Iterator[tuple[object, object, str]]:
    """(container, key, path) of every value inside a parsed JSON document."""
    items = value.items() if isinstance(value, dict) else enumerate(value)  # type: ignore[arg-type]
    for key, child in list(items):
        yield value, key, f"{path}/{key}"
        if isinstance(child, (dict, list)):
            yield from _slots(child, f"{path}/{key}")


def values(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """A few values of a JSON, JSON Lines or XML file swapped for odd ones: the type confusion
    a damaged record header makes in a database."""
    text = data.decode("utf-8", "replace")
    if text.lstrip("\ufeff \t\r\n").startswith("<"):
        found = list(XML_VALUE.finditer(data))
        if not found:
            return None
        out, done = data, []
        for m in sorted(rng.sample(found, min(3, len(found))), key=lambda m: -m.start()):
            odd = rng.choice(ODD_XML)
            out = out[: m.start(2)] + odd + out[m.end(2) :]
            done.append(f"{m[1].decode()}={odd.decode()}")
        return "values " + ", ".join(done), out
    try:
        docs = [json.loads(text)]
        jsonl = False
    except ValueError:
        try:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
            jsonl = True
        except ValueError:
            return None
    slots = [s for doc in docs if isinstance(doc, (dict, list)) for s in _slots(doc)]
    if not slots:
        return None
    done = []
    for container, key, path in rng.sample(slots, min(rng.randint(1, 3), len(slots))):
        odd = rng.choice(ODD_JSON)
        container[key] = odd  # type: ignore[index]
        done.append(f"{path}={odd!r}"[:50])
    dumped = [json.dumps(doc, indent=None if jsonl else 1) for doc in docs]
    return "values " + ", ".join(done), "\n".join(dumped).encode()


def _section(rng: random.Random, text: str) -> tuple[int, int]:
    """A stretch of text, around a non-ASCII character when there is one."""
    wide = [i for i, c in enumerate(text) if ord(c) > 0x7F]
    centre = rng.choice(wide) if wide and rng.random() < 0.8 else rng.randrange(len(text) or 1)
    return max(0, centre - rng.randint(0, 200)), min(len(text), centre + rng.randint(1, 200))


def encoding(rng: random.Random, data: bytes, binary: bool) -> tuple[str, bytes]:
    text = data.decode("utf-8", "replace")
    how = rng.choice(
        ("section-latin-1", "section-cp1252", "section-utf-16-le", "whole-latin-1",
         "whole-cp1252", "utf-16", "utf-16-le", "utf-16-be", "utf-16-be+bom", "utf-16-odd")
    )  # fmt: skip
    if how.startswith("section"):
        a, b = _section(rng, text)
        middle = text[a:b].encode(how.removeprefix("section-"), "replace")
        return f"{how} [{a}:{b}]", text[:a].encode() + middle + text[b:].encode()
    if how.startswith("whole"):
        return how, text.encode(how.removeprefix("whole-"), "replace")
    if how == "utf-16-be+bom":
        return how, b"\xfe\xff" + text.encode("utf-16-be")
    if how == "utf-16-odd":  # cut through a code unit
        raw = text.encode("utf-16")
        at = rng.randrange(len(raw) // 2) * 2 + 1
        return f"{how} cut@{at}", raw[:at]
    return how, text.encode(how)


def bom(rng: random.Random, data: bytes, binary: bool) -> tuple[str, bytes]:
    how = rng.choice(("bom", "bom-bom", "bom-space", "space-bom", "bom-cut", "bom-only"))
    if how == "bom-cut":
        at = rng.randrange(len(data) + 1)
        return f"bom cut@{at}", BOM + data[:at]
    prefix = {"bom": BOM, "bom-bom": BOM * 2, "bom-space": BOM + b"\n \t", "space-bom": b"\n" + BOM}
    return how, (prefix[how] + data) if how != "bom-only" else BOM


def long_line(rng: random.Random, data: bytes, binary: bool, i: int) -> tuple[str, bytes]:
    size = 5_000_000 if i == 0 else rng.randint(1_000_000, 2_000_000)
    how = ("huge-body", "word-line", "bracket-line", "digit-line")[i % 4]
    if how == "huge-body":  # after a letter: inside a body, a name or a key
        letters = [m.end() for m in re.finditer(rb"[A-Za-z]{3}", data)] or [len(data)]
        at = rng.choice(letters)
        return f"{how} {size}@{at}", data[:at] + b"ha" * (size // 2) + data[at:]
    ends = [m.end() for m in re.finditer(rb"\n", data)] or [len(data)]
    at = rng.choice(ends)
    unit = {"word-line": b"lorem ipsum ", "bracket-line": b"[", "digit-line": b"9"}[how]
    line = unit * (size // len(unit)) + b"\n"
    return f"{how} {size}@{at}", data[:at] + line + data[at:]


EMPTY = (b"", b" ", b"\n", b"\r\n", b" \t\r\n  \n", b"\n" * 50, BOM, BOM + b"\n", b"\x00")

Mutate = Callable[[random.Random, bytes, bool], tuple[str, bytes]]
MUTATORS: dict[str, Mutate] = {
    "truncate": truncate,
    "flip": flip,
    "encoding": encoding,
    "bom": bom,
}


# ---- iMessage: damage done through SQL ---------------------------------------------------------

# Cells a damaged record header could turn into any other type.
DB_CELLS = {
    "message": ("text", "date", "guid", "handle_id", "is_from_me", "attributedBody", "item_type",
                "associated_message_type", "associated_message_guid", "date_edited",
                "thread_originator_guid", "group_action_type", "other_handle", "group_title",
                "cache_has_attachments", "associated_message_emoji", "date_retracted"),
    "chat": ("guid", "chat_identifier", "display_name"),
    "handle": ("id",),
    "chat_message_join": ("chat_id", "message_id"),
    "attachment": ("filename", "transfer_name"),
}  # fmt: skip
ODD_VALUES = (
    None, 0, -1, 1, 2, 3, 2006, 3001, 2**63 - 1, -(2**63), 1.5, -2.5, 1e300, float("inf"),
    "", "x", "\ufffc", "2024", "A1", "p:0/A1", b"", b"\x00\xff", b"caf\xe9", "caf\u00e9".encode(),
)  # fmt: skip


def _db_edit(data: bytes, edit: Callable[[sqlite3.Connection], None]) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chat.db"
        path.write_bytes(data)
        with closing(sqlite3.connect(path)) as db:
            edit(db)
            db.commit()
        return path.read_bytes()


def db_cells(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """A few cells set to a value of another type (what a flipped serial type does)."""
    changes = []
    for _ in range(rng.randint(1, 3)):
        table = rng.choice(list(DB_CELLS))
        changes.append(
            (table, rng.choice(DB_CELLS[table]), rng.randint(1, 8), rng.choice(ODD_VALUES))
        )

    def edit(db: sqlite3.Connection) -> None:
        for table, column, rowid, value in changes:
            db.execute(f"UPDATE OR IGNORE {table} SET {column} = ? WHERE ROWID = ?", (value, rowid))

    label = ", ".join(f"{t}.{c}[{r}]={v!r}"[:60] for t, c, r, v in changes)
    return f"cells {label}", _db_edit(data, edit)


def db_encoding(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    how = rng.choice(("text-latin-1", "text-cp1252", "text-utf-16", "name-latin-1", "db-utf-16"))
    if how == "db-utf-16":  # the same rows in a UTF-16 database
        with tempfile.TemporaryDirectory() as folder:
            old, new = Path(folder) / "old.db", Path(folder) / "new.db"
            old.write_bytes(data)
            codec = rng.choice(("UTF-16le", "UTF-16be"))
            with closing(sqlite3.connect(old)) as source:
                dump = "\n".join(source.iterdump())
            with closing(sqlite3.connect(new)) as db:
                db.execute(f"PRAGMA encoding = '{codec}'")
                db.executescript(dump)
            return f"{how} {codec}", new.read_bytes()
    table, column = ("chat", "display_name") if how.startswith("name") else ("message", "text")
    codec = how.split("-", 1)[1]
    rowid = rng.randint(1, 4)
    raw = "Caf\u00e9 \u2013 na\u00efve \u20ac5".encode(codec, "replace")

    def edit(db: sqlite3.Connection) -> None:
        db.execute(f"UPDATE {table} SET {column} = CAST(? AS TEXT) WHERE ROWID = ?", (raw, rowid))

    return f"{how} {table}[{rowid}]", _db_edit(data, edit)


def db_long(rng: random.Random, data: bytes, i: int) -> tuple[str, bytes]:
    size = 5_000_000 if i == 0 else rng.randint(1_000_000, 2_000_000)
    how = ("text", "attributedBody", "display_name")[i % 3]
    value: object = "ha" * (size // 2)
    if how == "attributedBody":
        value = attributed_body(str(value))
    table = "chat" if how == "display_name" else "message"

    def edit(db: sqlite3.Connection) -> None:
        db.execute(f"UPDATE {table} SET {how} = ? WHERE ROWID = 1", (value,))

    return f"huge {table}.{how} {size}", _db_edit(data, edit)


def db_empty(i: int, data: bytes) -> tuple[str, bytes]:
    if i < len(EMPTY) - 3:
        return f"empty {EMPTY[i]!r}", EMPTY[i]

    def no_tables(db: sqlite3.Connection) -> None:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            if name != "sqlite_sequence":
                db.execute(f"DROP TABLE {name}")

    def no_rows(db: sqlite3.Connection) -> None:
        for table in ("message", "chat_message_join", "attachment", "message_attachment_join"):
            db.execute(f"DELETE FROM {table}")

    def no_messages(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM message")

    how, edit = [("no tables", no_tables), ("no rows", no_rows), ("joins only", no_messages)][
        i - (len(EMPTY) - 3)
    ]
    return f"empty db: {how}", _db_edit(data, edit)


# ---- cases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str  # format/mutation/index
    label: str
    name: str  # the file name to write (suffix kept: sniffers look at it)
    data: bytes


def cases(fmt: str, mutation: str, corpus: str = "project") -> Iterator[Case]:
    srcs = sources(corpus)[fmt]
    prefix = "" if corpus == "project" else f"{corpus}:"
    for i in range(CASES[mutation] if corpus == "project" else CASES[mutation] // 2 + 1):
        rng = random.Random(f"{SEED}/{prefix}{fmt}/{mutation}/{i}")
        src = rng.choice(srcs)
        db = src.data.startswith(b"SQLite format 3")
        label, data = _mutate(rng, src, mutation, i, db)
        yield Case(f"{prefix}{fmt}/{mutation}/{i}", f"{src.name}: {label}", src.name, data)


def _mutate(rng: random.Random, src: Src, mutation: str, i: int, db: bool) -> tuple[str, bytes]:
    if mutation in ("truncate", "flip") and src.member is not None and rng.random() < 0.5:
        return MUTATORS[mutation](rng, src.build(), True)  # the archive itself
    swapped = values(rng, src.data) if mutation == "flip" and rng.random() < 0.4 else None
    if db and mutation == "flip" and rng.random() < 0.4:
        label, content = db_cells(rng, src.data)
    elif swapped is not None:
        label, content = swapped
    elif db and mutation == "encoding":
        label, content = db_encoding(rng, src.data)
    elif db and mutation == "long_line":
        label, content = db_long(rng, src.data, i)
    elif db and mutation == "empty":
        label, content = db_empty(i, src.data)
    elif mutation == "long_line":
        label, content = long_line(rng, src.data, db, i)
    elif mutation == "empty":
        label, content = f"empty {EMPTY[i % len(EMPTY)]!r}", EMPTY[i % len(EMPTY)]
    else:
        label, content = MUTATORS[mutation](rng, src.data, db)
    if src.member is None:
        return label, content
    return f"{src.member} {label}", src.build(content)


# ---- the rule --------------------------------------------------------------------------------

ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
# A refusal about content says where: a line, byte, column, record, field or element...
PLACE = re.compile(
    r"\b(?:line|byte|column|record|row|field|table|element|position|offset|page|member)\b"
    r"|\w\[\d+\]|\[\d+\]|top level|\.list|\b(?:messages|channel|chats)\b"
)
# ...unless it is about the file as a whole.
WHOLE_FILE = re.compile(
    r"empty file|no messages found|not a chat export this version can read|not in the shape"
    r"|not a SQLite database|zip archive|no [^;]* inside|day/month|unreadable SQLite database"
)


def _text_ok(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")  # a lone surrogate cannot be stored
    except UnicodeEncodeError:
        return False
    return True


def _json_ok(value: object) -> bool:
    """Whether the store can keep it (meta is stored as JSON text)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):
        return False
    return True


def problem(chats: object) -> str | None:
    """What is wrong with a parse result, or None."""
    if not isinstance(chats, list) or not chats:
        return f"not a non-empty list of chats: {type(chats).__name__}"
    for c, chat in enumerate(chats):
        if not isinstance(chat, ParsedChat):
            return f"chat {c} is a {type(chat).__name__}"
        names = [chat.title, *chat.participants]
        if not all(_text_ok(n) for n in names):
            return f"chat {c} title or participants {names!r:.80}"
        for extra in (chat.me, chat.source_key):
            if extra is not None and not _text_ok(extra):
                return f"chat {c} me or source_key {extra!r:.80}"
        for m, msg in enumerate(chat.messages):
            where = f"chat {c} message {m}"
            if not isinstance(msg, ParsedMessage):
                return f"{where} is a {type(msg).__name__}"
            stamp = msg.timestamp
            if not (isinstance(stamp, str) and ISO.fullmatch(stamp)):
                return f"{where}: timestamp {stamp!r}"
            try:
                datetime.fromisoformat(stamp)
            except ValueError:
                return f"{where}: impossible timestamp {stamp!r}"
            if not _text_ok(msg.text):
                return f"{where}: text {msg.text!r:.80}"
            if msg.sender is not None and not _text_ok(msg.sender):
                return f"{where}: sender {msg.sender!r:.80}"
            if msg.kind not in KINDS:
                return f"{where}: kind {msg.kind!r}"
            if msg.meta is not None and not (isinstance(msg.meta, dict) and _json_ok(msg.meta)):
                return f"{where}: meta {msg.meta!r:.80}"
    return None


def refusal_problem(message: str, path: Path) -> str | None:
    if str(path) not in message and path.name not in message:
        return "does not name the file"
    rest = message.replace(str(path), "")
    if not (PLACE.search(rest) or WHOLE_FILE.search(rest)):
        return "names no place"
    return None


@dataclass
class Outcome:
    failure: str | None  # why the rule is broken
    refused: bool


def check(path: Path, fmt: str | None) -> Outcome:
    started = time.perf_counter()
    try:
        chats = parse_export(path, fmt)
    except ChatImportError as e:
        why = refusal_problem(str(e), path)
        return Outcome(why and f"ChatImportError {why}: {e}", True)
    except Exception as e:  # the bug this test hunts
        return Outcome(f"{type(e).__name__}: {e}"[:300], False)
    slow = time.perf_counter() - started
    why = problem(chats)
    if why is None and slow > SLOW_S:
        why = f"took {slow:.1f} s"
    return Outcome(why, False)


def run_group(fmt: str, mutation: str, corpus: str, folder: Path) -> tuple[list[str], int]:
    """(failures, cases run) of one group."""
    failures = []
    count = 0
    for i, case in enumerate(cases(fmt, mutation, corpus)):
        path = folder / case.name
        path.write_bytes(case.data)
        count += 1
        for detect in (False, True) if i % DETECT_EVERY == 0 else (False,):
            outcome = check(path, None if detect else fmt)
            if outcome.failure:
                how = "detect" if detect else f"format={fmt}"
                failures.append(f"{case.id} [{case.label}] {how}: {outcome.failure}")
    return failures, count


GROUPS = [(f, m, "project") for f in FORMATS for m in MUTATIONS]
GROUPS += [(f, m, "real") for f in REAL_FOLDERS for m in MUTATIONS]


@pytest.mark.parametrize(("fmt", "mutation", "corpus"), GROUPS)
def test_fuzz(fmt: str, mutation: str, corpus: str, tmp_path: Path) -> None:
    if not sources(corpus)[fmt]:
        pytest.skip(f"no {corpus} {fmt} files (real ones live in {REAL.parent})")
    failures, count = run_group(fmt, mutation, corpus, tmp_path)
    RAN[f"{corpus} {fmt}"] += count
    assert not failures, f"{len(failures)} of {count} cases broke the rule:\n" + "\n".join(
        failures[:10]
    )


# ---- the store -------------------------------------------------------------------------------


def _dump(store: Path) -> dict[str, list[tuple[object, ...]]]:
    with closing(sqlite3.connect(store)) as db:
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: db.execute(f"SELECT * FROM {n} ORDER BY 1").fetchall() for n in names}


def refused_cases(each: int) -> Iterator[tuple[str, Case]]:
    """The first `each` cases of every format and mutation that parse_export refuses."""
    with tempfile.TemporaryDirectory() as folder:
        for fmt in FORMATS:
            for mutation in ("truncate", "flip", "encoding", "bom"):
                found = 0
                for case in cases(fmt, mutation):
                    path = Path(folder) / case.name
                    path.write_bytes(case.data)
                    if check(path, fmt).refused:
                        found += 1
                        yield fmt, case
                    if found == each:
                        break


def test_refused_import_leaves_the_store_untouched(home: Path, tmp_path: Path) -> None:
    from convsim.core.workspace import Workspace  # here: a broken store must not stop the fuzzing

    with Workspace.open(home) as ws:
        ws.import_export(FIXTURES / "discord" / "dm.json")
        store = ws.locations.store
        before = _dump(store)
        assert before["messages"]
        tried, failures = 0, []
        for fmt, case in refused_cases(each=2):
            folder = tmp_path / str(tried)
            folder.mkdir()
            path = folder / case.name
            path.write_bytes(case.data)
            tried += 1
            try:
                ws.import_export(path, fmt)
                failures.append(f"{case.id} [{case.label}]: imported")
            except ChatImportError:
                pass
            except Exception as e:
                failures.append(f"{case.id} [{case.label}]: {type(e).__name__}: {e}"[:300])
            if _dump(store) != before:
                failures.append(f"{case.id} [{case.label}]: the store changed")
    print(f"\nstore: {tried} refused imports tried")
    assert tried >= 50
    assert not failures, "\n".join(failures[:10])


def test_case_count() -> None:
    """Runs last: the number of cases the fuzz groups ran."""
    groups = {f"{corpus} {fmt}" for fmt, _, corpus in GROUPS if sources(corpus)[fmt]}
    if set(RAN) != groups:
        pytest.skip("not every fuzz group ran")
    total = sum(RAN.values())
    per = ", ".join(f"{fmt} {n}" for fmt, n in RAN.items())
    print(f"\nfuzz: {total} cases ({per}); every {DETECT_EVERY}rd also auto-detected")
    assert total >= 2000
