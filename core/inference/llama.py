"""The one place convsim talks to llama.cpp (llama-cpp-python): opening models (base, base +
LoRA adapters, merged GGUFs) quietly, and scoring text. The chat engine builds on this.

Nothing here knows about datasets or people: it takes token ids and returns numbers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ENV_THREADS = "CONVSIM_THREADS"  # overrides the CPU threads llama.cpp uses
ENV_GPU_LAYERS = "CONVSIM_GPU_LAYERS"  # overrides how many layers go to the GPU (0 = none)


def default_threads() -> int:
    """$CONVSIM_THREADS, else the CPU count (at most 8: more rarely helps token generation)."""
    return _env_int(ENV_THREADS) or max(1, min(8, os.cpu_count() or 1))


def default_gpu_layers() -> int:
    """$CONVSIM_GPU_LAYERS, else every layer (-1) when this llama.cpp build can offload to a
    GPU (CUDA, Metal, Vulkan...), else 0."""
    value = _env_int(ENV_GPU_LAYERS)
    if value is not None:
        return value
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name} must be a whole number, not {value!r}") from None


def open_model(
    path: Path,
    lora: Path | None = None,
    *,
    n_ctx: int = 2048,
    threads: int | None = None,
    n_batch: int = 512,
    gpu_layers: int | None = None,
    seed: int = 0,
) -> Any:
    """A `llama_cpp.Llama` for `path`, with an optional GGUF LoRA adapter applied. `threads`
    and `gpu_layers` left as None are chosen for this machine (see `default_threads` and
    `default_gpu_layers`)."""
    from llama_cpp import Llama

    from convsim.convert.llama_logs import quiet_llama_logs

    for p in (path, lora):
        if p is not None and not Path(p).is_file():
            raise FileNotFoundError(f"{p}: model file not found")
    # Loading is where llama.cpp talks (context sizes, one line per tensor for an adapter on
    # a quantised base); keep it off the user's screen.
    with quiet_llama_logs():
        return Llama(
            model_path=str(path),
            lora_path=str(lora) if lora else None,
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=threads or default_threads(),
            n_gpu_layers=default_gpu_layers() if gpu_layers is None else gpu_layers,
            seed=seed,
            verbose=False,
        )


def tokenize(llm: Any, text: str, bos: bool = True) -> list[int]:
    return list(llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))


def piece_ends(llm: Any, tokens: Sequence[int]) -> list[int]:
    """Byte offset where each token's text ends in the detokenised string (BOS = 0 bytes)."""
    ends, total = [], 0
    for i, t in enumerate(tokens):
        total += len(llm.detokenize([t], prev_tokens=list(tokens[:i]) or None))
        ends.append(total)
    return ends


def token_logprobs(llm: Any, tokens: Sequence[int], scored_from: int, keep: int = 0) -> list[float]:
    """Log-probabilities of tokens[scored_from:], each given everything before it.
    With `scored_from == len(tokens)` it only decodes (fills the cache) and returns [].

    The first `keep` tokens are assumed to be in the KV cache already (a shared prefix that was
    evaluated once); only the rest is decoded, and logits are requested only at the positions
    that predict a scored token, so no vocabulary projection is wasted.
    """
    import llama_cpp
    import numpy as np

    if not 0 < scored_from <= len(tokens):
        raise ValueError("scored_from must point inside the token list, after the first token")
    if keep >= scored_from:
        # Scoring token s needs the logits of position s - 1, so that one must be decoded now.
        raise ValueError("the kept prefix must end before the first scored token")
    if len(tokens) > llm.n_ctx():
        raise ValueError(f"{len(tokens)} tokens do not fit a context of {llm.n_ctx()}")
    ctx = llm._ctx.ctx
    llm._ctx.kv_cache_seq_rm(-1, keep, -1)
    n_vocab = llm.n_vocab()
    out: list[float] = []
    batch = llama_cpp.llama_batch_init(llm.n_batch, 0, 1)
    try:
        for start in range(keep, len(tokens), llm.n_batch):
            chunk = tokens[start : start + llm.n_batch]
            rows = []
            for j, tok in enumerate(chunk):
                pos = start + j
                batch.token[j] = tok
                batch.pos[j] = pos
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                # Position p predicts token p + 1.
                wanted = scored_from <= pos + 1 < len(tokens)
                batch.logits[j] = wanted
                if wanted:
                    rows.append((j, tokens[pos + 1]))
            batch.n_tokens = len(chunk)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama.cpp failed to decode a batch")
            for j, nxt in rows:
                ptr = llama_cpp.llama_get_logits_ith(ctx, j)
                logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
                top = logits.max()
                out.append(float(logits[nxt] - top - np.log(np.exp(logits - top).sum())))
    finally:
        llama_cpp.llama_batch_free(batch)
    # Keep llama-cpp-python's own bookkeeping in step, so later generation can reuse the cache.
    llm.input_ids[: len(tokens)] = tokens
    llm.n_tokens = len(tokens)
    return out
