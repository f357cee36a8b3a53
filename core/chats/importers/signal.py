"""Signal exports in three shapes.

- Text: lines `[YYYY-MM-DD, HH:MM] Name: text`; a body runs on over following lines until the next
  header. signal-export's chat.md (`[YYYY-MM-DD HH:MM:SS] Name: text`, each body ending in the
  two-space Markdown line break, reactions on a `(- Name: emoji -)` line) is read the same way.
- signal-export data.json: JSON lines of {"date", "sender", "body", "quote", "sticker",
  "reactions": [[name, emoji]], "attachments": [{"name", "path"}], "deleted", "call", "missed"}
  in one folder per chat (sigexport/models.py). Outgoing messages say "Me".
- sigtop `export-messages -f json`: one file per conversation, named "Name (+phone).json" or
  "Name (group).json", holding a JSON list of Signal Desktop's own message objects
  ({"type": "incoming"|"outgoing"|..., "conversationId", "sent_at", "body", "attachments",
  "reactions", "quote", "sticker"...}). Epoch milliseconds, so times are UTC; group senders are
  only known by phone number or service id.

Text and signal-export times are the local wall clock as written. The text form collides with
WhatsApp's iOS layout; the registry tries WhatsApp first, so this sniff only wins with ISO dates.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from convsim.core.chats.importers.base import (
    HEAD_BYTES,
    ImportOptions,
    Source,
    json_loads,
    parse_json,
    sniffer,
    valid_timestamp,
)
from convsim.core.chats.messages import (
    CALL,
    DELETED,
    MEDIA,
    STICKER,
    SYSTEM,
    TEXT,
    ChatImportError,
    ParsedChat,
    ParsedMessage,
    Skipped,
)

NAME = "signal"

_MAX_MEMBERS_SNIFFED = 200
_HEADER = re.compile(r"\[(\d{4}-\d{2}-\d{2}),? (\d{2}:\d{2})(:\d{2})?\] (.+?):(?: (.*))?")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
_SIGTOP_HEAD = re.compile(rb"^\s*\[\s*\{")
_MD_REACTIONS = re.compile(r"\(- (.*) -\)")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\(\./media/[^)]*\)\s*")
# signal-export writes call records as bodies like "Incoming voice call (accepted, 2m 3s)".
_CALL_BODY = re.compile(r"(?:Incoming|Outgoing|Missed) (?:(?:voice|video) )?call(?: \(.*\))?")
_JSONL_KEYS = {"date", "sender", "body", "quote", "attachments"}  # signal-export's Message
_LONG_TEXT = "text/x-signal-plain"  # attachment holding the full text of a long body
_EVENTS = {
    "keychange": "Safety number changed",
    "verified-change": "Safety number verification changed",
    "group-v2-change": "Group settings changed",
    "timer-notification": "Disappearing message timer changed",
    "profile-change": "Profile name changed",
    "change-number-notification": "Phone number changed",
    "chat-session-refreshed": "Chat session refreshed",
}


@sniffer
def sniff(source: Source) -> bool:
    """Any of the three shapes, decided from the first bytes."""
    return bool(_export_members(source))


def parse(source: Source, options: ImportOptions) -> list[ParsedChat]:
    """One ParsedChat per Signal export file in the source."""
    chats = []
    for member in _export_members(source) or [None]:
        where = source.member_name(member)
        path = source.member_path(member)
        # signal-export names its files chat.md / data.json inside a folder named after the chat.
        title = (
            path.parent.name if path.stem in ("chat", "data") and path.parent.name else path.stem
        )
        text = source.read_text(member)
        chats.append(_parse_text_file(text, where, title, options))
    return chats


def _export_members(source: Source) -> list[str | None]:
    found = source.matching(_shape, (".json", ".txt", ".md"), limit=_MAX_MEMBERS_SNIFFED)
    if found == [None]:
        return found
    # signal-export writes chat.md beside data.json: the JSON says more, read only that.
    names = [m for m in found if m is not None]
    dirs = {PurePosixPath(m).parent for m in names if m.endswith("data.json")}
    return [m for m in names if not m.endswith("chat.md") or PurePosixPath(m).parent not in dirs]


def _shape(head: bytes) -> str | None:
    """Which shape the head looks like: "text", "jsonl", "sigtop", or None for none."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    first = text.split("\n", 1)[0].rstrip("\r")
    if _HEADER.fullmatch(first):
        return "text"
    if _SIGTOP_HEAD.match(head.removeprefix(b"\xef\xbb\xbf")) and all(
        re.search(rb'"%s"\s*:' % key, head) for key in (b"conversationId", b"sent_at")
    ):
        return "sigtop"
    try:
        record = json_loads(first)
    except ValueError:
        return None
    is_record = isinstance(record, dict) and record.keys() >= _JSONL_KEYS
    return "jsonl" if is_record else None


