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
