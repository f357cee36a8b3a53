"""JSON-schema grammars for `LlamaModel.generate_json`: the grammar text (cached), and the
likeliest token a grammar sampler allows, checked on the likeliest tokens first."""

from __future__ import annotations

import ctypes
import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@functools.lru_cache(maxsize=8)
def grammar_text(json_schema: str) -> str:
    """llama.cpp grammar text for a JSON Schema (cached: extraction uses one schema per chat)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(json_schema))
    except Exception as exc:  # the converter raises bare Exceptions, KeyErrors, TypeErrors
        raise ValueError(f"cannot turn this JSON schema into a llama.cpp grammar: {exc}") from exc


_TOKEN_DATA = [("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]  # llama_token_data, as numpy


def best_allowed(grammar: Any, logits: np.ndarray) -> int:
    """The highest-logit token the grammar sampler allows, looking at the 64 likeliest tokens,
    then the 4,096 likeliest, then all: a token outside a group scores below all inside it."""
    import llama_cpp
    import numpy as np

    for size in (64, 4096, len(logits)):
        whole = size >= len(logits)
        ids = np.arange(len(logits)) if whole else np.argpartition(-logits, size)[:size]
        data = np.zeros(len(ids), dtype=_TOKEN_DATA)
        data["id"], data["logit"] = ids, logits[ids]
        array = llama_cpp.llama_token_data_array(
            data.ctypes.data_as(llama_cpp.llama_token_data_p), len(ids), -1, False
        )
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array))
        allowed = np.isfinite(data["logit"])
        if allowed.any():
            return int(data["id"][allowed][np.argmax(data["logit"][allowed])])
    raise RuntimeError("the grammar allows no token here")
