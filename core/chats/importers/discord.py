"""DiscordChatExporter JSON exports (one channel per file: DMs, group DMs, server channels).

Shape, as JsonMessageWriter.cs writes it: {"guild": {...}, "channel": {"id", "type", "name",
"category"...}, "messages": [{"id", "type", "timestamp", "timestampEdited", "content",
"author": {"id", "name", "nickname", "isBot"}, "attachments", "embeds", "stickers",
"reactions", "mentions", "reference"...}], "messageCount"}.

Contract notes:
- Timestamps carry an offset ("2020-01-17T21:49:00.123+01:00"): the wall clock shown is kept,
  the fraction and the offset are dropped.
- Sender is the nickname when set, else the user name. Bots get meta["bot"] = True.
- System notifications (RecipientAdd, ChannelPinnedMessage, GuildMemberJoin...) become `system`
  messages whose text names the actor; "Call" becomes a `call` message sent by its author.
- A folder or zip of several exports gives one ParsedChat per file.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from convsim.core.chats.importers.base import ImportOptions, Source, sniffer
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

NAME = "discord"

# Channel posts can carry thousands of anonymous reactions; past this many they say no more.
_MAX_UNNAMED_REACTIONS = 100
_MAX_MEMBERS_SNIFFED = 200
_HEAD = re.compile(rb'^\s*\{\s*"guild"\s*:\s*\{')
_CHANNEL = re.compile(rb'"channel"\s*:\s*\{')
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)")
_TEXT_TYPES = ("Default", "Reply")
_DIRECT_CHANNELS = ("DirectTextChat", "DirectGroupTextChat")
# Sentences for notifications that arrive without DiscordChatExporter's fallback content.
_SYSTEM_TEXT = {
    "RecipientAdd": "{actor} added {mentions} to the group.",
    "RecipientRemove": "{actor} removed {mentions} from the group.",
    "ChannelNameChange": "{actor} changed the channel name.",
    "ChannelIconChange": "{actor} changed the channel icon.",
    "ChannelPinnedMessage": "{actor} pinned a message.",
    "GuildMemberJoin": "{actor} joined the server.",
    "ThreadCreated": "{actor} started a thread.",
}


@sniffer
def sniff(source: Source) -> bool:
    """A JSON object that opens with "guild" and has a "channel" object."""
    return bool(_export_members(source))


def parse(source: Source, options: ImportOptions) -> list[ParsedChat]:
    """One ParsedChat per DiscordChatExporter JSON file in the source."""
    return [
        _parse_export(source.read_json(m), source.member_name(m), source.member_path(m).stem)
        for m in _export_members(source) or [None]
    ]


def _export_members(source: Source) -> list[str | None]:
    return source.matching(_looks_like_export, (".json",), limit=_MAX_MEMBERS_SNIFFED)


def _looks_like_export(head: bytes) -> bool:
    head = head.removeprefix(b"\xef\xbb\xbf")
    return bool(_HEAD.match(head) and _CHANNEL.search(head))


def _parse_export(data: Any, where: str, stem: str) -> ParsedChat:
    """One export file; raise for a structure DiscordChatExporter does not write."""
    if not isinstance(data, dict):
        raise ChatImportError(
            f"{where}: top level is not a JSON object; expected a DiscordChatExporter export with "
            '"guild", "channel" and "messages"'
        )
    channel = data.get("channel")
    if not isinstance(channel, dict):
        raise ChatImportError(
            f'{where}: "channel" is missing or not an object; expected the exported channel'
        )
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise ChatImportError(f'{where}: "messages" is missing or not a list; expected messages')
    guild: dict[str, Any] = data["guild"] if isinstance(data.get("guild"), dict) else {}
    chat = ParsedChat(format=NAME, title=_title(guild, channel, stem), messages=[])
    if channel.get("id") is not None:
        chat.source_key = f"{NAME}:{channel['id']}"
    for i, raw in enumerate(raw_messages):
        result = _message(raw, f"messages[{i}]")
        if isinstance(result, Skipped):
            chat.skipped.append(result)
        else:
            chat.messages.append(result)
    chat.messages.sort(key=lambda m: m.timestamp)
    return chat


def _title(guild: dict[str, Any], channel: dict[str, Any], stem: str) -> str:
    """Channel name for DMs, "guild / channel" for server channels."""
    name = channel.get("name") if isinstance(channel.get("name"), str) else ""
    guild_name = guild.get("name") if isinstance(guild.get("name"), str) else ""
    if channel.get("type") in _DIRECT_CHANNELS or not guild_name:
        return name or stem
    return f"{guild_name} / {name}" if name else guild_name


def _message(raw: Any, pos: str) -> ParsedMessage | Skipped:
    """One message object, or why it was skipped."""
    if not isinstance(raw, dict):
        return Skipped(pos, "not a JSON object")
    timestamp = _timestamp(raw.get("timestamp"))
    if timestamp is None:
        return Skipped(f"{pos}.timestamp", "missing or not an ISO 8601 date and time")
    author = raw.get("author")
    sender = _person(author)
    if sender is None:
        return Skipped(f"{pos}.author", 'missing, or without a "name"')
    meta = _meta(raw, bot=isinstance(author, dict) and author.get("isBot") is True)
    kind_name = str(raw.get("type") or "Default")
    content: str = raw["content"] if isinstance(raw.get("content"), str) else ""
    if kind_name == "Call":
        return ParsedMessage(timestamp, sender, content or "Started a call.", CALL, meta or None)
    if kind_name in _SYSTEM_TEXT or (kind_name not in _TEXT_TYPES and not content):
        text = _system_text(kind_name, sender, content, raw.get("mentions"))
        return ParsedMessage(timestamp, None, text, SYSTEM, meta or None)
    kind, text = _content(raw, content, meta)
    if not text:
        return Skipped(pos, "empty message (no content, attachments, embeds or stickers)")
    return ParsedMessage(timestamp, sender, text, kind, meta or None)


def _timestamp(value: Any) -> str | None:
    """The wall clock as written, without fraction or offset; None if it is not a date."""
    match = _TIMESTAMP.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    clock = match.group(2) if len(match.group(2)) == 8 else match.group(2) + ":00"
    text = f"{match.group(1)}T{clock}"
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return None
    return text


def _person(user: Any) -> str | None:
    """Display name: the server nickname when set, else the user name."""
    if not isinstance(user, dict):
        return None
    for key in ("nickname", "name"):
        if isinstance(user.get(key), str) and user[key]:
            return str(user[key])
    return None


def _meta(raw: dict[str, Any], bot: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if raw.get("id") is not None:
        meta["source_id"] = str(raw["id"])
    reference = raw.get("reference")
    if isinstance(reference, dict) and reference.get("messageId"):
        meta["reply_to"] = str(reference["messageId"])
    if raw.get("timestampEdited"):
        meta["edited"] = True
    if bot:
        meta["bot"] = True
    reactions = _reactions(raw.get("reactions"))
    if reactions:
        meta["reactions"] = reactions
    return meta


def _reactions(value: Any) -> list[dict[str, Any]]:
    """One entry per reacting user; unnamed ones (older exports list no users) get None."""
    out: list[dict[str, Any]] = []
    for reaction in _items(value):
        emoji = reaction.get("emoji") if isinstance(reaction, dict) else None
        name = emoji.get("name") if isinstance(emoji, dict) else None
        if not isinstance(name, str) or not name:
            continue
        users = [u for u in _items(reaction.get("users")) if _person(u)]
        out.extend({"sender": _person(u), "emoji": name} for u in users)
        count = reaction.get("count")
        unnamed = min(count - len(users), _MAX_UNNAMED_REACTIONS) if isinstance(count, int) else 0
        out.extend({"sender": None, "emoji": name} for _ in range(max(unnamed, 0)))
    return out


def _content(raw: dict[str, Any], content: str, meta: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) of a user message; fills meta["attachments"]."""
    forwarded = raw.get("forwardedMessage")
    if not content and isinstance(forwarded, dict):
        # Forwards carry their body in a snapshot; the outer message is empty.
        raw, content = forwarded, forwarded.get("content") or ""
    files = [
        a["fileName"]
        for a in _items(raw.get("attachments"))
        if isinstance(a, dict) and isinstance(a.get("fileName"), str)
    ]
    if files:
        meta["attachments"] = files
        return MEDIA, content or "<attachment>"
    if content:
        return TEXT, content
    stickers = [
        s["name"]
        for s in _items(raw.get("stickers"))
        if isinstance(s, dict) and _string(s.get("name"))
    ]
    if stickers:
        return STICKER, ", ".join(stickers)
    embeds = [e for e in _items(raw.get("embeds")) if isinstance(e, dict)]
    if embeds:
        return MEDIA, _embed_text(embeds[0]) or "<embed>"
    return TEXT, ""


