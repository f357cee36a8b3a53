"""Telegram Desktop JSON export ("result.json").

Two shapes: a single-chat export (top level has "messages", usually also "name", "type", "id") and
a full-account export (top level "chats": {"list": [chat, ...]}, maybe "left_chats" too). Every
chat becomes one ParsedChat. Field names follow tdesktop's export_output_json.cpp.

Contract notes:
- `text` is a string or a list of strings and entity objects; the parts are concatenated exactly
  as given (Telegram splits a sentence into parts without dropping its spaces).
- "date" is the wall clock the export shows (older versions and other tools: a space for the
  "T", fractional seconds, a "Z"; kept as written); only when it is missing is "date_unixtime"
  rendered in UTC.
- Service messages become `system` messages with a sentence built from action/actor/members;
  phone and group calls become `call` messages sent by the actor.
- "from": null (a deleted account) becomes "Deleted Account".
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from convsim.core.chats.importers.base import ImportOptions, Source, sniffer, valid_timestamp
from convsim.core.chats.messages import (
    CALL,
    MEDIA,
    STICKER,
    SYSTEM,
    TEXT,
    ChatImportError,
    ParsedChat,
    ParsedMessage,
    Skipped,
)

NAME = "telegram"

DELETED_ACCOUNT = "Deleted Account"
# Channel posts can carry thousands of anonymous reactions; past this many they say no more.
_MAX_UNNAMED_REACTIONS = 100
_MAX_MEMBERS_SNIFFED = 50
# Wall-clock ISO dates, as tdesktop writes them and as older versions and other tools do
# (`2018-07-15 12:02:45`, `2018-07-15T12:02:45.123Z`): the first 19 characters are kept.
_LOCAL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}")
# Markers only tdesktop writes; one of them near the top is enough to claim the file.
_MARKERS = re.compile(
    rb'"date_unixtime"\s*:|"text_entities"\s*:|"from_id"\s*:\s*(?:"(?:user|channel|chat))?\d'
    rb'|"personal_information"\s*:|"chats"\s*:\s*\{\s*"about"|"chats"\s*:\s*\{\s*"list"'
    # Exports from before 2021 lack the keys above but keep tdesktop's key order.
    rb'|"type"\s*:\s*"(?:message|service)"\s*,\s*"date"\s*:'
)
_MEDIA_PLACEHOLDERS = {
    "voice_message": "<voice message>",
    "video_message": "<video message>",
    "animation": "<GIF>",
    "video_file": "<video>",
    "audio_file": "<audio>",
}
# Sentences for service actions; {actor}, {members} and {title} are filled in.
_ACTIONS = {
    "create_group": '{actor} created the group "{title}"',
    "edit_group_title": '{actor} changed the group name to "{title}"',
    "edit_group_photo": "{actor} changed the group photo",
    "delete_group_photo": "{actor} removed the group photo",
    "invite_members": "{actor} added {members}",
    "remove_members": "{actor} removed {members}",
    "join_group_by_link": "{actor} joined the group via an invite link",
    "join_group_by_request": "{actor} joined the group",
    "create_channel": '{actor} created the channel "{title}"',
    "migrate_to_supergroup": "{actor} converted the group to a supergroup",
    "migrate_from_group": 'The group "{title}" was converted to a supergroup',
    "pin_message": "{actor} pinned a message",
    "clear_history": "{actor} cleared the history",
    "take_screenshot": "{actor} took a screenshot",
    "joined_telegram": "{actor} joined Telegram",
    "topic_created": '{actor} created the topic "{title}"',
    "invite_to_group_call": "{actor} invited {members} to the voice chat",
    "edit_chat_theme": "{actor} changed the chat theme",
    "set_chat_wallpaper": "{actor} changed the chat wallpaper",
}


@sniffer
def sniff(source: Source) -> bool:
    """A JSON object whose first bytes carry a tdesktop-only key."""
    return bool(_export_members(source))


def parse(source: Source, options: ImportOptions) -> list[ParsedChat]:
    """Every chat in every Telegram export file of the source (a file, a folder or a zip)."""
    return [
        chat
        for m in _export_members(source) or [None]
        for chat in _parse_document(
            source.read_json(m), source.member_name(m), source.member_path(m).stem
        )
    ]


def _export_members(source: Source) -> list[str | None]:
    """The members (None for a plain file) whose head looks like a Telegram export;
    result.json first: it is what tdesktop writes, and folders may hold other JSON files."""
    return source.matching(
        _looks_like_export, (".json",), limit=_MAX_MEMBERS_SNIFFED, first="result.json"
    )


def _looks_like_export(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and bool(_MARKERS.search(head))


def _parse_document(data: Any, where: str, stem: str) -> list[ParsedChat]:
    """Split a parsed result.json into chats; raise for a structure that is not an export."""
    if not isinstance(data, dict):
        raise ChatImportError(
            f"{where}: top level is not a JSON object; expected a Telegram export with "
            '"messages" (one chat) or "chats" (whole account)'
        )
    if "messages" in data:
        return [_parse_chat(data, "", where, stem, None)]
    if not isinstance(data.get("chats"), dict):
        raise ChatImportError(
            f'{where}: no "messages" or "chats" field at the top level; expected a Telegram '
            "export with one of them"
        )
    me = _account_owner(data)
    chats = []
    for section in ("chats", "left_chats"):
        block = data.get(section)
        if block is None and section == "left_chats":
            continue
        chat_list = block.get("list") if isinstance(block, dict) else None
        if not isinstance(chat_list, list):
            raise ChatImportError(f'{where}: "{section}.list" is not a list; expected the chats')
        for i, chat in enumerate(chat_list):
            path = f"{section}.list[{i}]"
            if not isinstance(chat, dict):
                raise ChatImportError(f"{where}: {path} is not an object; expected a chat")
            chats.append(_parse_chat(chat, path + ".", where, stem, me))
    return chats


def _account_owner(data: dict[str, Any]) -> tuple[set[Any], str] | None:
    """(the from_ids that are the exporting user, display name), when personal_information is
    there. Older exports write `from_id` as the bare number, newer ones as "user<number>"."""
    info = data.get("personal_information")
    if not isinstance(info, dict) or not isinstance(info.get("user_id"), (int, str)):
        return None
    name = f"{info.get('first_name') or ''} {info.get('last_name') or ''}".strip()
    uid = info["user_id"]
    return {f"user{uid}", uid, str(uid), *([int(uid)] if str(uid).isdigit() else [])}, name


def _parse_chat(
    chat: dict[str, Any], prefix: str, where: str, stem: str, me: tuple[set[Any], str] | None
) -> ParsedChat:
    raw_messages = chat.get("messages")
    if not isinstance(raw_messages, list):
        raise ChatImportError(
            f'{where}: "{prefix}messages" is not a list; expected the chat\'s messages'
        )
    title = _title(chat, stem)
    parsed = ParsedChat(format=NAME, title=title, messages=[])
    chat_id = chat.get("id")
    parsed.source_key = f"{NAME}:{chat_id}" if chat_id is not None else None
    for i, raw in enumerate(raw_messages):
        result = _message(raw, f"{prefix}messages[{i}]", title)
        if isinstance(result, Skipped):
            parsed.skipped.append(result)
        else:
            parsed.messages.append(result)
            from_id = raw.get("from_id") if isinstance(raw, dict) else None
            if me and isinstance(from_id, (int, str)) and from_id in me[0]:
                parsed.me = result.sender
    if me and parsed.me is None and me[1]:
        parsed.me = me[1]
    parsed.messages.sort(key=lambda m: m.timestamp)
    return parsed


def _title(chat: dict[str, Any], stem: str) -> str:
    name = chat.get("name")
    if isinstance(name, str) and name:
        return name
    if chat.get("type") == "saved_messages":
        return "Saved Messages"
    if "name" in chat:  # present but null: a chat with a deleted account
        return DELETED_ACCOUNT
    return stem


def _message(raw: Any, pos: str, chat_title: str) -> ParsedMessage | Skipped:
    """One message object, or why it was skipped."""
    if not isinstance(raw, dict):
        return Skipped(pos, "not a JSON object")
    if raw.get("type") == "unsupported":
        return Skipped(pos, "a message Telegram could not export (type unsupported)")
    timestamp = _timestamp(raw)
    if timestamp is None:
        return Skipped(pos, 'no usable "date" or "date_unixtime"')
    text = _text(raw)
    if text is None:
        return Skipped(f"{pos}.text", "expected a string or a list of text parts")
    meta = _meta(raw)
    if raw.get("type") == "service":
        return _service(raw, timestamp, meta)
    if "from" in raw:
        if raw["from"] is not None and not isinstance(raw["from"], str):
            return Skipped(f"{pos}.from", "expected a name (a string), or null")
        sender = raw["from"] if raw["from"] is not None else DELETED_ACCOUNT
    else:
        sender = chat_title  # channel posts may carry no "from": the channel is the poster
    kind, body = _content(raw, text, meta)
    if kind == TEXT and not body:
        return Skipped(pos, "empty message (no text and no media)")
    return ParsedMessage(timestamp, sender, body, kind, meta or None)


def _timestamp(raw: dict[str, Any]) -> str | None:
    date = raw.get("date")
    if isinstance(date, str) and _LOCAL_DATE.match(date):
        stamp = date[:10] + "T" + date[11:19]
        if valid_timestamp(stamp):  # else: a damaged date; date_unixtime may still serve
            return stamp
    unix: Any = raw.get("date_unixtime")
    try:
        seconds = int(unix)  # tdesktop writes it as a string
        moment = datetime.fromtimestamp(seconds, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


def _text(raw: dict[str, Any]) -> str | None:
    """The message text with entities flattened, or None if it has an unknown shape."""
    value = raw["text"] if "text" in raw else raw.get("text_entities", "")
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return None
    parts = []
    for part in value:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            return None
    return "".join(parts)


def _meta(raw: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if raw.get("id") is not None:
        meta["source_id"] = str(raw["id"])
    if raw.get("reply_to_message_id") is not None:
        meta["reply_to"] = str(raw["reply_to_message_id"])
    if raw.get("edited") or raw.get("edited_unixtime"):
        meta["edited"] = True
    if "forwarded_from" in raw:
        origin = raw["forwarded_from"]
        meta["forwarded_from"] = origin if isinstance(origin, str) else DELETED_ACCOUNT
    reactions = _reactions(raw.get("reactions"))
    if reactions:
        meta["reactions"] = reactions
    return meta


def _reactions(value: Any) -> list[dict[str, Any]]:
    """One entry per reacting person; only the "recent" reactors are named in the export."""
    out: list[dict[str, Any]] = []
    for reaction in _items(value):
        if not isinstance(reaction, dict) or not isinstance(reaction.get("emoji"), str):
            continue  # custom emoji and paid reactions carry no emoji character
        recent = [r for r in _items(reaction.get("recent")) if isinstance(r, dict)]
        for r in recent:
            sender = r.get("from") if isinstance(r.get("from"), str) else DELETED_ACCOUNT
            out.append({"sender": sender, "emoji": reaction["emoji"]})
        count = reaction.get("count")
        unnamed = min(count - len(recent), _MAX_UNNAMED_REACTIONS) if isinstance(count, int) else 0
        out.extend({"sender": None, "emoji": reaction["emoji"]} for _ in range(max(unnamed, 0)))
    return out


def _content(raw: dict[str, Any], text: str, meta: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) for a regular message; fills meta["attachments"]."""
    files = [
        PurePosixPath(raw[key]).name
        for key in ("photo", "file")
        # Files left out of the export are described in parentheses instead of named.
        if isinstance(raw.get(key), str) and raw[key] and not raw[key].startswith("(")
    ]
    if files:
        meta["attachments"] = files
    media_type = raw.get("media_type")
    if media_type == "sticker":
        emoji = raw.get("sticker_emoji")
        return STICKER, emoji if isinstance(emoji, str) and emoji else "<sticker>"
    placeholder = _placeholder(raw, media_type)
    if placeholder is None:
        return TEXT, text
    return MEDIA, text or placeholder


