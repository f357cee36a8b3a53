"""Facebook Messenger and Instagram JSON exports (`message_1.json`, `message_2.json`...).

Input: one such file, a folder (e.g. the whole `messages/inbox/<thread>/message_N.json` tree:
one chat per thread folder, its message_N files merged) or a zip of that folder.

Contract notes:
- The files list messages newest first (message_1 holds the newest); output is chronological.
  `timestamp_ms` is epoch time, so timestamps are rendered in UTC.
- Facebook writes every non-ASCII text as its UTF-8 bytes, one code point per byte ("Ã©" for
  "é"). `repair` undoes that for names, bodies, titles and reactions, but only where a string
  really is such mojibake: a genuine "é" (not valid UTF-8 once re-encoded) is kept.
- Reactions go to meta["reactions"]. The "Reacted 😂 to your message" / "Liked a message"
  notices newer exports add as messages of their own are skipped: they repeat a reaction
  already attached to the message it answers.
- Unsent messages are `deleted`, calls `call`, Subscribe/Unsubscribe `system`, stickers
  `sticker`, photos/videos/audio/files/GIFs `media` with file names in meta["attachments"].
- source_key is "messenger:<thread_path>" (Instagram's minimal exports have none: None).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any, TypeGuard

from convsim.core.chats.importers.base import ImportOptions, Source, sniffer
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

NAME = "messenger"

_MESSAGE_FILE = re.compile(r"message_(\d+)\.json")
_MEDIA_KEYS = ("photos", "videos", "audio_files", "files", "gifs")
_MEMBERSHIP_TYPES = ("Subscribe", "Unsubscribe")
# Notices that duplicate a reaction; the trailing space is how Facebook writes them.
# The reaction must not start with a word character, so "I reacted badly to your message" stays.
_REACTION_NOTICE = re.compile(r"(?:.+ )?[Rr]eacted [^\w\s]\S* to your message ?|Liked a message")
_SNIFFED_FILES = 5


def repair(text: str) -> str:
    """Undo Facebook's latin-1 mojibake where `text` is exactly that, else return it unchanged."""
    if text.isascii() or any(ord(c) > 0xFF for c in text):
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return text  # typed as-is, e.g. a real "é": not UTF-8 bytes in disguise


@sniffer
def sniff(source: Source) -> bool:
    """A JSON object with Messenger's `sender_name` and `timestamp_ms` keys near the top, in the
    file itself or in the first message_N.json files of a folder or zip."""
    if not (source.is_dir or source.is_zip):
        return _looks_like_messenger(source.head())
    files = [m for group in _thread_groups(source).values() for m in group]
    return any(_looks_like_messenger(source.head(m)) for m in files[:_SNIFFED_FILES])


def _looks_like_messenger(head: bytes) -> bool:
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return body.startswith(b"{") and b'"sender_name"' in body and b'"timestamp_ms"' in body


def parse(source: Source, options: ImportOptions) -> list[ParsedChat]:
    """One ParsedChat per thread. Raises ChatImportError for a file that is not valid JSON or has
    no "messages" list; bad single messages become Skipped entries."""
    if not (source.is_dir or source.is_zip):
        return [_parse_thread(source, [None], PurePosixPath(source.path.name).stem)]
    groups = _thread_groups(source)
    if not groups:
        raise ChatImportError(
            f"{source.name}: no message_N.json file inside; expected a Messenger or Instagram "
            "export (messages/inbox/<chat>/message_1.json)"
        )
    chats = []
    for folder, members in sorted(groups.items()):
        fallback = PurePosixPath(folder).name or source.path.stem
        chats.append(_parse_thread(source, members, fallback))
    return chats


def _thread_groups(source: Source) -> dict[str, list[str]]:
    """message_N.json members by thread folder, each folder's files in N order."""
    numbered: dict[str, list[tuple[int, str]]] = {}
    for member in source.members():
        path = PurePosixPath(member)
        match = _MESSAGE_FILE.fullmatch(path.name)
        if match:
            numbered.setdefault(path.parent.as_posix(), []).append((int(match[1]), member))
    return {folder: [m for _, m in sorted(files)] for folder, files in numbered.items()}


def _parse_thread(source: Source, members: Sequence[str | None], fallback_title: str) -> ParsedChat:
    """Merge the message_N files of one thread into one chat."""
    found: list[tuple[int, ParsedMessage]] = []
    skipped: list[Skipped] = []
    headers: list[dict[str, Any]] = []
    for member in members:
        data = _load(source, member)
        headers.append(data)
        label = f"{PurePosixPath(member).name}: " if member and len(members) > 1 else ""
        for index, raw in enumerate(data["messages"]):
            result = _convert(raw, f"{label}messages[{index}]")
            if isinstance(result, Skipped):
                skipped.append(result)
            else:
                found.append(result)
    # The files run newest first: reversing gives oldest first with equal times kept in order,
    # and the stable sort then repairs any file that is out of order.
    found.reverse()
    found.sort(key=lambda pair: pair[0])
    messages = [message for _, message in found]
    participants = _participants(headers)
    thread_path = next((h["thread_path"] for h in headers if _text(h.get("thread_path"))), None)
    return ParsedChat(
        format=NAME,
        title=_title(headers, participants, messages, fallback_title),
        messages=messages,
        skipped=skipped,
        source_key=f"messenger:{thread_path}" if thread_path else None,
        participants=participants,
    )


