"""The one place convsim runs models on llama.cpp (llama-cpp-python).

Contract: everything else goes through `LlamaModel`; no other module touches a `Llama` or its
private attributes, and only the GGUF tools in `convsim.convert` (quantising, log silencing)
import `llama_cpp` besides this package (tests/test_llama_seam.py checks both). The seam is
`model` (LlamaModel), `embedding` (the embedding context) and `machine` (threads, GPU layers,
library facts, and loading without llama.cpp's AMX path, which crashes on some Xeons).

`LlamaModel` is one loaded GGUF (a base, or a merged export) with its runtime LoRA adapters, one
KV cache, and what llama.cpp can do with it:
- `tokenize` / `detokenize` / `piece_ends`, `is_eog`;
- `generate`: sampled token ids after a prompt, reusing the longest cached prefix of the previous
  call (llama-cpp-python's `Llama.generate` does the bookkeeping); `evaluated` counts every token
  llama.cpp has evaluated, so callers can measure what a prompt really cost;
- `next_logits` and `token_logprobs`: scoring, with the same cache (`token_logprobs` and
  `generate` take an optional logit bias, one float per vocabulary token);
- `set_control_vector`: steering (`llama_set_adapter_cvec`, `steer`): row i of the vector is
  added to the output of block i + 1 (block 0 is never steered), at the positions from each
  call's `steer_from` on; tokens before it are evaluated without the vector. The cache remembers
  which of its tokens were steered by which vector, so a new vector re-evaluates only those;
- `embed`: mean-pooled embeddings of texts, from a second llama.cpp context on the same loaded
  weights, without adapters or control vector (`embedding`, with its measured cost).
- `mean_states`: the persona's own last hidden states (with its LoRA adapters, no control
  vector) averaged over a chosen suffix of each token list, from a third context on the same
  weights (`embedding.open_states_context`); token lists are packed into few decodes.

Not thread-safe: one call at a time per model. Nothing here knows about chats or people.
"""

from convsim.core.inference.llama.embedding import EMBED_CTX
from convsim.core.inference.llama.machine import (
    ENV_GPU_LAYERS,
    ENV_THREADS,
    default_gpu_layers,
    default_threads,
    library_info,
)
from convsim.core.inference.llama.model import LlamaModel

__all__ = [
    "EMBED_CTX",
    "ENV_GPU_LAYERS",
    "ENV_THREADS",
    "LlamaModel",
    "default_gpu_layers",
    "default_threads",
    "library_info",
]
