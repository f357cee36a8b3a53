"""The inference engine: every reply convsim generates comes from here, on llama.cpp.

A persona is a base GGUF plus an optional LoRA adapter GGUF, or a merged GGUF. Prompts are the
plain `[Name] message` transcript the model was trained on; a reply is generated after
`[Speaker]` and stops at the next line that starts a turn, at end of text, or at a length cap
(then at the last word boundary, never mid-word).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convsim.core import llm as llama


@dataclass
class Sampling:
    """Sampling controls, shared by every surface."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    max_tokens: int = 64


def render(transcript: Sequence[tuple[str, str]]) -> str:
    """[(speaker, text), ...] as training-format lines."""
    return "".join(f"[{who}] {text}\n" for who, text in transcript)


class Engine:
    def __init__(
        self, model: Path, adapter: Path | None = None, *, n_ctx: int = 2048, **kw: Any
    ) -> None:
        self.llm = llama.open_model(model, adapter, n_ctx=n_ctx, **kw)

    def stream(self, prompt: str, sampling: Sampling | None = None) -> Iterator[str]:
        """Text pieces of one turn's continuation of `prompt` (which ends inside the turn)."""
        s = sampling or Sampling()
        pieces = self.llm.create_completion(
            prompt,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            seed=s.seed,
            stop=["\n["],
            stream=True,
        )
        for chunk in pieces:
            text = chunk["choices"][0]["text"]
            if text:
                yield text

    def simulate(
        self,
        transcript: Sequence[tuple[str, str]],
        speaker: str,
        sampling: Sampling | None = None,
    ) -> str:
        """`speaker`'s next message after `transcript`: one line, trimmed to whole words if
        the length cap cut it."""
        s = sampling or Sampling()
        text = "".join(self.stream(render(transcript) + f"[{speaker}]", s))
        reply = text.split("\n", 1)[0].strip()
        if len(self.llm.tokenize(reply.encode(), add_bos=False)) >= s.max_tokens - 1:
            reply = reply.rsplit(" ", 1)[0] if " " in reply else reply
        return reply
