"""Held-out perplexity (`core/evaluation/perplexity.py`) on the tiny gemma3 model and its LoRA
adapter, through the llama.cpp seam: every condition scores the same tokens, and the numbers
match a direct computation from the model's logits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tinymodels import TinyModel

from convsim.core.evaluation.perplexity import evaluate
from convsim.core.inference.llama import LlamaModel

TRAIN = [
    {"context": "[Riya] hey\n", "target": "[Sam] we are going\n"},
    {"context": "[Riya] the place\n", "target": "[Sam] hey you\n"},
]
VALIDATION = [
    {"context": "[Riya] hey are we going\n", "target": "[Sam] yes we are\n"},
    {"context": "[Riya] you there\n", "target": "[Sam] the sea\n"},
]


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-3)


def _direct_perplexity(path: Path, adapter: Path | None) -> float:
    """Perplexity of each target's tokens after its "[Sam]" tag, from next_logits alone."""
    model = LlamaModel(path, [(adapter, 1.0)] if adapter else [], n_ctx=256, threads=2)
    nll, count = 0.0, 0
    for ex in VALIDATION:
        tokens = model.tokenize(ex["context"] + ex["target"])
        boundary = len((ex["context"] + "[Sam]").encode())
        ends = model.piece_ends(tokens)
        first = next(i for i, end in enumerate(ends) if end > boundary)
        for i in range(first, len(tokens)):
            logits = model.next_logits(tokens[:i]).astype(np.float64)
            top = logits.max()
            nll -= logits[tokens[i]] - top - np.log(np.exp(logits - top).sum())
            count += 1
    model.close()
    return math.exp(nll / count)


def test_conditions_score_the_same_tokens_and_match_the_logits(
    tiny: TinyModel, adapter: Path
) -> None:
    said: list[str] = []
    path = tiny.gguf_path
    report = evaluate(path, adapter, TRAIN, VALIDATION, "Sam", n_ctx=256, progress=said.append)
    conditions = report["conditions"]
    assert set(conditions) == {"base", "base_prompted", "tuned"}
    assert report["examples"] == 2 and report["prompt_tokens"] > 0 and len(said) == 3
    assert len({c["tokens"] for c in conditions.values()}) == 1
    assert conditions["base"]["perplexity"] == approx(_direct_perplexity(tiny.gguf_path, None))
    assert conditions["tuned"]["perplexity"] == approx(_direct_perplexity(tiny.gguf_path, adapter))
    assert conditions["tuned"]["perplexity"] != approx(conditions["base"]["perplexity"])
    assert conditions["base_prompted"]["perplexity"] != approx(conditions["base"]["perplexity"])
