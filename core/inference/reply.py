"""A reply as it streams, and what it was once done.

`Stream` is what every engine surface returns: iterate it for the text as it becomes safe to
show ("\\n" starts the reply's next message), or call `result()` to wait for the `Reply`.
`close()` stops it early; `result()` then describes what was generated up to that point.

Shaping rules (the engine's contract, kept here in one place):
- control characters never reach the caller (they would break the transcript or the terminal);
- trailing whitespace is held back until the text after it is known;
- a reply cut by the length cap ends at its last whole word: over the last `WORD_WINDOW` tokens
  before the cap the word in progress is held back, so a word longer than that window may show
  in part while streaming, but the Reply never ends in a cut word.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from convsim.core.data.turns import split_reply

WORD_WINDOW = 6  # tokens before the cap over which the word in progress is held back

# Control characters have no place in a one-line chat message: line and paragraph separators
# would break the `[Name] message` transcript, and ESC sequences would reach the terminal.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass
class Progress:
    """What a generation has cost so far; the engine's token loop fills it in."""

    started: float  # time.perf_counter() when the surface was called
    prompt_tokens: int  # tokens in the prompt, head included
    head_tokens: int  # of those, the fixed head's (BOS included)
    trimmed_turns: int  # oldest turns left out to fit the context
    cap: int  # most tokens this reply may generate
    reused_tokens: int = 0  # prompt tokens llama.cpp did not have to evaluate (KV cache)
    generated_tokens: int = 0
    capped: bool = False  # the length cap ended the generation
    first_token_s: float | None = None  # from the call to the first sampled token
    # Best-of-N: every candidate's text and score, best first (empty for a single sample).
    candidates: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Reply:
    """A finished (or stopped) reply and what it cost."""

    messages: list[str]  # one entry per message, each one line; [] if nothing was said
    prompt_tokens: int
    reused_tokens: int  # measured: prompt tokens that came from the KV cache
    generated_tokens: int
    head_tokens: int
    trimmed_turns: int
    capped: bool
    cancelled: bool  # the cancel event was set when it ended
    first_token_s: float | None  # None when no token was sampled
    total_s: float
    candidates: tuple[tuple[str, float], ...] = ()  # best-of-N: (text, score), best first

    @property
    def text(self) -> str:
        return "\n".join(self.messages)


def shown(messages: list[str], lstrip: bool, final: bool, hold_word: bool) -> str:
    """The part of `messages` that is safe to show: control characters removed, trailing
    whitespace (and, near the cap, the word in progress) held back until the text after it is
    known."""
    plain = [_CONTROL.sub("", m) for m in messages]
    cleaned = [m.lstrip() if lstrip or i else m for i, m in enumerate(plain)]
    if not final:
        last = cleaned[-1].rstrip()
        if hold_word:
            cut = max(last.rfind(" "), last.rfind("\t"))
            last = last[:cut] if cut > 0 else ""
        cleaned[-1] = last
    return "\n".join(m.rstrip() for m in cleaned if m.strip())


def trim_to_word(text: str) -> str:
    """`text` without its last, possibly cut, word (unchanged if it is one word)."""
    stripped = text.rstrip()
    cut = stripped.rfind(" ")
    return stripped[:cut].rstrip() if cut > 0 else stripped


class Stream(Iterator[str]):
    """`speaker`'s reply streaming from `pieces` (the decoded text of each generated token).
    `lstrip`: drop the whitespace the reply starts with."""

    def __init__(
        self,
        pieces: Generator[str, None, None],
        progress: Progress,
        speaker: str,
        max_messages: int,
        lstrip: bool,
        cancel: threading.Event | None,
    ) -> None:
        self._pieces = pieces
        self.progress = progress
        self._speaker, self._max, self._lstrip, self._cancel = speaker, max_messages, lstrip, cancel
        self._raw = ""
        self._sent = ""
        self._reply: Reply | None = None
        self._gen = self._shape()

    def __next__(self) -> str:
        return next(self._gen)

    def close(self) -> None:
        """Stop generating (the Reply keeps what was generated so far)."""
        self._gen.close()
        self._finish()

    def result(self) -> Reply:
        """The Reply, once the rest of the stream has been generated."""
        for _ in self._gen:
            pass
        return self._finish()

    def _shape(self) -> Generator[str, None, None]:
        p = self.progress
        try:
            for piece in self._pieces:
                self._raw += piece
                messages, finished, _ = split_reply(self._raw, self._speaker, self._max)
                if finished:
                    break
                near_cap = p.generated_tokens >= p.cap - WORD_WINDOW
                now = shown(messages, self._lstrip, final=False, hold_word=near_cap)
                if now.startswith(self._sent) and len(now) > len(self._sent):
                    yield now[len(self._sent) :]
                    self._sent = now
        finally:
            self._finish()
        final = self._finish().text
        if final.startswith(self._sent) and len(final) > len(self._sent):
            yield final[len(self._sent) :]

    def _finish(self) -> Reply:
        if self._reply is not None:
            return self._reply
        self._pieces.close()  # ends the token loop, which closes llama.cpp's generator
        p = self.progress
        messages, _, pending = split_reply(self._raw, self._speaker, self._max)
        if p.capped and not pending:
            messages[-1] = trim_to_word(messages[-1])
        final = shown(messages, self._lstrip, final=True, hold_word=False)
        self._reply = Reply(
            messages=final.split("\n") if final else [],
            prompt_tokens=p.prompt_tokens,
            reused_tokens=p.reused_tokens,
            generated_tokens=p.generated_tokens,
            head_tokens=p.head_tokens,
            trimmed_turns=p.trimmed_turns,
            capped=p.capped,
            cancelled=self._cancel is not None and self._cancel.is_set(),
            first_token_s=p.first_token_s,
            total_s=time.perf_counter() - p.started,
            candidates=tuple(p.candidates),
        )
        return self._reply