def _placeholder(raw: dict[str, Any], media_type: Any) -> str | None:
    """What to show for a media message without a caption; None if it has no media."""
    if isinstance(media_type, str):
        return _MEDIA_PLACEHOLDERS.get(media_type, "<file>")
    if "photo" in raw:
        return "<photo>"
    if "file" in raw:
        return "<file>"
    if isinstance(raw.get("poll"), dict):
        return f"<poll: {raw['poll'].get('question', '')}>"
    if "location_information" in raw or "place_name" in raw:
        return "<location>"
    if "contact_information" in raw:
        return "<contact>"
    if "game_title" in raw:
        return "<game>"
    return None


def _service(raw: dict[str, Any], timestamp: str, meta: dict[str, Any]) -> ParsedMessage:
    """A service message: calls keep their actor as sender, everything else is system."""
    actor = _name(raw, "actor") or "Someone"
    action = raw.get("action")
    if action in ("phone_call", "group_call"):
        return ParsedMessage(timestamp, actor, _call_text(raw), CALL, meta or None)
    if action == "pin_message" and raw.get("message_id") is not None:
        meta["reply_to"] = str(raw["message_id"])
    text = _service_text(raw, actor, action)
    return ParsedMessage(timestamp, None, text, SYSTEM, meta or None)


