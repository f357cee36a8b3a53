"""Domain objects shared by importers, the store and the dataset builder.

Contract: importers produce `ParsedChat`s made of `ParsedMessage`s (or, for an export too
large to hold, a `ChatStream` of batches of them); the store turns them into
rows and hands back `StoredMessage`s. Timestamps are ISO 8601 strings without a timezone, in the
wall-clock time the export shows (formats that only carry epoch times are rendered in UTC).
Message bodies are never Unicode-normalised: that would break ZWJ emoji sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# Message kinds. `system` messages have no sender.
TEXT = "text"
MEDIA = "media"
STICKER = "sticker"
DELETED = "deleted"
CALL = "call"
SYSTEM = "system"
KINDS = (TEXT, MEDIA, STICKER, DELETED, CALL, SYSTEM)


@dataclass(slots=True)
class ParsedMessage:
    """One message as read from an export, before it is stored.

    `meta` holds optional, format-specific facts with these well-known keys:
    `edited` (bool), `reply_to` (source id of the replied message), `source_id` (the export's own
    id), `forwarded_from` (str), `reactions` (list of {"sender", "emoji"}), `bot` (bool),
    `attachments` (list of file names), `position` (where in the source it was found).
    """

    timestamp: str
    sender: str | None
    text: str
    kind: str = TEXT
    meta: dict[str, Any] | None = None


@dataclass(slots=True)
class Skipped:
    """A line or record the importer could not use. `position` is human-readable: 'line 12',
    'messages[3]', 'record 40'."""

    position: str
    reason: str


@dataclass
class ParsedChat:
    """Everything one export yields. `source_key` identifies the chat across exports when the
    format carries a stable id (Telegram chat id, Discord channel id, iMessage chat guid...);
    None means the store matches re-imports by content overlap instead."""

    format: str
    title: str
    messages: list[ParsedMessage]
    skipped: list[Skipped] = field(default_factory=list)
    source_key: str | None = None
    # Participant names the export lists even if they never wrote (kept in this order).
    participants: list[str] = field(default_factory=list)
    # Which sender name is the exporting user, when the format says (iMessage is_from_me, SMS).
    me: str | None = None
    # Guesses the importer had to make, for the user to check (e.g. the day/month order).
    warnings: list[str] = field(default_factory=list)


@dataclass
class ChatStream:
    """A chat too large to hold whole: `chat` says what it is (its `messages` stay empty;
    `skipped` and `warnings` fill up as batches are read), and each call of `batches()` reads
    the export again, yielding its messages in file order, a bounded batch at a time.
    `done` is the share of the export the current pass has read (0 to 1), for progress."""

    chat: ParsedChat
    batches: Callable[[], Iterator[list[ParsedMessage]]]
    done: float = 0.0


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    timestamp: str
    sender: str | None
    text: str
    kind: str


class ChatImportError(Exception):
    """Raised for input that is not a usable chat export. The message is one sentence naming the
    file and the position (line, record or byte) and what was expected."""