def _parse_text_file(text: str, where: str, title: str, options: ImportOptions) -> ParsedChat:
    shape = _shape(text[:HEAD_BYTES].encode("utf-8"))
    if shape is None and any(_HEADER.fullmatch(x) for x in text.splitlines()[:50]):
        shape = "text"
    elif shape is None:  # a broken first record still says which JSON shape was meant
        shape = {"[": "sigtop", "{": "jsonl"}.get(text.lstrip("\ufeff \t\r\n")[:1])
    if shape == "sigtop":
        return _parse_sigtop(parse_json(text, where), where, title, options)
    if shape == "jsonl":
        chat = _parse_jsonl(text, where, title, options)
    elif shape == "text":
        chat = _parse_lines(text, title, options)
    else:
        raise ChatImportError(
            f"{where}: line 1 is not a Signal message; expected '[YYYY-MM-DD, HH:MM] Name: text', "
            "a signal-export data.json record or a sigtop JSON list"
        )
    chat.messages.sort(key=lambda m: m.timestamp)
    return chat


def _parse_lines(text: str, title: str, options: ImportOptions) -> ParsedChat:
    """The text form: a header starts a message, any other line continues the last one."""
    chat = ParsedChat(format=NAME, title=title, messages=[])
    current: list[Any] | None = None  # [line number, timestamp, sender, body lines, is chat.md]
    for number, line in enumerate(text.splitlines(), start=1):
        match = _HEADER.fullmatch(line)
        if match:
            _flush_text(chat, current, options.me_name)
            date, clock, seconds, sender, body = match.groups()
            if seconds and sender == "Me":  # signal-export says "Me" for the exporting user
                sender = chat.me = options.me_name
            stamp = f"{date}T{clock}{seconds or ':00'}"
            current = [number, stamp, sender, [body or ""], bool(seconds)]
        elif current is not None:
            current[3].append(line)
        elif line.strip():
            chat.skipped.append(Skipped(f"line {number}", "text before the first message"))
    _flush_text(chat, current, options.me_name)
    return chat


def _flush_text(chat: ParsedChat, current: list[Any] | None, me_name: str) -> None:
    if current is None:
        return
    number, timestamp, sender, lines, markdown = current
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()  # blank lines separate messages; they are not part of the body
    meta: dict[str, Any] = {}
    if markdown:
        lines = _strip_markdown(lines, meta, me_name)
    body = "\n".join(lines)
    kind = CALL if markdown and _CALL_BODY.fullmatch(body) else TEXT
    if meta.get("attachments"):
        kind, body = MEDIA, body or "<attachment>"
    if not body or not valid_timestamp(timestamp):
        why = f"impossible date or time {timestamp!r}" if body else "empty message"
        chat.skipped.append(Skipped(f"line {number}", why))
        return
    chat.messages.append(ParsedMessage(timestamp, sender, body, kind, meta or None))


def _strip_markdown(lines: list[str], meta: dict[str, Any], me_name: str) -> list[str]:
    """Undo what signal-export adds to a chat.md body: quote block, reactions, attachment links
    and the trailing two-space line break."""
    if len(lines) > 2 and not lines[0].strip() and lines[2].startswith("> "):
        end = next((i for i in range(2, len(lines)) if not lines[i].startswith("> ")), len(lines))
        lines = lines[end + 1 :] or [""]  # the quote block is followed by one blank line
    reactions = _MD_REACTIONS.fullmatch(lines[-1]) if len(lines) > 1 else None
    if reactions:
        lines = lines[:-1]
        pairs = [r.rsplit(": ", 1) for r in reactions.group(1).split(", ")]
        meta["reactions"] = [
            {"sender": me_name if p[0] == "Me" else p[0], "emoji": p[1]}
            for p in pairs
            if len(p) == 2
        ]
    last = lines[-1].removesuffix("  ")
    files = _MD_LINK.findall(last)
    if files:
        meta["attachments"] = files
        last = _MD_LINK.sub("", last).strip()
    return [*lines[:-1], last]