def _service_text(raw: dict[str, Any], actor: str, action: Any) -> str:
    if not isinstance(action, str):
        info = raw.get("information_text")  # custom service text, written without an action
        return info if isinstance(info, str) and info else f"{actor}: service message"
    members = [m if isinstance(m, str) else DELETED_ACCOUNT for m in _items(raw.get("members"))]
    if action == "create_group" and members:
        return f'{actor} created the group "{raw.get("title") or ""}" with {", ".join(members)}'
    if action == "invite_members" and members == [actor]:
        return f"{actor} joined the group"
    if action == "remove_members" and members == [actor]:
        return f"{actor} left the group"
    if action == "set_messages_ttl":
        period = raw.get("period")
        if not period:
            return f"{actor} turned off auto-delete"
        return f"{actor} set messages to auto-delete after {_duration(period)}"
    if action == "score_in_game":
        return f"{actor} scored {raw.get('score', 0)} in a game"
    if action not in _ACTIONS:
        return f"{actor}: {action.replace('_', ' ')}"
    template = _ACTIONS[action]
    title = raw.get("title") if isinstance(raw.get("title"), str) else ""
    return template.format(actor=actor, members=", ".join(members) or "someone", title=title)


def _call_text(raw: dict[str, Any]) -> str:
    what = "Group call" if raw.get("action") == "group_call" else "Call"
    duration = raw.get("duration_seconds", raw.get("duration"))
    if isinstance(duration, int) and duration > 0:
        return f"{what} ({_duration(duration)})"
    reason = raw.get("discard_reason")
    return {"missed": "Missed call", "busy": "Declined call", "hangup": "Cancelled call"}.get(
        reason if isinstance(reason, str) else "", what
    )


def _duration(seconds: Any) -> str:
    try:
        minutes, secs = divmod(int(seconds), 60)
    except (TypeError, ValueError):
        return str(seconds)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    return " ".join([*parts, f"{secs} s"] if secs or not parts else parts)


def _name(raw: dict[str, Any], key: str) -> str | None:
    """A person's name field; null means a deleted account, absent means unknown."""
    if key not in raw:
        return None
    return raw[key] if isinstance(raw[key], str) else DELETED_ACCOUNT


def _items(value: Any) -> list[Any]:
    """A JSON field that should be a list; anything else reads as empty."""
    return value if isinstance(value, list) else []
