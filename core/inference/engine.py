"""The inference engine: every reply convsim generates comes from here, on llama.cpp.

A persona is a base GGUF plus optional LoRA adapter GGUFs (each with a scale), or a merged GGUF.
Prompts are the plain `[Name] message` transcript the model was trained on (`data.turns`).

Contracts:
- `simulate` streams one speaker's reply after `[Speaker]`. It stops at the next newline (with
  `max_messages > 1`: at the next newline whose following tag is *not* the same speaker), at
  end of text, at cancellation, or at the length cap, `Sampling.max_tokens` per message. A reply
  cut by the cap ends at its last whole word (streaming holds back the word in progress only
  over the last few tokens before the cap, so a word longer than that window may show in part).
- `autocomplete` continues the user's half-typed message to the end of its line.
- Every call reuses the KV cache: llama-cpp-python's `Llama.generate` keeps the longest common
  token prefix of the previous call (prompt and generated tokens) and evaluates only the rest,
  so a conversation that grows at its end costs only its new tokens. When a prompt would not
  fit `n_ctx`, whole turns are dropped from the oldest end, `trim_margin` tokens more than
  needed, and the cut point is remembered, so the cache survives the following turns.
- Cancellation (a `threading.Event`) is checked between tokens; prompt evaluation itself is
  one llama.cpp call and is not interrupted.
- The engine is not thread-safe: one generation at a time per Engine.
"""

from __future__ import annotations

import codecs
import random
import re
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from convsim.core.data.turns import Turn, render, safe_name, speaker_tail, split_reply
from convsim.core.inference import llama

# Tokens before the cap over which the word in progress is held back, so that a capped reply
# can still end on a whole word.
_WORD_WINDOW = 6


@dataclass
class Sampling:
    """Sampling controls, shared by every surface."""

    temperature: float = 0.8  # 0 = greedy
    top_k: int = 40  # keep the k most likely tokens (0 = all)
    top_p: float = 0.95  # nucleus: keep the smallest set with this much probability
    min_p: float = 0.05  # drop tokens below this share of the top token's probability
    repeat_penalty: float = 1.1  # >1 discourages tokens seen in the last 64 tokens
    presence_penalty: float = 0.0  # flat penalty on any token already present
    frequency_penalty: float = 0.0  # penalty growing with how often a token appeared
    seed: int | None = None  # None = a fresh random seed per call
    max_tokens: int = 64  # length cap of one message, in tokens


@dataclass
class Stats:
    """What the last generation cost: for tests, benchmarks and a status line."""

    prompt_tokens: int = 0  # tokens in the prompt
    reused_tokens: int = 0  # of those, how many were already in the KV cache
    generated_tokens: int = 0
    trimmed_turns: int = 0  # oldest turns left out to fit the context
    capped: bool = False  # the length cap ended the generation
    messages: list[str] = field(default_factory=list)  # the reply, one entry per message


# Control characters have no place in a one-line chat message: line and paragraph separators
# would break the `[Name] message` transcript, and ESC sequences would reach the terminal.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _shown(messages: list[str], lstrip: bool, final: bool, hold_word: bool) -> str:
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


