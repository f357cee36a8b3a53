"""The inference engine: every reply convsim generates comes from here, on llama.cpp.

A persona is a base GGUF plus optional LoRA adapter GGUFs (each with a scale), or a merged GGUF.
Prompts are an optional fixed *head* (free text set with `set_head`: notes and memory facts about
the people) followed by the plain `[Name] message` transcript the model was trained on
(`data.turns`). All llama.cpp work goes through `llama.LlamaModel` (`engine.model`).

Contracts:
- `simulate` returns a `reply.Stream` of `speaker`'s reply after `[Speaker]`: iterate it for the
  text as it streams, `result()` gives the `Reply` (messages, token counts, timing). It stops at
  the next newline (with `max_messages > 1`: at the next newline whose following tag is *not*
  the same speaker), at end of text, at cancellation, or at the length cap,
  `Sampling.max_tokens` per message; a reply cut by the cap ends at its last whole word.
- The repeat, presence and frequency penalties count the tokens of the message being written:
  each message of a reply is sampled afresh (`message_tokens`).
- `autocomplete` streams the rest of the user's half-typed message to the end of its line.
- The head is never trimmed. When a prompt would not fit `n_ctx`, whole turns are dropped from
  the oldest end of the conversation, `trim_margin` tokens more than needed, and the cut point is
  remembered, so the cache survives the following turns.
- Every call reuses the KV cache: llama-cpp-python keeps the longest common token prefix of the
  previous call (prompt and generated tokens) and evaluates only the rest. A conversation that
  grows at its end costs only its new tokens; an unchanged head is always such a prefix (even
  across a trim), and a changed head is evaluated again from its first changed token.
- Cancellation (a `threading.Event`) is checked between tokens; prompt evaluation itself is
  one llama.cpp call and is not interrupted.
- Steering (`set_steering`): a control vector acts on the reply only, from its speaker tag
  on; the conversation before it is evaluated and cached without it. A new vector therefore
  costs the reply's few tokens, not the conversation, and a reply steered in an earlier turn is
  evaluated again, unsteered, once it becomes part of the conversation.
- Best-of-N (`Sampling.best_of`, persona replies only): N candidates are generated in full and
  the best one streams at once (see `best_of`); its first token comes after all N.
- The engine is not thread-safe: one generation at a time per Engine.
"""

from __future__ import annotations

import codecs
import itertools
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from convsim.core.data.style import Profile
from convsim.core.data.turns import Turn, render, safe_name, speaker_tail
from convsim.core.inference.llama import LlamaModel
from convsim.core.inference.reply import Progress, Reply, Stream
from convsim.core.inference.sampling import Sampling

__all__ = ["Engine", "Reply", "Sampling", "Stream", "ends_message", "hotter", "message_tokens"]