def _parse_jsonl(text: str, where: str, title: str, options: ImportOptions) -> ParsedChat:
    """signal-export data.json; a broken line is skipped unless no line can be read."""
    chat = ParsedChat(format=NAME, title=title, messages=[])
    first_error: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json_loads(line)
        except json.JSONDecodeError as e:
            reason = f"invalid JSON at line {number}, column {e.colno} ({e.msg})"
            first_error = first_error or reason
            chat.skipped.append(Skipped(f"line {number}", reason))
            continue
        result = _jsonl_message(record, f"line {number}", options)
        if isinstance(result, Skipped):
            chat.skipped.append(result)
        else:
            chat.messages.append(result)
            if result.sender == options.me_name:
                chat.me = options.me_name
    if first_error and not chat.messages:
        raise ChatImportError(f"{where}: {first_error}; expected one JSON object per line")
    return chat


def _jsonl_message(record: Any, pos: str, options: ImportOptions) -> ParsedMessage | Skipped:
    if not isinstance(record, dict):
        return Skipped(pos, "not a JSON object")
    date = record.get("date")
    if not (isinstance(date, str) and _ISO.match(date) and valid_timestamp(date[:19])):
        return Skipped(f"{pos}.date", "missing or not an ISO 8601 date and time")
    sender = record.get("sender")
    if not isinstance(sender, str) or not sender:
        return Skipped(f"{pos}.sender", "missing or not a string")
    sender = options.me_name if sender == "Me" else sender
    # signal-export appends a two-space Markdown line break to every body.
    body = str(record.get("body") or "").removesuffix("  ")
    meta: dict[str, Any] = {}
    reactions = [_pair(r, options.me_name) for r in _items(record.get("reactions"))]
    if any(reactions):
        meta["reactions"] = [r for r in reactions if r]
    files = [a.get("name") for a in _items(record.get("attachments")) if isinstance(a, dict)]
    if any(files):
        meta["attachments"] = [f for f in files if isinstance(f, str) and f]
    kind, body = _jsonl_kind(record, body, bool(files))
    if kind == TEXT and not body:
        return Skipped(pos, "empty message")
    return ParsedMessage(date[:19], sender, body, kind, meta or None)


def _jsonl_kind(record: dict[str, Any], body: str, has_files: bool) -> tuple[str, str]:
    if record.get("deleted"):
        return DELETED, ""
    if record.get("call") or record.get("missed") or _CALL_BODY.fullmatch(body):
        return CALL, body or ("Missed call" if record.get("missed") else "Call")
    sticker = record.get("sticker")
    if isinstance(sticker, dict):
        sticker = sticker.get("emoji")
    if sticker and not body:
        return STICKER, str(sticker)
    if has_files:
        return MEDIA, body or "<attachment>"
    return TEXT, body


def _pair(reaction: Any, me_name: str) -> dict[str, Any] | None:
    """signal-export writes a reaction as [name, emoji] (a namedtuple) or {name, emoji}."""
    if isinstance(reaction, dict):
        reaction = [reaction.get("name"), reaction.get("emoji")]
    if isinstance(reaction, list) and len(reaction) == 2 and isinstance(reaction[1], str):
        return {"sender": me_name if reaction[0] == "Me" else reaction[0], "emoji": reaction[1]}
    return None


def _parse_sigtop(data: Any, where: str, title: str, options: ImportOptions) -> ParsedChat:
    if not isinstance(data, list):
        raise ChatImportError(f"{where}: top level is not a JSON list; expected sigtop's messages")
    # sigtop names files "Name (+phone).json" or "Name (group).json".
    name, _, detail = title.rpartition(" (") if title.endswith(")") else ("", "", "")
    is_group = detail == "group)"
    chat = ParsedChat(format=NAME, title=name or title, messages=[])
    ids = {str(r.get("conversationId")) for r in data if isinstance(r, dict)} - {"None"}
    conversation = ids.pop() if len(ids) == 1 else None
    chat.source_key = f"{NAME}:{conversation}" if conversation else None
    # In a 1:1 chat, anyone who is not the contact is the exporting user.
    people = {"me": options.me_name, "them": None if is_group else chat.title}
    for i, raw in enumerate(data):
        result = _sigtop_message(raw, f"[{i}]", people, conversation)
        if isinstance(result, Skipped):
            chat.skipped.append(result)
            continue
        chat.messages.append(result)
        if result.sender == options.me_name:
            chat.me = options.me_name
    chat.messages.sort(key=lambda m: m.timestamp)
    return chat