class Engine:
    """One loaded persona. `adapters`: (LoRA adapter GGUF, scale) pairs applied to `model`.
    `threads` and `gpu_layers` default to what suits this machine (`llm.default_threads`,
    `llm.default_gpu_layers`: all layers on the GPU when llama.cpp was built with GPU support)."""

    def __init__(
        self,
        model: Path,
        adapters: Sequence[tuple[Path, float]] = (),
        *,
        n_ctx: int = 2048,
        threads: int | None = None,
        n_batch: int = 512,
        gpu_layers: int | None = None,
        trim_margin: int | None = None,
    ) -> None:
        self.llm = llama.open_model(
            model, None, n_ctx=n_ctx, threads=threads, n_batch=n_batch, gpu_layers=gpu_layers
        )
        self.n_ctx = n_ctx
        # Trim this many tokens beyond what is needed, so trimming (which costs a full
        # re-evaluation) happens once every few turns, not on every turn.
        self.trim_margin = n_ctx // 4 if trim_margin is None else trim_margin
        self.stats = Stats()
        self._first_kept: Turn | None = None
        self._trimmed = 0
        if adapters:
            self._apply_adapters(adapters)

    def _apply_adapters(self, adapters: Sequence[tuple[Path, float]]) -> None:
        import ctypes

        import llama_cpp

        from convsim.convert.llama_logs import quiet_llama_logs

        loaded = []
        with quiet_llama_logs():
            for path, _ in adapters:
                if not Path(path).is_file():
                    raise FileNotFoundError(f"{path}: adapter file not found")
                handle = llama_cpp.llama_adapter_lora_init(
                    self.llm._model.model, str(path).encode("utf-8")
                )
                if handle is None:
                    raise ValueError(f"{path}: llama.cpp could not load this LoRA adapter")
                self.llm._stack.callback(llama_cpp.llama_adapter_lora_free, handle)
                loaded.append(handle)
            n = len(loaded)
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*loaded)
            scales = (ctypes.c_float * n)(*(float(scale) for _, scale in adapters))
            if llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, handles, n, scales):
                raise ValueError("llama.cpp refused the LoRA adapters for this model")

    def close(self) -> None:
        self.llm.close()

    # -- prompts -----------------------------------------------------------------------------

    def tokens(self, text: str) -> list[int]:
        return llama.tokenize(self.llm, text)

    def _prompt(self, transcript: Sequence[Turn], tail: str, budget: int) -> list[int]:
        """Tokens of the transcript's window plus `tail`, leaving `budget` tokens to generate.
        Names that cannot be tags are made safe the way the dataset builder does it."""
        turns = [(safe_name(name), text) for name, text in transcript]
        start = 0
        if self._first_kept is not None and self._first_kept in turns:
            start = turns.index(self._first_kept)
        tokens = self.tokens(render(turns[start:]) + tail)
        if len(tokens) + budget > self.n_ctx and start < len(turns):
            excess = len(tokens) + budget + self.trim_margin - self.n_ctx
            while excess > 0 and start < len(turns):
                excess -= len(llama.tokenize(self.llm, render(turns[start : start + 1]), False))
                start += 1
            tokens = self.tokens(render(turns[start:]) + tail)
        self._first_kept = turns[start] if start < len(turns) else None
        self._trimmed = start
        if len(tokens) >= self.n_ctx:
            raise ValueError(f"the prompt ({len(tokens)} tokens) does not fit n_ctx {self.n_ctx}")
        return tokens

    # -- the token loop ----------------------------------------------------------------------

    def _pieces(
        self, tokens: list[int], s: Sampling, cap: int, cancel: threading.Event | None
    ) -> Generator[str, None, None]:
        """Decoded text of each generated token (may be "" while a UTF-8 character is split)."""
        import llama_cpp

        llm = self.llm
        cached = list(llm.input_ids[: llm.n_tokens])
        reused = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            reused += 1
        # generate() re-evaluates one token when the whole prompt is cached (to get fresh logits).
        self.stats = Stats(
            prompt_tokens=len(tokens),
            reused_tokens=min(reused, len(tokens) - 1),
            trimmed_turns=self._trimmed,
        )
        cap = min(cap, self.n_ctx - len(tokens))
        llm.set_seed(s.seed if s.seed is not None else random.randrange(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        vocab = llm._model.vocab
        gen = llm.generate(
            tokens,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            temp=s.temperature,
            repeat_penalty=s.repeat_penalty,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
        )
        try:
            if cancel is not None and cancel.is_set():
                return
            for token in gen:
                if cancel is not None and cancel.is_set():
                    return
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    return
                self.stats.generated_tokens += 1
                yield decoder.decode(llm.detokenize([token]))
                if self.stats.generated_tokens >= cap:
                    self.stats.capped = True
                    return
        finally:
            gen.close()

    def _reply(
        self,
        tokens: list[int],
        speaker: str,
        s: Sampling,
        cancel: threading.Event | None,
        max_messages: int,
        lstrip: bool,
    ) -> Iterator[str]:
        cap = s.max_tokens * max_messages
        raw, shown = "", ""
        pieces = self._pieces(tokens, s, cap, cancel)
        for piece in pieces:
            raw += piece
            messages, finished, _ = split_reply(raw, speaker, max_messages)
            if finished:
                break
            near_cap = self.stats.generated_tokens >= cap - _WORD_WINDOW
            now = _shown(messages, lstrip, final=False, hold_word=near_cap)
            if now.startswith(shown) and len(now) > len(shown):
                yield now[len(shown) :]
                shown = now
        pieces.close()
        messages, _, pending = split_reply(raw, speaker, max_messages)
        if self.stats.capped and not pending:
            messages[-1] = trim_to_word(messages[-1])
        final = _shown(messages, lstrip, final=True, hold_word=False)
        if final.startswith(shown) and len(final) > len(shown):
            yield final[len(shown) :]
        self.stats.messages = final.split("\n") if final else []

    # -- public surfaces ---------------------------------------------------------------------

    def simulate(
        self,
        transcript: Sequence[Turn],
        speaker: str,
        sampling: Sampling | None = None,
        cancel: threading.Event | None = None,
        *,
        max_messages: int = 1,
    ) -> Iterator[str]:
        """Stream `speaker`'s reply after `transcript`. With `max_messages > 1` the model may
        send several messages in a row; they are streamed separated by "\\n"."""
        s = sampling or Sampling()
        speaker = safe_name(speaker)
        tokens = self._prompt(transcript, speaker_tail(speaker), s.max_tokens * max_messages + 8)
        return self._reply(tokens, speaker, s, cancel, max_messages, lstrip=True)

    def simulate_messages(
        self,
        transcript: Sequence[Turn],
        speaker: str,
        sampling: Sampling | None = None,
        cancel: threading.Event | None = None,
        *,
        max_messages: int = 1,
    ) -> list[str]:
        """`simulate`, collected: the reply's messages (empty if the model said nothing)."""
        for _ in self.simulate(transcript, speaker, sampling, cancel, max_messages=max_messages):
            pass
        return list(self.stats.messages)

    def reply(
        self,
        transcript: Sequence[Turn],
        speaker: str,
        sampling: Sampling | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """One message of `speaker`'s, as a string ("" if the model ended the turn at once)."""
        return "".join(self.simulate(transcript, speaker, sampling, cancel))

    def autocomplete(
        self,
        transcript: Sequence[Turn],
        me: str,
        partial: str,
        sampling: Sampling | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Stream the rest of `me`'s half-typed message `partial` (to the end of its line)."""
        s = sampling or Sampling()
        me = safe_name(me)
        # The tail ends on the last whole word (see `speaker_tail`); the space the model then
        # generates is dropped.
        at_word_start = not partial or partial[-1].isspace()
        tokens = self._prompt(transcript, speaker_tail(me, partial), s.max_tokens + 8)
        return self._reply(tokens, me, s, cancel, 1, lstrip=at_word_start)

    def forever(
        self,
        transcript: Sequence[Turn],
        speakers: Sequence[str],
        sampling: Sampling | None = None,
        turns: int | None = None,
        cancel: threading.Event | None = None,
        **options: Any,
    ) -> Iterator[Turn]:
        """Endless conversation among `speakers`, in order; see `loops.forever`."""
        from convsim.core.inference import loops

        return loops.forever(self, transcript, speakers, sampling, turns, cancel, **options)


def hotter(s: Sampling, attempt: int) -> Sampling:
    """`s` made more adventurous for retry `attempt` (1, 2, ...): used to break loops."""
    seed = None if s.seed is None else s.seed + 7919 * attempt
    return replace(
        s,
        temperature=max(s.temperature, 0.7) + 0.25 * attempt,
        presence_penalty=s.presence_penalty + 0.5 * attempt,
        seed=seed,
    )
