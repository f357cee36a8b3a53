"""The constitution, and a judge that turns it into preference pairs (RLAIF).

The constitution is a few lines the user writes about the person (values, facts, "would
never..."), kept as `constitution.txt` in the model's folder, so forgetting the model removes
it. With an OpenAI-compatible endpoint configured (`convsim memory endpoint`; its key only in
the system keyring), `judge_pairs` asks it, for moments of the chat, which of two replies the
persona drew there fits the constitution better: each answer is a pair for the update. Without
an endpoint nothing is judged and nothing goes online.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from convsim.core.data.turns import Turn, render, render_turn
from convsim.core.files import write_text
from convsim.core.memory.endpoint import EndpointError, EndpointExtractor
from convsim.core.workspace import Workspace

__all__ = ["CONSTITUTION_FILE", "Judge", "constitution", "judge_pairs", "set_constitution"]

CONSTITUTION_FILE = "constitution.txt"
MAX_LINES = 40
INSTRUCTION = (
    "You judge which of two chat replies fits a person better. You get what their friend wrote"
    " about them (the constitution), the conversation so far, and two replies, A and B, that"
    ' could be theirs. Answer with JSON {"better": "A"} or {"better": "B"}: the reply that fits'
    " the constitution and the conversation better."
)


def constitution(ws: Workspace, model_id: str) -> str:
    """The model's constitution ("" when none was written). KeyError for an unknown model."""
    path = Path(ws.store.model(model_id).path) / CONSTITUTION_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def set_constitution(ws: Workspace, model_id: str, text: str) -> Path:
    """Write (or, for empty text, remove) the constitution. A ValueError names what is wrong:
    more than `MAX_LINES` lines."""
    path = Path(ws.store.model(model_id).path) / CONSTITUTION_FILE
    lines = [line.rstrip() for line in text.strip().splitlines()]
    if len(lines) > MAX_LINES:
        raise ValueError(f"a constitution is a few lines; this one has {len(lines)} "
                         f"(at most {MAX_LINES})")  # fmt: skip
    if not any(lines):
        path.unlink(missing_ok=True)
        return path
    return write_text(path, "\n".join(lines) + "\n")


class Judge(EndpointExtractor):
    """The configured endpoint, asked to compare two replies."""

    name = "judge"

    def prefer(self, rules: str, transcript: Sequence[Turn], speaker: str,
               first: str, second: str) -> int:  # fmt: skip
        """0 when `first` fits `rules` better, 1 for `second`. EndpointError when the endpoint
        fails or answers something else."""
        prompt = (f"Constitution of {speaker}:\n{rules}\nConversation:\n{render(transcript)}\n"
                  f"A: {render_turn(speaker, first)}B: {render_turn(speaker, second)}")  # fmt: skip
        schema = {"type": "object", "properties": {"better": {"enum": ["A", "B"]}},
                  "required": ["better"], "additionalProperties": False}  # fmt: skip
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": INSTRUCTION},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0,
            "max_tokens": 16,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "judgement", "schema": schema},
            },
        }
        raw = self._post(body).decode("utf-8", errors="replace")
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
            better = json.loads(content.strip().strip("`").removeprefix("json"))["better"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise EndpointError(
                f"the judge answered something else: {raw[:200]}", "answer"
            ) from None
        if better not in ("A", "B"):
            raise EndpointError(f'the judge answered {better!r}, not "A" or "B"', "answer")
        return 0 if better == "A" else 1


def judge_pairs(
    ws: Workspace,
    model_id: str,
    moments: Sequence[tuple[Sequence[Turn], str]],
    draw: Callable[[Sequence[Turn], str], Sequence[str]],
    *,
    judge: Judge | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Pairs for the update: at each moment (transcript, the person's tag), `draw` gives the
    persona's candidate replies; the judge picks between the first two that differ. Raises
    ValueError without a constitution, EndpointError without an endpoint."""
    rules = constitution(ws, model_id).strip()
    if not rules:
        raise ValueError(
            f"model {model_id} has no constitution to judge by (write one: convsim feedback"
            f" constitution {model_id} --file FILE)"
        )
    if judge is None:
        configured = Judge.from_settings(ws.store)  # a Judge: it is made by `cls`
        assert isinstance(configured, Judge)
        judge = configured
    pairs = []
    for n, (transcript, speaker) in enumerate(moments, 1):
        if cancel is not None and cancel.is_set():
            break
        texts = list(dict.fromkeys(t.strip() for t in draw(transcript, speaker) if t.strip()))
        if len(texts) >= 2:
            better = judge.prefer(rules, transcript, speaker, texts[0], texts[1])
            pairs.append({"type": "pair", "context": render(transcript), "weight": 1.0,
                          "chosen": render_turn(speaker, texts[better]),
                          "rejected": render_turn(speaker, texts[1 - better])})  # fmt: skip
        if progress is not None:
            progress(n, len(moments))
    return pairs
