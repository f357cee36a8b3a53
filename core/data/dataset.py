"""Training-dataset builder: stored messages in, variable-length training windows out.

Contract: `build(messages, config)` is pure and deterministic. The messages are one chat in
chronological order; the result holds one `Example` per turn written by `config.target`, whose
context is the 1..N messages before that turn in the same session (empty only when the turn opens
its session), and whose `next_tag` says who wrote the turn after it (so training also learns
when the person goes on with another message and when they hand over). It knows nothing of the
store, tokenizers or training.

Turn format (`turns`): every message is one turn `[Tag] body\\n`, escape included. Consecutive
messages by one sender stay separate turns under their own tag.

Sessions: a silence of `session_gap_minutes` or more between two messages (of any kind, dropped
ones included, since a photo exchange is not silence) starts a new session. Sessions left empty
after dropping media/system messages are skipped, and the rest are numbered 0, 1, 2... in order.
Context never crosses a session boundary.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from convsim.core.chats.messages import CALL, DELETED, MEDIA, STICKER, SYSTEM, TEXT, StoredMessage
from convsim.core.config import Config
from convsim.core.data.scrub import scrub
from convsim.core.data.turns import check_name, render_turn, safe_name, tag_of

__all__ = [
    "SYSTEM_TAG",
    "Dataset",
    "DatasetConfig",
    "Example",
    "build",
    "render_sessions",
]

# Tag of system lines (and of sender-less messages) when `system="placeholder"`.
SYSTEM_TAG = "system"
# Rough characters per token for Gemma-style SentencePiece vocabularies on chat text.
CHARS_PER_TOKEN = 3.5

_MEDIA_MODES = ("placeholder", "drop")
_SYSTEM_MODES = ("drop", "placeholder")
_SENDER_KINDS = (TEXT, MEDIA, STICKER, CALL, DELETED)


@dataclass
class DatasetConfig(Config):
    """How a chat becomes training windows; saved as JSON beside the dataset it produced.

    `from_json` (reading a saved config) ignores keys a newer convsim wrote; `with_overrides`
    (a user's changes) refuses unknown keys (see `convsim.core.config`)."""

    setting_kind: ClassVar[str] = "dataset"

    target: str
    """Sender name (as stored) whose turns the model learns to write."""
    tags: dict[str, str] = field(default_factory=dict)
    """Sender name -> tag shown as `[Tag]`; senders not listed use their name, with `[`/`]`
    turned into `(`/`)` and line breaks into spaces."""
    session_gap_minutes: float = 240
    """A silence at least this long between two messages starts a new session."""
    max_context: int = 16
    """N: the most preceding messages an example's context holds (at least 1)."""
    media: str = "placeholder"
    """"placeholder" renders media as `<media>` (plus its caption), stickers as `<sticker X>`
    (X the sticker's emoji/text, when there is one), calls as `<call>`, deleted messages as
    `<deleted>`; "drop" removes those messages altogether, captions included."""
    system: str = "drop"
    """"drop" removes system messages (and sender-less ones); "placeholder" keeps them as
    `[system] text` turns (`[system] <system>` when they have no text)."""
    scrub: bool = False
    """Replace phone numbers, e-mails, URLs and card numbers in bodies (see `scrub`)."""
    validation_fraction: float = 0.1
    """Share of examples to hold out, taken as whole sessions from the latest backwards; 0 turns
    validation off. With two or more sessions validation gets at least one and train keeps one."""
    seed: int = 0
    """Picks every example's context length; the same seed gives the same dataset."""

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("the dataset target must be a sender name, got an empty string")
        if self.media not in _MEDIA_MODES:
            raise ValueError(f"media must be one of {_MEDIA_MODES}, got {self.media!r}")
        if self.system not in _SYSTEM_MODES:
            raise ValueError(f"system must be one of {_SYSTEM_MODES}, got {self.system!r}")
        if not self.session_gap_minutes > 0:
            raise ValueError(f"session_gap_minutes must be > 0, got {self.session_gap_minutes}")
        if self.max_context < 1:
            raise ValueError(f"max_context must be at least 1, got {self.max_context}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        for name, tag in self.tags.items():
            check_name(tag, f"tag for {name!r}")

    def tag_for(self, sender: str) -> str:
        """The tag `sender`'s turns are rendered under."""
        return self.tags.get(sender) or safe_name(sender)

    def clashes(self, senders: Sequence[str]) -> list[str]:
        """Those of `senders`, the target aside, whose turns would carry the target's tag."""
        mine = self.tag_for(self.target)
        return [s for s in senders if s != self.target and self.tag_for(s) == mine]


@dataclass(frozen=True)
class Example:
    """One training window: the model reads `context` and learns to write `target`."""

    context: str
    """The turns before the target turn, each `[Tag] text\\n`; "" when the target opens its
    session."""
    target: str
    """The target person's turn, `[Target] text\\n`."""
    session: int
    """Index of the session the window comes from (see `render_sessions`)."""
    timestamp: str
    """Timestamp of the target message."""
    context_ids: tuple[int, ...] = ()
    """Store ids of the messages rendered in `context`, oldest first (dropped media/system
    messages are not rendered, so not listed). Empty for datasets written before ids were kept
    (format 1); tell those apart by `target_id`."""
    target_id: int | None = None
    """Store id of the target message; None for datasets written before ids were kept."""
    next_tag: str = ""
    """The `[Tag]` of the turn after the target in its session: the person's own when they
    send another message, someone else's when they hand over. "" when the target ends its
    session, and for datasets written before it was kept (format 2 and earlier)."""


@dataclass
class Dataset:
    """The examples of one build, split by time, and the config that made them."""

    config: DatasetConfig
    train: list[Example]
    validation: list[Example]
    messages_used: int = 0
    """Input messages that were rendered into some session (not dropped)."""
    sessions: int = 0
    """Sessions the chat was cut into (those left empty after dropping not counted)."""

    def stats(self) -> dict[str, int]:
        """Counts for the UI. Token figures are estimates: characters / 3.5 (`CHARS_PER_TOKEN`),
        rounded, over each example's context + target (train/validation) or target alone (the
        tokens that carry the loss); a window's context is counted once per example using it.
        `train_token_folded` counts what training computes: an example whose text begins a
        longer one's is counted inside it (`packing.fold`)."""
        everything = self.train + self.validation
        return {
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "train_sessions": len({e.session for e in self.train}),
            "validation_sessions": len({e.session for e in self.validation}),
            "sessions": self.sessions,
            "messages_used": self.messages_used,
            "target_turns": len(everything),
            "train_token_estimate": _tokens(e.context + e.target for e in self.train),
            "train_token_folded": _tokens(_unfolded(e.context + e.target for e in self.train)),
            "validation_token_estimate": _tokens(e.context + e.target for e in self.validation),
            "target_token_estimate": _tokens(e.target for e in everything),
        }


@dataclass(frozen=True, slots=True)
class _Turn:
    message: StoredMessage
    text: str  # rendered line(s), ending in "\n"
    is_target: bool


def build(messages: Sequence[StoredMessage], config: DatasetConfig) -> Dataset:
    """One example per target turn, split by time into train and validation (whole sessions).

    Raises ValueError when `config.target` never sent a message in `messages`, or when another
    sender (or system lines) would be rendered under the target's tag."""
    _check_senders(messages, config)
    sessions = _sessions(messages, config)
    per_session = [_windows(index, turns, config) for index, turns in enumerate(sessions)]
    with_examples = [examples for examples in per_session if examples]
    held_out = _validation_count([len(e) for e in with_examples], config.validation_fraction)
    cut = len(with_examples) - held_out
    return Dataset(
        config=config,
        train=[e for examples in with_examples[:cut] for e in examples],
        validation=[e for examples in with_examples[cut:] for e in examples],
        messages_used=sum(len(turns) for turns in sessions),
        sessions=len(sessions),
    )


def render_sessions(messages: Sequence[StoredMessage], config: DatasetConfig) -> list[str]:
    """Each session rendered in full, indexed like `Example.session`: every example's
    `context + target` is a contiguous run of whole turns of its session's text."""
    return ["".join(turn.text for turn in turns) for turns in _sessions(messages, config)]


def _check_senders(messages: Sequence[StoredMessage], config: DatasetConfig) -> None:
    senders = list(dict.fromkeys(m.sender for m in messages if m.sender is not None))
    if config.target not in senders:
        present = ", ".join(repr(s) for s in senders) or "none"
        raise ValueError(f"target {config.target!r} sent no message here; senders: {present}")
    target_tag = config.tag_for(config.target)
    clashes = config.clashes(senders)
    if config.system == "placeholder" and target_tag == SYSTEM_TAG:
        clashes.append("system messages")
    if clashes:
        raise ValueError(
            f"target tag {target_tag!r} is also used by {', '.join(map(str, clashes))}; "
            "give them different tags"
        )


def _sessions(messages: Sequence[StoredMessage], config: DatasetConfig) -> list[list[_Turn]]:
    gap_seconds = config.session_gap_minutes * 60
    sessions: list[list[_Turn]] = []
    current: list[_Turn] = []
    previous: datetime | None = None
    for message in messages:
        moment = _parse_time(message)
        if previous is not None and (moment - previous).total_seconds() >= gap_seconds:
            if current:
                sessions.append(current)
            current = []
        previous = moment
        turn = _render(message, config)
        if turn is not None:
            current.append(turn)
    if current:
        sessions.append(current)
    return sessions


def _parse_time(message: StoredMessage) -> datetime:
    try:
        return datetime.fromisoformat(message.timestamp)
    except (TypeError, ValueError):
        raise ValueError(
            f"message {message.id} has timestamp {message.timestamp!r}; "
            "expected ISO 8601 like 2020-01-17T19:30:00"
        ) from None


def _render(message: StoredMessage, config: DatasetConfig) -> _Turn | None:
    """The message as a turn, or None when the config drops it or it has nothing to show."""
    text = message.text.strip()
    if config.scrub:
        text = scrub(text)
    if message.kind == SYSTEM or message.sender is None:
        if config.system == "drop":
            return None
        return _Turn(message, render_turn(SYSTEM_TAG, text or "<system>"), False)
    if message.kind not in _SENDER_KINDS:
        raise ValueError(f"message {message.id} has unknown kind {message.kind!r}")
    body = _body(message.kind, text, config.media)
    if body is None:
        return None
    is_target = message.sender == config.target
    return _Turn(message, render_turn(config.tag_for(message.sender), body), is_target)


# The first line of a media message's text when it is the app's placeholder, not something
# the person wrote: "<Media omitted>", "<photo>", "image omitted", "IMG-1.jpg (file attached)".
_PLACEHOLDER_LINE = re.compile(
    r"\W*(<[^<>]*>|.*\b(omitted|omitido|omis|ausgeschlossen)\b.*"
    r"|.*\((file attached|datei angehängt|archivo adjunto|fichier joint|file allegato"
    r"|arquivo anexado)\))\W*",
    re.IGNORECASE,
)


def media_caption(text: str) -> str:
    """What the person wrote with a photo or file: the text without the app's placeholder."""
    first, _, rest = text.partition("\n")
    if _PLACEHOLDER_LINE.fullmatch(first):
        return rest.strip()
    return text.strip()


def _body(kind: str, text: str, media: str) -> str | None:
    if kind == TEXT:
        return text or None
    if media == "drop":
        return None
    if kind == MEDIA:
        caption = media_caption(text)
        return f"<media> {caption}" if caption else "<media>"
    if kind == STICKER:
        return f"<sticker {text}>" if text else "<sticker>"
    return f"<{kind}>"


def _windows(session: int, turns: list[_Turn], config: DatasetConfig) -> list[Example]:
    examples = []
    for position, turn in enumerate(turns):
        if not turn.is_target:
            continue
        length = _context_length(turn.message.id, min(config.max_context, position), config.seed)
        window = turns[position - length : position]
        after = turns[position + 1].text if position + 1 < len(turns) else ""
        examples.append(
            Example(
                context="".join(t.text for t in window),
                target=turn.text,
                session=session,
                timestamp=turn.message.timestamp,
                context_ids=tuple(t.message.id for t in window),
                target_id=turn.message.id,
                next_tag=tag_of(after) if after else "",
            )
        )
    return examples


def _context_length(message_id: int, available: int, seed: int) -> int:
    """Uniform in 1..available (0 when nothing precedes), from a hash of (seed, message id).

    A mid-session turn never gets an empty context, which would teach the model that a reply is
    a conversation opener. Hashing the id rather than drawing from one RNG stream keeps each
    window unchanged when messages are added to the chat later."""
    if available == 0:
        return 0
    digest = hashlib.blake2b(f"{seed}:{message_id}".encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "big") % available


def _validation_count(example_counts: list[int], fraction: float) -> int:
    """How many of the latest sessions (given their example counts) go to validation: sessions
    are added from the end while validation stays within `fraction` of all examples, but at
    least one is taken, and one is always left for training."""
    if len(example_counts) < 2 or fraction == 0:
        return 0
    budget = fraction * sum(example_counts)
    taken, held = 0, 0
    for count in reversed(example_counts[1:]):
        if taken and held + count > budget:
            break
        taken, held = taken + 1, held + count
    return taken


def _tokens(texts: Iterable[str]) -> int:
    return round(sum(len(text) for text in texts) / CHARS_PER_TOKEN)


def _unfolded(texts: Iterable[str]) -> list[str]:
    """The texts left when each one that begins a strictly longer one is dropped (in sorted
    order the longer ones starting with it come right after it). A repeated text stays."""
    ordered = sorted(texts)
    return [
        text
        for text, after in zip(ordered, [*ordered[1:], ""], strict=True)
        if not (len(after) > len(text) and after.startswith(text))
    ]
