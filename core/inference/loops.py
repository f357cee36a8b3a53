"""Forever-chat: a conversation the model holds with itself, with its loops detected and broken.

Small models fall into loops: the same message again ("haha yes" ×20) or long runs of the same
phrases. A message is a *loop* when, against the last `window` messages,
- its normalised text (lower case, punctuation and repeated spaces removed) is the same or
  nearly the same (difflib ratio >= `similar`) as one of them, or
- at least `ngram_ratio` of its word trigrams already appeared in them (messages of 3+ words), or
- it is short (fewer than 3 words, so it has no word trigram) and, with runs of a repeated
  character squeezed to one ("noooo" -> "no", "lolll" -> "lol"), it is the same as one of them or
  their character trigram sets overlap by at least `char_ratio` (Jaccard): "hahahah" and
  "ahhahahaha" both have the trigrams {"hah", "aha"}. Sets, not counts, so laughter of any length
  matches, while different short replies ("ok" / "sure", "yes" / "no idea", "no" / "nope") don't.

A forever conversation also refuses a message that *repeats* one of the last `REPEAT_WINDOW`
messages (the same normalised text): a persona can cycle through a handful of sentences with a
period longer than the loop window (measured: half of a 100-turn conversation were such repeats,
where the real chat has 0-1%).

`forever` picks speakers in the given order (round robin) rather than letting the model choose
the next tag: a base model left to choose often hands the turn to the same speaker forever,
and a fixed order is what a user watching two personas talk expects. When a reply is a loop,
a repeat (or empty), it is re-sampled hotter (`engine.hotter`: higher temperature and presence
penalty, another seed), at most `retries` times. If every try loops, the talk has run dry (a
persona trained longer on a small chat said "Good night, too." 80 times in 100 turns, both
sides, however hot it sampled: the words on screen outweigh the temperature). Then the speaker
starts a new session, as the chat's own sessions start: prompted without the earlier messages,
which stay out of the prompt from then on (they still count as what was said), sampled at
0.7 or hotter (greedy decoding would open every new session with the same words). That message
is kept whatever it is.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from convsim.core.data.turns import Turn
    from convsim.core.inference.engine import Engine, Sampling

WINDOW = 6  # messages looked back at
REPEAT_WINDOW = 50  # messages looked back at for the same text again
SIMILAR = 0.9  # difflib ratio of normalised texts counted as "the same message"
NGRAM_RATIO = 0.6  # share of a message's trigrams already seen counted as repetition
CHAR_RATIO = 0.6  # character-trigram Jaccard of two short messages counted as "the same"

_PUNCT = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")
_RUN = re.compile(r"(.)\1+")  # a character repeated: elongation ("sooo", "lolll")


def normalise(text: str) -> str:
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def _trigrams(words: Sequence[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def squeeze(text: str) -> str:
    """`text` with every run of one repeated character cut to one character ("nooo" -> "no")."""
    return _RUN.sub(r"\1", text)


def _char_trigrams(text: str) -> set[str]:
    return {text[i : i + 3] for i in range(len(text) - 2)}


def _same_short(old: str, text: str, char_ratio: float) -> bool:
    """Whether the normalised short message `text` nearly repeats the normalised `old`: the
    same once elongations are squeezed, or character trigram Jaccard >= `char_ratio`."""
    a, b = squeeze(old), squeeze(text)
    if a == b:
        return True
    grams_a, grams_b = _char_trigrams(a), _char_trigrams(b)
    if not grams_a or not grams_b:
        return False
    return len(grams_a & grams_b) / len(grams_a | grams_b) >= char_ratio


def is_loop(
    history: Sequence[str],
    message: str,
    window: int = WINDOW,
    similar: float = SIMILAR,
    ngram_ratio: float = NGRAM_RATIO,
    char_ratio: float = CHAR_RATIO,
) -> bool:
    """Whether `message` repeats the last `window` messages of `history` (see module doc)."""
    text = normalise(message)
    recent = [normalise(m) for m in history[-window:]] if window > 0 else []
    for old in recent:
        if old == text or difflib.SequenceMatcher(None, old, text).ratio() >= similar:
            return True
    grams = _trigrams(text.split())
    if not recent:
        return False
    if not grams:
        # Too short for word trigrams: compare characters, which is cheap at this length.
        return any(_same_short(old, text, char_ratio) for old in recent)
    seen: set[tuple[str, ...]] = set()
    for old in recent:
        seen |= _trigrams(old.split())
    return len(grams & seen) / len(grams) >= ngram_ratio


def repeats(history: Sequence[str], message: str, window: int = REPEAT_WINDOW) -> bool:
    """Whether `message`'s normalised text is that of one of the last `window` of `history`.
    A message without a word ("😂", "!!") never repeats: every such message normalises to ""."""
    text = normalise(message)
    return bool(text) and window > 0 and any(normalise(old) == text for old in history[-window:])


def loop_rate(messages: Sequence[str], window: int = WINDOW) -> float:
    """Share of messages (after the first) that are loops of the messages before them."""
    if len(messages) < 2:
        return 0.0
    loops = sum(is_loop(messages[:i], messages[i], window) for i in range(1, len(messages)))
    return loops / (len(messages) - 1)


def forever(
    engine: Engine,
    transcript: Sequence[Turn],
    speakers: Sequence[str],
    sampling: Sampling | None = None,
    turns: int | None = None,
    cancel: threading.Event | None = None,
    *,
    break_loops: bool = True,
    retries: int = 3,
    window: int = WINDOW,
) -> Iterator[Turn]:
    """Yield (speaker, text) turns after `transcript`, `speakers` in order, the first one
    first; `turns` of them, or until `cancel` is set (or forever when `turns` is None)."""
    from convsim.core.inference.engine import Sampling, hotter

    if not speakers:
        raise ValueError("forever needs at least one speaker")
    s = sampling or Sampling()
    history = list(transcript)
    session = 0  # where the messages the prompt shows begin
    n = 0

    def stuck(text: str, said: list[str]) -> bool:
        return break_loops and (not text or is_loop(said, text, window) or repeats(said, text))

    while turns is None or n < turns:
        speaker = speakers[n % len(speakers)]
        said = [text for _, text in history]
        shown = history[session:]
        text = engine.simulate(shown, speaker, s, cancel).result().text
        attempt = 0
        while attempt < retries and stuck(text, said):
            if cancel is not None and cancel.is_set():
                break
            attempt += 1
            text = engine.simulate(shown, speaker, hotter(s, attempt), cancel).result().text
        if stuck(text, said) and shown and not (cancel and cancel.is_set()):
            session = len(history)  # run dry: a new session, the way the chat's sessions start
            seed = None if s.seed is None else s.seed + 104_729 * (n + 1)
            opener = replace(s, temperature=max(s.temperature, 0.7), seed=seed)  # not greedy
            text = engine.simulate([], speaker, opener, cancel).result().text
        if cancel is not None and cancel.is_set():
            return
        history.append((speaker, text))
        n += 1
        yield speaker, text
