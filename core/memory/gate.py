"""The gate between an extractor's answer and the fact store: what is worth keeping and true.

An extractor (a small local model, or any endpoint) proposes `Candidate`s; `Gate.check` keeps
those that pass, in this order, and names the reason of each rejection:
- "unknown person": the person is not someone in the chat;
- "unknown key": the key is not in `KEYS` (the schema's vocabulary; a free key would let
  any invented word supersede a held fact);
- "unimportant": importance below `min_importance`;
- "unsupported" (the reality check): most of the value's content words must appear in the
  source messages it cites (lowercased, matched by stem or shared prefix), and those messages
  must concern the person: written by them, naming them, or saying "you" to them. A value of
  bare numbers passes only as an age ("see u at 11" is no birthday). Cited ids outside the
  window are dropped; when the cited messages do not support the value, the window's one
  message that supports it best is cited instead, if it does.
Dedupe and contradiction are not the gate's: `Facts.add` applies them against held facts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from convsim.core.memory.search import STOPWORDS

# What a fact can be about: the schema's enum, so every answer uses the same words.
KEYS = (
    "job", "workplace", "lives in", "hometown", "partner", "sibling", "parent", "child",
    "pet", "birthday", "age", "school", "studies", "likes", "dislikes", "hobby", "diet",
    "allergy", "car", "plan", "trip", "health", "friend", "other",
)  # fmt: skip
REASONS = ("unknown person", "unknown key", "unimportant", "unsupported")
SUPPORT = 0.6  # share of the value's content words that the sources must contain
_WORD = re.compile(r"\w+")
_YOU = frozenset(["you", "your", "yours", "yourself", "u", "ur", "ya"])
_SUFFIXES = ("'s", "ing", "ies", "es", "ed", "ly", "s")


@dataclass(frozen=True)
class Candidate:
    """A fact as an extractor proposes it: `sources` are store message ids (window-local
    numbers for a live exchange), `importance` 1 (trivia) to 5 (defining)."""

    person: str
    key: str
    value: str
    sources: tuple[int, ...]
    importance: int


def stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """Stems of the words that carry meaning: not stop words, two letters or more (or a
    number: ages and dates are facts)."""
    words = _WORD.findall(text.lower())
    return {stem(w) for w in words if w not in STOPWORDS and (len(w) > 1 or w.isdigit())}


def _matches(word: str, words: set[str]) -> bool:
    if word in words:
        return True
    for other in words:
        short, long = sorted((word, other), key=len)
        common = len(short) if long.startswith(short) else 0
        if (len(short) >= 3 and common == len(short)) or _shared_prefix(word, other) >= 5:
            return True
    return False


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def support(value: str, texts: Iterable[str]) -> float:
    """The share (0 to 1) of the value's content words found in `texts`; 0 when the value
    has none."""
    wanted = content_words(value)
    if not wanted:
        return 0.0
    have = set().union(*(content_words(t) for t in texts))
    return sum(_matches(w, have) for w in wanted) / len(wanted)


def concerns(person: str, sender: str | None, text: str) -> bool:
    """Whether a message can say something about `person`: they wrote it, it names them (any
    part of their name) or it speaks to someone else as "you"."""
    if sender == person:
        return True
    words = set(_WORD.findall(text.lower()))
    return bool(words & set(_WORD.findall(person.lower()))) or (
        sender is not None and bool(words & _YOU)
    )


@dataclass
class Gate:
    """`min_importance`: candidates below it are dropped (1 keeps everything);
    `min_support`: the reality check's threshold (see `support`)."""

    min_importance: int = 2
    min_support: float = SUPPORT

    def check(
        self,
        candidate: Candidate,
        window: dict[int, tuple[str | None, str]],
        people: Sequence[str],
    ) -> tuple[Candidate | None, str]:
        """(the candidate, cited as it will be stored, and "") or (None, the reason).
        `window`: message id -> (sender, text) of the messages the extractor saw."""
        if candidate.person not in people:
            return None, "unknown person"
        if candidate.key not in KEYS:
            return None, "unknown key"
        if candidate.importance < self.min_importance:
            return None, "unimportant"
        words = content_words(candidate.value)
        if candidate.key != "age" and all(w.isdigit() for w in words):
            return None, "unsupported"
        about = {
            i: text
            for i, (sender, text) in window.items()
            if concerns(candidate.person, sender, text)
        }
        cited = tuple(sorted({i for i in candidate.sources if i in about}))
        if cited and support(candidate.value, (about[i] for i in cited)) >= self.min_support:
            return replace(candidate, sources=cited), ""
        scores = {i: support(candidate.value, [text]) for i, text in about.items()}
        best = max(scores, key=lambda i: (scores[i], -i), default=None)
        if best is not None and scores[best] >= self.min_support:
            return replace(candidate, sources=(best,)), ""
        return None, "unsupported"
