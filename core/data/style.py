"""How a person writes, as numbers: per-message style features and a profile that scores text.

Contract: pure functions over message texts. `features(text)` measures one message (see
`FEATURES`); `written(text)` is what the person wrote in a rendered message, without convsim's
placeholder for a photo, sticker, call or deleted message (`data.dataset`), and style is
measured on that: a message that is only a placeholder has no style and is left out;
`turn_sizes(senders, person)` counts the person's messages per turn (a run of their consecutive
messages). `Profile.of(texts)` learns the person's distribution of bucketed features from their
real messages and `Profile.log_prob(text)` scores how typical a new message is for them (a sum
of smoothed log-frequencies, one per feature); `scaled` and `plus` make and grow a running
profile (best-of-N keeps one of the persona's own replies, to weigh against the person's).
The evaluation suite compares features of generated and real messages with a two-sample KS
statistic.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FEATURES", "Profile", "features", "turn_sizes", "written"]

FEATURES = ("length", "emoji", "lowercase", "punctuation", "laughter", "question")
"""Per message: `length` in words; `emoji`, emoji per message; `lowercase`, 1 when the message
has letters and none is upper case; `punctuation`, marks per 10 characters; `laughter`, 1 when it
laughs (haha, lol, lmao, 😂...); `question`, 1 when it asks (a "?"). Messages per turn is counted
over turns (`turn_sizes`), not messages."""

# Emoji and pictographs, dingbats, flags (regional indicators), and the variation selector.
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\U0001f1e6-\U0001f1ff\u2300-\u23ff]"
)
_LAUGH = re.compile(
    r"\b(?:a?(?:ha){2,}h?|(?:he){2,}|(?:hi){2,}|l+o+l+\w*|lmf?ao+|rofl|xd+|jaja\w*|kkk+)\b|[😂🤣😆😹]",
    re.IGNORECASE,
)
_PUNCT = re.compile(r"[.,;:!?…'\"()\-]")
# How `data.dataset` renders what is not text: "<media>" (then the caption, if any),
# "<sticker X>", "<call>", "<deleted>".
_PLACEHOLDER = re.compile(r"<(?:media|sticker(?: [^<>\n]*)?|call|deleted)>\s*")

# Bucket edges per feature for the profile (upper bounds, inclusive); the last bucket is open.
_BUCKETS: dict[str, tuple[float, ...]] = {
    "length": (1, 2, 4, 8, 16, 32),
    "emoji": (0, 1, 2),
    "lowercase": (0,),
    "punctuation": (0, 0.5, 1, 2),
    "laughter": (0,),
    "question": (0,),
}


def features(text: str) -> dict[str, float]:
    """The style features of one message (see `FEATURES`)."""
    letters = [c for c in text if c.isalpha()]
    chars = max(len(text), 1)
    return {
        "length": float(len(text.split())),
        "emoji": float(len(_EMOJI.findall(text))),
        "lowercase": float(bool(letters) and not any(c.isupper() for c in letters)),
        "punctuation": 10.0 * len(_PUNCT.findall(text)) / chars,
        "laughter": float(bool(_LAUGH.search(text))),
        "question": float("?" in text),
    }


def written(text: str) -> str:
    """What the person wrote in a rendered message: `text` without a leading placeholder (a
    photo's caption stays); "" when the message is only a placeholder ("<media>": lower case,
    one word, but nothing the person wrote)."""
    text = text.strip()
    match = _PLACEHOLDER.match(text)
    return text[match.end() :] if match else text


def turn_sizes(senders: Iterable[str], person: str) -> list[int]:
    """Lengths of the runs of `person`'s consecutive messages in a sequence of senders."""
    sizes: list[int] = []
    run = 0
    for sender in senders:
        if sender == person:
            run += 1
        elif run:
            sizes.append(run)
            run = 0
    if run:
        sizes.append(run)
    return sizes


def _bucket(name: str, value: float) -> int:
    edges = _BUCKETS[name]
    return next((i for i, edge in enumerate(edges) if value <= edge), len(edges))


@dataclass(frozen=True)
class Profile:
    """A person's distribution of bucketed style features, learnt from their real messages."""

    counts: dict[str, dict[int, float]]
    total: float

    @classmethod
    def of(cls, texts: Sequence[str]) -> Profile:
        counts: dict[str, Counter[int]] = {name: Counter() for name in _BUCKETS}
        said = [w for w in map(written, texts) if w]
        for text in said:
            for name, value in features(text).items():
                counts[name][_bucket(name, value)] += 1
        return cls({k: dict(v) for k, v in counts.items()}, len(said))

    def scaled(self, weight: float) -> Profile:
        """The same distribution as if learnt from `weight` messages (a prior to add to)."""
        k = weight / self.total if self.total else 0.0
        counts = {name: {b: c * k for b, c in seen.items()} for name, seen in self.counts.items()}
        return Profile(counts, self.total * k)

    def plus(self, texts: Sequence[str]) -> Profile:
        """This profile with `texts` counted too."""
        more = Profile.of(texts)
        counts = {name: dict(seen) for name, seen in self.counts.items()}
        for name, seen in more.counts.items():
            mine = counts.setdefault(name, {})
            for b, c in seen.items():
                mine[b] = mine.get(b, 0) + c
        return Profile(counts, self.total + more.total)

    def to_json(self) -> dict[str, Any]:
        """The profile as JSON-able data (`from_json` reads it back)."""
        counts = {name: {str(b): c for b, c in seen.items()} for name, seen in self.counts.items()}
        return {"total": self.total, "counts": counts}

    @classmethod
    def from_json(cls, data: Any) -> Profile:
        """A profile from `to_json`'s data; ValueError for anything else."""
        try:
            counts = {
                str(name): {int(b): float(c) for b, c in seen.items()}
                for name, seen in data["counts"].items()
            }
            return cls(counts, float(data["total"]))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a style profile ({type(e).__name__}: {e})") from None

    def log_prob(self, text: str) -> float:
        """How typical `text` is of the person: the sum over features of the log of its
        bucket's frequency among their messages (add-one smoothed). Higher is more typical."""
        total = 0.0
        for name, value in features(written(text)).items():
            seen = self.counts.get(name, {})
            buckets = len(_BUCKETS[name]) + 1
            total += math.log((seen.get(_bucket(name, value), 0) + 1) / (self.total + buckets))
        return total