def _sigtop_message(
    raw: Any, pos: str, people: dict[str, str | None], conversation: Any
) -> ParsedMessage | Skipped:
    if not isinstance(raw, dict):
        return Skipped(pos, "not a JSON object")
    keys = ("sent_at", "timestamp", "received_at_ms")
    millis: Any = next((raw[k] for k in keys if raw.get(k)), None)
    try:
        moment = datetime.fromtimestamp(int(millis) / 1000, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return Skipped(f"{pos}.sent_at", "missing or not epoch milliseconds")
    timestamp = moment.replace(tzinfo=None).isoformat(timespec="seconds")
    kind_name = raw.get("type")
    meta = _sigtop_meta(raw, people, conversation)
    if kind_name == "call-history":
        return _sigtop_call(raw, timestamp, people, meta)
    if kind_name not in ("incoming", "outgoing") or raw.get("expirationTimerUpdate"):
        event = "timer-notification" if raw.get("expirationTimerUpdate") else str(kind_name)
        text = _EVENTS.get(event, event.replace("-", " ").capitalize())
        return ParsedMessage(timestamp, None, text, SYSTEM, meta or None)
    # Group members are only known by phone number or service id.
    ids = (str(raw[k]) for k in ("source", "sourceServiceId", "sourceUuid") if raw.get(k))
    sender = people["me"] if kind_name == "outgoing" else people["them"] or next(ids, "Unknown")
    if raw.get("deletedForEveryone") or raw.get("isErased"):
        return ParsedMessage(timestamp, sender, "", DELETED, meta or None)
    kind, text = _sigtop_content(raw, meta)
    if not text:
        return Skipped(pos, "empty message")
    return ParsedMessage(timestamp, sender, text, kind, meta or None)


def _sigtop_meta(
    raw: dict[str, Any], people: dict[str, str | None], conversation: Any
) -> dict[str, Any]:
    # Quotes and reactions point at a message by its sent_at, so that is its source id.
    meta: dict[str, Any] = {}
    if raw.get("sent_at"):
        meta["source_id"] = str(raw["sent_at"])
    quote = raw.get("quote")
    if isinstance(quote, dict) and quote.get("id") is not None:
        meta["reply_to"] = str(quote["id"])
    if raw.get("editHistory"):
        meta["edited"] = True
    reactions = []
    for r in _items(raw.get("reactions")):
        if isinstance(r, dict) and isinstance(r.get("emoji"), str):
            who = people["them"] if r.get("fromId") == conversation else people["me"]
            reactions.append({"sender": who if people["them"] else None, "emoji": r["emoji"]})
    if reactions:
        meta["reactions"] = reactions
    return meta


def _sigtop_content(raw: dict[str, Any], meta: dict[str, Any]) -> tuple[str, str]:
    body: str = raw["body"] if isinstance(raw.get("body"), str) else ""
    sticker = raw.get("sticker")
    if isinstance(sticker, dict):
        return STICKER, str(sticker.get("emoji") or "<sticker>")
    files = [
        a
        for a in _items(raw.get("attachments"))
        if isinstance(a, dict) and a.get("contentType") != _LONG_TEXT
    ]
    if not files:
        return TEXT, body
    names = [a["fileName"] for a in files if isinstance(a.get("fileName"), str)]
    if names:
        meta["attachments"] = names
    media = str(files[0].get("contentType") or "").split("/")[0]
    placeholder = {"image": "<image>", "video": "<video>", "audio": "<audio>"}.get(media, "<file>")
    return MEDIA, body or placeholder


def _sigtop_call(
    raw: dict[str, Any], timestamp: str, people: dict[str, str | None], meta: dict[str, Any]
) -> ParsedMessage:
    """Older Signal keeps call details in the message; newer ones only say a call happened."""
    details = raw.get("callHistoryDetails")
    if not isinstance(details, dict) or "wasIncoming" not in details:
        return ParsedMessage(timestamp, None, "Call", CALL, meta or None)
    incoming = bool(details.get("wasIncoming"))
    sender = people["them"] if incoming else people["me"]
    media = "video" if details.get("wasVideoCall") else "voice"
    if details.get("wasDeclined"):
        text = f"Declined {media} call"
    elif incoming and not details.get("acceptedTime"):
        text = f"Missed {media} call"
    else:
        text = f"{'Incoming' if incoming else 'Outgoing'} {media} call"
    return ParsedMessage(timestamp, sender, text, CALL, meta or None)


def _items(value: Any) -> list[Any]:
    """A JSON field that should be a list; anything else reads as empty."""
    return value if isinstance(value, list) else []
