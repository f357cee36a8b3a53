"""Embeddings on llama.cpp: a second context on an already loaded model's weights.

The context runs in embedding mode with mean pooling and without the model context's LoRA
adapters or control vector, so a memory index does not change with a persona's adapter or
steering; it shares the weights (no second copy, on CPU or GPU). Cost, measured on Gemma 3 270M
Q4_K_M, 2 CPU threads (benchmarks/latency.py): opening it ~90-120 ms and ~11 MB resident; a
10-20-token message embeds in 75-110 ms, about three times what its tokens cost as a prompt,
because pooling makes llama.cpp compute every position's output (the 262k-vocabulary
projection included). A separate `Llama(embedding=True)` was measured too and rejected: it
loads the weights again, ~430 MB (n_batch 128) to ~560 MB (n_batch 512) more resident.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

EMBED_CTX = 512  # tokens per text the embedding context takes (longer texts are cut)
STATES_SEQS = 32  # token lists per decode of the hidden-state context


def open_context(model: Any, threads: int, where: object) -> Any:
    """An embedding context on `model` (a `llama_model` pointer); `where` names the model in
    errors. Free it with `free_context` before the model."""
    import llama_cpp

    from convsim.convert.llama_logs import quiet_llama_logs

    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = EMBED_CTX
    params.n_seq_max = 1
    params.n_threads = params.n_threads_batch = threads
    params.embeddings = True
    params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
    with quiet_llama_logs():
        ctx = llama_cpp.llama_init_from_model(model, params)
    if ctx is None:
        raise RuntimeError(f"{where}: llama.cpp could not open an embedding context")
    return ctx


def free_context(ctx: Any) -> None:
    import llama_cpp

    llama_cpp.llama_free(ctx)


def embed(ctx: Any, texts: Sequence[Sequence[int]], n_embd: int) -> np.ndarray:
    """Mean-pooled embeddings (len(texts) x n_embd float32, not normalised) of token lists,
    each cut at EMBED_CTX tokens."""
    import llama_cpp
    import numpy as np

    out = np.zeros((len(texts), n_embd), dtype=np.float32)
    batch = llama_cpp.llama_batch_init(EMBED_CTX, 0, 1)
    try:
        for row, all_tokens in enumerate(texts):
            tokens = list(all_tokens)[:EMBED_CTX]
            for j, tok in enumerate(tokens):
                batch.token[j] = tok
                batch.pos[j] = j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                batch.logits[j] = True  # pooling reads every position's output
            batch.n_tokens = len(tokens)
            # One text per decode, from an empty cache: texts never see each other.
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama.cpp failed to embed a text")
            ptr = llama_cpp.llama_get_embeddings_seq(ctx, 0)
            out[row] = np.ctypeslib.as_array(ptr, shape=(n_embd,))
    finally:
        llama_cpp.llama_batch_free(batch)
    return out


def open_states_context(model: Any, threads: int, where: object) -> Any:
    """A context on `model` that returns every token's last hidden state (after the final
    norm: llama.cpp's per-token "embeddings", pooling none), for up to STATES_SEQS token lists
    per decode. Unlike `open_context` it is meant to carry the model context's LoRA adapters
    (the caller sets them): the persona's own states. Free it with `free_context` before the
    model."""
    import llama_cpp

    from convsim.convert.llama_logs import quiet_llama_logs

    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = EMBED_CTX
    params.n_seq_max = STATES_SEQS
    params.kv_unified = True  # the lists of one decode share the EMBED_CTX cells
    params.n_threads = params.n_threads_batch = threads
    params.embeddings = True
    params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE
    with quiet_llama_logs():
        ctx = llama_cpp.llama_init_from_model(model, params)
    if ctx is None:
        raise RuntimeError(f"{where}: llama.cpp could not open a hidden-state context")
    return ctx


def mean_states(ctx: Any, items: Sequence[tuple[Sequence[int], int]], n_embd: int) -> np.ndarray:
    """For each (tokens, first): the mean of the last hidden states of tokens[first:], each
    computed after everything before it (len(items) x n_embd float32). A list longer than
    EMBED_CTX keeps its last EMBED_CTX tokens (the earliest context goes first).

    Lists are packed whole into decodes of at most EMBED_CTX tokens, each list its own sequence
    from an empty cache: nothing is padded and lists never see each other. Packing is what makes
    this fast on a CPU: a decode streams all the weights once, whatever its size."""
    import llama_cpp
    import numpy as np

    lists: list[tuple[list[int], int]] = []
    for row, (all_tokens, first) in enumerate(items):
        tokens = list(all_tokens)
        if not 0 <= first < len(tokens):
            raise ValueError(f"item {row}: no tokens from {first} on in {len(tokens)}")
        cut = max(0, len(tokens) - EMBED_CTX)
        lists.append((tokens[cut:], max(0, first - cut)))
    out = np.zeros((len(items), n_embd), dtype=np.float32)
    batch = llama_cpp.llama_batch_init(EMBED_CTX, 0, 1)
    try:
        for rows in _packs([len(t) for t, _ in lists]):
            j = 0
            for seq, row in enumerate(rows):
                for pos, tok in enumerate(lists[row][0]):
                    batch.token[j] = tok
                    batch.pos[j] = pos
                    batch.n_seq_id[j] = 1
                    batch.seq_id[j][0] = seq
                    batch.logits[j] = True  # an embeddings context outputs every token anyway
                    j += 1
            batch.n_tokens = j
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama.cpp failed to compute hidden states")
            # Every token is an output, stored in batch order.
            ptr = llama_cpp.llama_get_embeddings(ctx)
            states = np.ctypeslib.as_array(ptr, shape=(j, n_embd))
            at = 0
            for row in rows:
                tokens, first = lists[row]
                out[row] = states[at + first : at + len(tokens)].mean(axis=0)
                at += len(tokens)
    finally:
        llama_cpp.llama_batch_free(batch)
    return out


def _packs(lengths: Sequence[int]) -> list[list[int]]:
    """Indices of `lengths` in order, grouped into runs of at most STATES_SEQS lists and
    EMBED_CTX tokens."""
    packs: list[list[int]] = []
    used = EMBED_CTX
    for i, n in enumerate(lengths):
        if used + n > EMBED_CTX or len(packs[-1]) == STATES_SEQS:
            packs.append([])
            used = 0
        packs[-1].append(i)
        used += n
    return packs
