"""Contrast pairs: the same real chat context, two replies that differ only in the trait.

Contexts come from the persona's own dataset (`contexts`): each is the last few turns before
one of the person's real messages, ending with the person's tag, so a reply is read exactly
where the persona writes one. The latest sessions are held out (`split`): directions are
computed on the earlier ones, and the sign, separation and calibration are measured on the rest.

A pair's replies start with a space and end with a line break, as a turn does in the training
text (`[Sam] reply\\n`). Bad pair files raise `PairsError` naming the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from convsim.core.data.dataset import Example
from convsim.core.data.turns import parse, render, tag_of
from convsim.core.files import json_loads
from convsim.core.steering.axes import Axis

MIN_PAIRS = 100  # the least a direction is computed from
CONTEXT_TURNS = 4  # turns of real context before each reply
CONTEXT_CHARS = 360  # and at most this many characters of it


class PairsError(ValueError):
    """A pair file or pole that cannot be used; the message names the place."""


@dataclass(frozen=True)
class Context:
    """A real moment of the chat: `prompt` (turns, then the person's tag, no space) and the
    person's real reply to it (`reply`, " text\\n"), with the message's time."""

    prompt: str
    reply: str
    timestamp: str
    tag: str  # the person's tag that ends `prompt`: steering starts there

    @property
    def turns(self) -> str:
        """The context's turns, without the person's tag."""
        return self.prompt[: -len(self.tag)]


@dataclass(frozen=True)
class Pair:
    context: str  # prompt ending with the person's tag
    positive: str  # " reply\n"
    negative: str


def contexts(examples: Sequence[Example]) -> list[Context]:
    """The dataset's windows as steering contexts, oldest first: the last `CONTEXT_TURNS`
    turns (at most `CONTEXT_CHARS` characters, whole turns) before a real text reply."""
    out = []
    for ex in sorted(examples, key=lambda e: e.timestamp):
        turns = parse(ex.context)
        reply = ex.target[len(tag_of(ex.target)) :]
        if not turns or not reply.strip() or "<media>" in reply:
            continue
        kept = turns[-CONTEXT_TURNS:]
        while len(kept) > 1 and len(render(kept)) > CONTEXT_CHARS:
            kept = kept[1:]
        tag = tag_of(ex.target)
        reply = reply if reply.endswith("\n") else reply + "\n"
        out.append(Context(render(kept) + tag, reply, ex.timestamp, tag))
    return out


def split(found: Sequence[Context], held_out: int) -> tuple[list[Context], list[Context]]:
    """(earlier, latest `held_out`) contexts; at least a fifth of them is held out."""
    n = max(held_out, len(found) // 5) if len(found) > 1 else 0
    n = min(n, len(found) // 2)
    return list(found[: len(found) - n]), list(found[len(found) - n :])


def reply_text(text: str) -> str:
    """A reply as a pair holds it: one space, the words, a line break."""
    return " " + " ".join(text.split()) + "\n"


def contrast_pairs(found: Sequence[Context], axis: Axis, n: int = MIN_PAIRS) -> list[Pair]:
    """`n` pairs (at least `MIN_PAIRS`): the axis's replies in turn, each after the next real
    context, so every context and every reply pair is used about equally."""
    if not found:
        raise PairsError("no contexts: the persona's dataset has no text replies by the person")
    n = max(n, MIN_PAIRS)
    replies = axis.replies
    return [
        Pair(found[i % len(found)].prompt, reply_text(p), reply_text(q))
        for i, (p, q) in ((i, replies[i % len(replies)]) for i in range(n))
    ]


def pole_axis(name: str, positive: str, negative: str) -> Axis:
    """A user's axis from two short descriptions ("cheerful", "grumpy"): each reply is a real
    reply of the person opened by the pole as a stage direction (`*cheerful*`), the way chat
    role-play writes moods, so the pair differs only in the pole."""
    for label, text in (("positive", positive), ("negative", negative)):
        if not text.strip() or len(text) > 80 or "\n" in text:
            raise PairsError(f"the {label} pole must be a short description (1-80 characters)")
    return Axis(name, positive.strip(), negative.strip(), ())


def pole_pairs(found: Sequence[Context], axis: Axis, n: int = MIN_PAIRS) -> list[Pair]:
    """Pairs for a `pole_axis`: `*pole* ` + the person's real reply in that context."""
    if not found:
        raise PairsError("no contexts: the persona's dataset has no text replies by the person")
    out = []
    for i in range(max(n, MIN_PAIRS)):
        c = found[i % len(found)]
        real = c.reply.strip()
        out.append(
            Pair(
                c.prompt,
                reply_text(f"*{axis.positive}* {real}"),
                reply_text(f"*{axis.negative}* {real}"),
            )
        )
    return out


def file_axis(name: str, path: Path) -> Axis:
    """A user's axis from a JSON Lines file: one object per line with "positive" and
    "negative" replies (the same message said both ways), placed after real contexts in
    turn like a built-in axis's. PairsError names the line of anything else."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PairsError(f"{path}: cannot read the pairs file ({e})") from None
    replies = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json_loads(line)
        except json.JSONDecodeError as e:
            raise PairsError(f"{path}, line {number}: not JSON ({e.msg})") from None
        if not isinstance(item, dict):
            raise PairsError(f"{path}, line {number}: expected an object with positive/negative")
        for key in ("positive", "negative"):
            value = item.get(key)
            if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
                raise PairsError(f"{path}, line {number}: {key!r} must be a one-line text")
        if item["positive"].strip() == item["negative"].strip():
            raise PairsError(f"{path}, line {number}: the two sides are the same text; a pair "
                             "says one thing two ways")  # fmt: skip
        replies.append((item["positive"], item["negative"]))
    if not replies:
        raise PairsError(f"{path}: no pairs (one JSON object per line with positive/negative)")
    return Axis(name, "positive", "negative", tuple(replies))