def _embed_text(embed: dict[str, Any]) -> str:
    """Bots often speak only through embeds: their title and description are the message."""
    parts = [p for p in (embed.get("title"), embed.get("description")) if isinstance(p, str) and p]
    url = embed.get("url")
    return "\n".join(parts) if parts else url if isinstance(url, str) else ""


def _system_text(kind_name: Any, actor: str, content: str, mentions: Any) -> str:
    """A sentence naming who did what, e.g. "Alice added Bob to the group."."""
    if content:
        # DiscordChatExporter writes "Added Bob to the group."; prefix the actor.
        if content[:1].isascii() and content[:1].isupper() and content[1:2].islower():
            return f"{actor} {content[0].lower()}{content[1:]}"
        return f"{actor}: {content}"
    names = [n for n in (_person(m) for m in _items(mentions)) if n]
    if kind_name == "RecipientRemove" and names in ([], [actor]):
        return f"{actor} left the group."
    if kind_name not in _SYSTEM_TEXT:
        return f"{actor}: Discord event of type {kind_name}."
    return _SYSTEM_TEXT[kind_name].format(actor=actor, mentions=", ".join(names) or "someone")


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _items(value: Any) -> list[Any]:
    """A JSON field that should be a list; anything else reads as empty."""
    return value if isinstance(value, list) else []