class Engine:
    """One loaded persona. `adapters`: (LoRA adapter GGUF, scale) pairs applied to `model`.
    `threads` and `gpu_layers` default to what suits this machine (`llama.default_threads`,
    `llama.default_gpu_layers`: all layers on the GPU when llama.cpp was built with GPU support)."""

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
        self.model = LlamaModel(
            model, adapters, n_ctx=n_ctx, threads=threads, n_batch=n_batch, gpu_layers=gpu_layers
        )
        self.n_ctx = n_ctx
        # How to open a second context on the same weights (mapped, not copied) for best-of-N's
        # scores without the conversation; opened on first use.
        self._loading = (Path(model), tuple(adapters), threads, gpu_layers)
        self._neutral: LlamaModel | None = None
        self.styles: dict[str, Profile] = {}  # tag -> that person's style, for best-of-N
        # tag -> the style of best-of-N's candidates for that speaker so far (`best_of`)
        self.candidate_styles: dict[str, Profile] = {}
        self.tally_file: Path | None = None  # where they are kept between sessions (`best_of`)
        # Trim this many tokens beyond what is needed, so trimming (which costs a re-evaluation
        # of the conversation) happens once every few turns, not on every turn.
        self.trim_margin = n_ctx // 4 if trim_margin is None else trim_margin
        self._head = ""
        self._head_tokens = self.tokens("")
        self._tags: dict[str, str] = {}
        # The turns of the last trimmed prompt's conversation up to its first kept turn: a next
        # prompt that starts with the same turns starts there too, so the trimmed window (and
        # the cache) survives the following turns.
        self._kept_prefix: list[Turn] = []

    def close(self) -> None:
        if self._neutral is not None:
            self._neutral.close()
        self.model.close()

    def neutral_model(self) -> LlamaModel:
        """The same persona in a second, small context that never holds the conversation: it
        scores a reply with no conversation before it (best-of-N), leaving the main cache."""
        if self._neutral is None:
            path, adapters, threads, gpu_layers = self._loading
            self._neutral = LlamaModel(
                path, adapters, n_ctx=self.n_ctx // 2 + 256, threads=threads,
                gpu_layers=gpu_layers,
            )  # fmt: skip
        return self._neutral

    # -- prompts -----------------------------------------------------------------------------

    @property
    def head(self) -> str:
        return self._head

    def set_head(self, text: str) -> None:
        """Put `text` (notes, memory facts...) before the conversation of every prompt, never
        trimmed; "" removes it. A line break is added at its end if it lacks one."""
        head = text if not text or text.endswith("\n") else text + "\n"
        tokens = self.tokens(head)
        if len(tokens) >= self.n_ctx // 2:
            raise ValueError(
                f"the head ({len(tokens)} tokens) must stay under half the context ({self.n_ctx})"
            )
        self._head, self._head_tokens = head, tokens

    def set_steering(
        self, data: Any = None, layer_start: int = 1, layer_end: int | None = None
    ) -> None:
        """Steer every reply from now on with a control vector (rows x n_embd: row i is added
        to block i + 1's output, for blocks `layer_start`..`layer_end`); None stops steering."""
        self.model.set_control_vector(data, layer_start, layer_end)

    def set_style(self, speaker: str, profile: Profile | None) -> None:
        """`speaker`'s style (their real messages' `data.style.Profile`), which best-of-N
        weighs beside the ranking score for their replies; None: the ranking score alone.
        Forgets the style of the candidates generated for them so far (`best_of`)."""
        self.candidate_styles.pop(self.tag(speaker), None)
        if profile is None:
            self.styles.pop(self.tag(speaker), None)
        else:
            self.styles[self.tag(speaker)] = profile

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Name -> the tag the model learned for that person (a dataset's renames, e.g.
        "Riya Kapoor" -> "Riya"). Other names are written as the dataset builder writes them
        by default (`turns.safe_name`)."""
        self._tags = dict(tags)

    def tag(self, name: str) -> str:
        """How `name` appears in this engine's prompts."""
        return self._tags.get(name) or safe_name(name)

    def tokens(self, text: str) -> list[int]:
        return self.model.tokenize(text)

    def _start(self, turns: list[Turn]) -> int:
        """Where the conversation started last time, if this is the same conversation (the
        same turns up to that point); else 0."""
        kept = self._kept_prefix
        if kept and turns[: len(kept)] == kept:
            return len(kept) - 1
        return 0

    def _prompt(self, transcript: Sequence[Turn], tail: str, budget: int) -> tuple[list[int], int]:
        """Tokens of the head, the transcript's window and `tail`, leaving `budget` tokens to
        generate, and how many turns were left out. Names become tags (`tag`)."""
        turns = [(self.tag(name), text) for name, text in transcript]
        start = self._start(turns)
        tokens = self.tokens(self._head + render(turns[start:]) + tail)
        if len(tokens) + budget > self.n_ctx and start < len(turns):
            excess = len(tokens) + budget + self.trim_margin - self.n_ctx
            while excess > 0 and start < len(turns):
                excess -= len(self.model.tokenize(render(turns[start : start + 1]), bos=False))
                start += 1
            tokens = self.tokens(self._head + render(turns[start:]) + tail)
        # Only a trimmed window is remembered: an untrimmed prompt starts at the first turn.
        self._kept_prefix = turns[: start + 1] if 0 < start < len(turns) else []
        if len(tokens) >= self.n_ctx:
            raise ValueError(
                f"the prompt ({len(tokens)} tokens, {len(self._head_tokens)} of them the head) "
                f"does not fit n_ctx {self.n_ctx}"
            )
        return tokens, start

    # -- the token loop ----------------------------------------------------------------------

    def _pieces(
        self,
        tokens: list[int],
        s: Sampling,
        p: Progress,
        cancel: threading.Event | None,
        steer_from: int = 0,
    ) -> Generator[str, None, None]:
        """Decoded text of each generated token (may be "" while a UTF-8 character is split);
        a control vector steers the prompt from `steer_from` on (the reply's tag)."""
        model = self.model
        if cancel is not None and cancel.is_set():
            return
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        before = model.evaluated
        seed = s.seed if s.seed is not None else random.randrange(2**31)
        gen = message_tokens(model, tokens, s, seed, steer_from)
        try:
            for token in gen:
                if p.first_token_s is None:
                    p.first_token_s = time.perf_counter() - p.started
                    p.reused_tokens = len(tokens) - (model.evaluated - before)
                if cancel is not None and cancel.is_set():
                    return
                if model.is_eog(token):
                    return
                p.generated_tokens += 1
                yield decoder.decode(model.detokenize([token]))
                if p.generated_tokens >= p.cap:
                    p.capped = True
                    return
        finally:
            gen.close()

    def reply_prompt(
        self, transcript: Sequence[Turn], tail: str, cap: int
    ) -> tuple[list[int], int, int]:
        """The prompt of a reply of at most `cap` tokens after `transcript` and `tail`: its
        tokens, the turns left out, and where steering starts (the tail: the reply's tag and,
        for autocomplete, the draft)."""
        # A reply may take at most half the context: a larger cap must not push the whole
        # conversation out of the prompt (generation then stops where the context ends).
        tokens, trimmed = self._prompt(transcript, tail, min(cap + 8, self.n_ctx // 2))
        return tokens, trimmed, len(tokens) - len(self.model.tokenize(tail, bos=False))

    def _stream(
        self,
        transcript: Sequence[Turn],
        speaker: str,
        tail: str,
        s: Sampling,
        cancel: threading.Event | None,
        max_messages: int,
        lstrip: bool,
    ) -> Stream:
        started = time.perf_counter()
        cap = s.max_tokens * max_messages
        tokens, trimmed, steer_from = self.reply_prompt(transcript, tail, cap)
        progress = Progress(
            started=started,
            prompt_tokens=len(tokens),
            head_tokens=len(self._head_tokens),
            trimmed_turns=trimmed,
            cap=min(cap, self.n_ctx - len(tokens)),
        )
        pieces = self._pieces(tokens, s, progress, cancel, steer_from)
        return Stream(pieces, progress, speaker, max_messages, lstrip, cancel)

    # -- public surfaces ---------------------------------------------------------------------

    def simulate(
        self,
        transcript: Sequence[Turn],
        speaker: str,
        sampling: Sampling | None = None,
        cancel: threading.Event | None = None,
        *,
        max_messages: int = 1,
    ) -> Stream:
        """`speaker`'s reply after `transcript`: iterate the Stream for its text, or call
        `.result()` for the `Reply`. With `max_messages > 1` the model may send several
        messages in a row; they stream separated by "\\n"."""
        s = sampling or Sampling()
        if s.best_of > 1:
            from convsim.core.inference import best_of

            return best_of.simulate(self, transcript, speaker, s, cancel, max_messages)
        speaker = self.tag(speaker)
        tail = speaker_tail(speaker)
        return self._stream(transcript, speaker, tail, s, cancel, max_messages, lstrip=True)

    def autocomplete(
        self,
        transcript: Sequence[Turn],
        me: str,
        partial: str,
        sampling: Sampling | None = None,
        cancel: threading.Event | None = None,
    ) -> Stream:
        """The rest of `me`'s half-typed message `partial` (to the end of its line)."""
        s = sampling or Sampling()
        me = self.tag(me)
        # The tail ends on the last whole word (see `speaker_tail`); the space the model then
        # generates is dropped.
        at_word_start = not partial or partial[-1].isspace()
        tail = speaker_tail(me, partial)
        return self._stream(transcript, me, tail, s, cancel, 1, lstrip=at_word_start)

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


# Apart from the seeds callers space by small steps (the suite's seed + item, best-of-N's
# seed + 7919 * candidate), so a reply's second message never replays another's first.
MESSAGE_SEED_STEP = 1_000_003


def ends_message(piece: bytes) -> bool:
    """Whether a token's text ends a message: it holds a line break."""
    return b"\n" in piece


def message_tokens(
    model: LlamaModel,
    tokens: Sequence[int],
    s: Sampling,
    seed: int,
    steer_from: int = 0,
    ends: Callable[[bytes], bool] | None = None,
) -> Generator[int, None, None]:
    """Sampled token ids after `tokens`, each message of the reply under a fresh sampler: after
    a token whose text `ends` a message (default `ends_message`), sampling starts again (message
    k seeded `seed + MESSAGE_SEED_STEP * k`), so the penalties count only the message being
    written. The line break and the `[Name]` tag that every message writes would otherwise be
    penalised from the second message on, making further messages longer and rarer than the
    person's."""
    ends = ends or ends_message
    history = list(tokens)
    for k in itertools.count():
        gen = model.generate(
            history,
            seed=seed + MESSAGE_SEED_STEP * k,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            steer_from=steer_from,
        )
        try:
            for token in gen:
                yield token
                history.append(token)
                if ends(model.detokenize([token])):
                    break
            else:
                return
        finally:
            gen.close()
        if len(history) >= model.n_ctx():
            return


def hotter(s: Sampling, attempt: int) -> Sampling:
    """`s` made more adventurous for retry `attempt` (1, 2, ...): used to break loops."""
    seed = None if s.seed is None else s.seed + 7919 * attempt
    return replace(
        s,
        temperature=max(s.temperature, 0.7) + 0.25 * attempt,
        presence_penalty=s.presence_penalty + 0.5 * attempt,
        seed=seed,
    )
