"""Is the tuned model better than just asking the base model? Held-out perplexity, on llama.cpp.

For every validation example (the person's real message after its real context), the per-token
perplexity of the message's words is measured under three conditions, on the GGUFs users run:

- `base`: the base model with the same context window;
- `base_prompted`: the base model after a long prompt of the person's own training messages
  ("just ask an LLM to write like them");
- `tuned`: the base model with the trained LoRA adapter.

Every condition scores exactly the same tokens, so the numbers compare directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.core.data.packing import example_fields
from convsim.core.data.turns import tag_of
from convsim.core.inference.llama import LlamaModel

if TYPE_CHECKING:
    from convsim.core.workspace import Workspace

PROMPT_HEADER = "Messages written by {name}:\n"


@dataclass(frozen=True)
class Score:
    perplexity: float
    tokens: int
    nll: float

    def to_json(self) -> dict[str, Any]:
        return {"perplexity": self.perplexity, "tokens": self.tokens, "nll": self.nll}


def _scored(model: LlamaModel, ex: Any) -> tuple[list[int], int]:
    """Tokens of context + target (with BOS) and the index of the first scored token: the first
    one that ends after the target's "[Tag]"."""
    context, target = example_fields(ex)
    tokens = model.tokenize(context + target)
    boundary = len((context + tag_of(target)).encode("utf-8"))
    ends = model.piece_ends(tokens)
    first = next(i for i, end in enumerate(ends) if end > boundary)
    return tokens, first


def persona_prompt(model: LlamaModel, train: Sequence[Any], name: str, budget: int) -> list[int]:
    """The person's own training turns, newest first, as many as fit in `budget` tokens."""
    lines: list[str] = []
    used = len(model.tokenize(PROMPT_HEADER.format(name=name)))
    for ex in reversed(train):
        _, target = example_fields(ex)
        cost = len(model.tokenize(target, bos=False))
        if used + cost > budget:
            break
        lines.append(target)
        used += cost
    return model.tokenize(PROMPT_HEADER.format(name=name) + "".join(reversed(lines)) + "\n")


def _score(
    model: LlamaModel, items: list[tuple[list[int], int]], prefix: list[int] | None
) -> Score:
    nll, count = 0.0, 0
    for tokens, first in items:
        if prefix:
            seq, start, keep = prefix + tokens[1:], len(prefix) + first - 1, len(prefix)
        else:
            seq, start, keep = tokens, first, 0
        if len(seq) > model.n_ctx():
            continue
        logprobs = model.token_logprobs(seq, start, keep=keep)
        nll -= sum(logprobs)
        count += len(logprobs)
    return Score(math.exp(nll / count) if count else float("nan"), count, nll)


def evaluate(
    base: Path,
    adapter: Path | None,
    train: Sequence[Any],
    validation: Sequence[Any],
    name: str,
    *,
    n_ctx: int = 2048,
    prompt_tokens: int = 1024,
    max_examples: int | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Perplexities of `name`'s held-out messages under base, base_prompted and tuned (tuned
    only when `adapter` is given). Examples too long for `n_ctx` are left out of every
    condition."""
    examples = list(validation)[:max_examples] if max_examples else list(validation)
    if not examples:
        raise ValueError("no validation examples: the chat has too few sessions to hold one out")
    say = progress or (lambda s: None)
    model = LlamaModel(base, n_ctx=n_ctx, threads=threads)
    try:
        items = [_scored(model, ex) for ex in examples]
        prefix = persona_prompt(model, train, name, prompt_tokens)
        # The prompted condition needs room for the prefix; drop examples that can't fit it,
        # from every condition alike.
        items = [it for it in items if len(prefix) + len(it[0]) <= n_ctx]
        say(f"scoring {len(items)} held-out messages with the base model")
        results = {"base": _score(model, items, None)}
        say(f"scoring with a {len(prefix)}-token prompt of {name}'s messages")
        model.token_logprobs(prefix, len(prefix))  # decode the shared prefix once
        results["base_prompted"] = _score(model, items, prefix)
    finally:
        model.close()
    if adapter is not None:
        say("scoring with the tuned adapter")
        tuned = LlamaModel(base, [(adapter, 1.0)], n_ctx=n_ctx, threads=threads)
        try:
            results["tuned"] = _score(tuned, items, None)
        finally:
            tuned.close()
    return {
        "examples": len(items),
        "prompt_tokens": len(prefix),
        "conditions": {k: v.to_json() for k, v in results.items()},
    }


def evaluate_model(
    ws: Workspace,
    model_id: str,
    *,
    max_examples: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Held-out perplexity of the person's messages: base, base with a prompt of their
    messages, and the tuned model (see ``evaluate``). Saved as eval.json beside the model."""
    from convsim.core.training import adapter_gguf, speaker_tags

    record = ws.store.model(model_id)
    assert record.dataset_id is not None
    train, validation, _ = ws.dataset_files(record.dataset_id)
    tag = speaker_tags(ws, record).get(record.person)
    report = evaluate(
        Path(record.base),
        adapter_gguf(ws, model_id),
        train,
        validation,
        tag or record.person,
        max_examples=max_examples,
        progress=progress,
    )
    report["model_id"] = model_id
    (Path(record.path) / "eval.json").write_text(json.dumps(report, indent=2))
    return report