def _load(source: Source, member: str | None) -> dict[str, Any]:
    data = source.read_json(member)
    where = source.member_name(member)
    if not isinstance(data, dict):
        raise ChatImportError(
            f"{where}: the top level is a JSON {type(data).__name__}; expected an object with "
            'a "messages" list (a Messenger or Instagram message_N.json file)'
        )
    if not isinstance(data.get("messages"), list):
        raise ChatImportError(
            f'{where}: field "messages" is missing or not a list; expected a Messenger or '
            "Instagram message_N.json file"
        )
    return data


def _convert(raw: Any, pos: str) -> tuple[int, ParsedMessage] | Skipped:
    """One message as (epoch ms, ParsedMessage), or why it cannot be used."""
    if not isinstance(raw, dict):
        return Skipped(pos, "expected a message object")
    ms = _epoch_ms(raw)
    if ms is None:
        return Skipped(f"{pos}.timestamp_ms", "expected epoch milliseconds")
    timestamp = datetime.fromtimestamp(ms // 1000, timezone.utc).replace(tzinfo=None).isoformat()
    content = repair(raw["content"]) if _text(raw.get("content")) else ""
    sender = repair(raw["sender_name"]) if _text(raw.get("sender_name")) else None
    if raw.get("type") in _MEMBERSHIP_TYPES:
        text = content or _membership_sentence(raw, sender)
        return ms, ParsedMessage(timestamp, None, text, SYSTEM)
    if sender is None:
        return Skipped(f"{pos}.sender_name", "expected the sender's name")
    kind, text, attachments = _body(raw, content)
    if kind == TEXT and not text.strip():
        return Skipped(pos, "no text, media or sticker")
    if kind == TEXT and _REACTION_NOTICE.fullmatch(text):
        return Skipped(pos, "a reaction notice; the reaction is kept on the message it answers")
    meta: dict[str, Any] = {}
    if attachments:
        meta["attachments"] = attachments
    reactions = _reactions(raw.get("reactions"))
    if reactions:
        meta["reactions"] = reactions
    return ms, ParsedMessage(timestamp, sender, text, kind, meta or None)


def _epoch_ms(raw: dict[str, Any]) -> int | None:
    """`timestamp_ms`, or the seconds-based `timestamp` of 2018-era exports, if plausible."""
    value, scale = raw.get("timestamp_ms"), 1
    if value is None:
        value, scale = raw.get("timestamp"), 1000
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None  # not a number, or NaN
    ms = int(value * scale) if abs(value) < 1e300 else -1  # infinity: out of range below
    # Year 1970..9999: anything else cannot be rendered and is not a real send time.
    return ms if 0 <= ms < 253402300800000 else None


def _body(raw: dict[str, Any], content: str) -> tuple[str, str, list[str]]:
    """(kind, text, attachment file names) of a non-system message."""
    if raw.get("is_unsent"):
        return DELETED, content, []
    if raw.get("type") == "Call":
        return CALL, content, []
    sticker = raw.get("sticker")
    if isinstance(sticker, dict):
        return STICKER, content, _file_names([sticker])
    attachments = [name for key in _MEDIA_KEYS for name in _file_names(raw.get(key))]
    if attachments:
        return MEDIA, content, attachments
    return TEXT, _with_link(content, raw.get("share")), []


def _with_link(content: str, share: Any) -> str:
    """A shared link is kept in the body unless the body already shows it."""
    link = share.get("link") if isinstance(share, dict) else None
    if not _text(link) or link in content:
        return content
    return f"{content}\n{link}" if content.strip() else link


def _file_names(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    uris = (item.get("uri") for item in items if isinstance(item, dict))
    return [PurePosixPath(uri.split("?", 1)[0]).name or uri for uri in uris if _text(uri)]


def _reactions(items: Any) -> list[dict[str, str]]:
    if not isinstance(items, list):
        return []
    return [
        {"sender": repair(item["actor"]), "emoji": repair(item["reaction"])}
        for item in items
        if isinstance(item, dict) and _text(item.get("actor")) and _text(item.get("reaction"))
    ]


def _membership_sentence(raw: dict[str, Any], actor: str | None) -> str:
    """Subscribe/Unsubscribe messages normally carry a sentence; build one when they don't."""
    users = raw.get("users")
    names = [repair(u["name"]) for u in users or [] if isinstance(u, dict) and _text(u.get("name"))]
    who = actor or "Someone"
    if raw.get("type") == "Subscribe":
        return f"{who} added {', '.join(names)} to the group" if names else f"{who} joined"
    if names and names != [actor]:
        return f"{who} removed {', '.join(names)} from the group"
    return f"{who} left the group"


def _participants(headers: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for header in headers:
        items = header.get("participants")
        for item in items if isinstance(items, list) else []:
            name = item.get("name") if isinstance(item, dict) else item
            if _text(name) and repair(name) not in names:
                names.append(repair(name))
    return names


def _title(
    headers: list[dict[str, Any]],
    participants: list[str],
    messages: list[ParsedMessage],
    fallback: str,
) -> str:
    """The export's title; else who is in the chat; else the thread folder or file name."""
    title = next((h["title"] for h in headers if _text(h.get("title"))), None)
    if title:
        return repair(title)
    names = participants or list(dict.fromkeys(m.sender for m in messages if m.sender))
    return ", ".join(names) if names else fallback


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value != ""
