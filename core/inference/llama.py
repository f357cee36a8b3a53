"""The one place convsim runs models on llama.cpp (llama-cpp-python). Everything else goes
through `LlamaModel`: no other module touches a `Llama` or its private attributes, and only the
GGUF tools in `convsim.convert` (quantising, log silencing) import `llama_cpp` besides this one
(tests/test_llama_seam.py checks both).

`LlamaModel` is one loaded GGUF (a base, or a merged export) with its runtime LoRA adapters, one
KV cache, and what llama.cpp can do with it:
- `tokenize` / `detokenize` / `piece_ends`, `is_eog`;
- `generate`: sampled token ids after a prompt, reusing the longest cached prefix of the previous
  call (llama-cpp-python's `Llama.generate` does the bookkeeping); `evaluated` counts every token
  llama.cpp has evaluated, so callers can measure what a prompt really cost;
- `next_logits` and `token_logprobs`: scoring, with the same cache;
- `set_control_vector`: steering (`llama_set_adapter_cvec`): row i of the vector is added to the
  output of block i + 1 (block 0 is never steered); a change empties the KV cache, because tokens
  cached under the old vector would otherwise be reused;
- `embed`: mean-pooled embeddings of texts, from a second llama.cpp context on the same loaded
  weights (no second copy, on CPU or GPU), in embedding mode, opened on first use. It has no
  LoRA adapters or control vector, so a memory index does not change with a persona's adapter
  or steering. Cost, measured on Gemma 3 270M Q4_K_M, 2 CPU threads (benchmarks/latency.py):
  opening it ~90 ms and ~11 MB resident; a 10-20-token message embeds in 75-100 ms, about
  three times what its tokens cost as a prompt, because pooling makes llama.cpp compute every
  position's output (the 262k-vocabulary projection included). A separate
  `Llama(embedding=True)` was measured too and rejected: it loads the weights again, ~430 MB
  (n_batch 128) to ~560 MB (n_batch 512) more resident.

Not thread-safe: one call at a time per model. Nothing here knows about chats or people.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

ENV_THREADS = "CONVSIM_THREADS"  # overrides the CPU threads llama.cpp uses
ENV_GPU_LAYERS = "CONVSIM_GPU_LAYERS"  # overrides how many layers go to the GPU (0 = none)
EMBED_CTX = 512  # tokens per text the embedding context takes (longer texts are cut)


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


def library_info() -> dict[str, Any]:
    """llama-cpp-python's version, the llama.cpp library's own version, its system info (the CPU
    features it was built for) and whether it can offload to a GPU. Raises ImportError/OSError
    when the library does not load."""
    import llama_cpp

    system = llama_cpp.llama_print_system_info()
    library = llama_cpp.llama_version() if hasattr(llama_cpp, "llama_version") else b""
    return {
        "version": llama_cpp.__version__,
        "library": library.decode(errors="replace") if library else "unknown",
        "system_info": system.decode(errors="replace").strip(" |"),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    }


@functools.cache
def _counting_llama() -> type:
    """`llama_cpp.Llama`, counting the tokens it evaluates (the only honest measure of what KV
    reuse saved: `generate` decides on its own how much of the cache to keep)."""
    from llama_cpp import Llama

    class CountingLlama(Llama):  # type: ignore[misc]
        evaluated = 0

        def eval(self, tokens: Sequence[int]) -> None:
            super().eval(tokens)
            self.evaluated += len(tokens)

    return CountingLlama


def _open(path: Path, **kwargs: Any) -> Any:
    from convsim.convert.llama_logs import quiet_llama_logs

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    # Loading is where llama.cpp talks (context sizes, one line per tensor for an adapter on a
    # quantised base); keep it off the user's screen.
    with quiet_llama_logs():
        return _counting_llama()(model_path=str(path), verbose=False, **kwargs)


class LlamaModel:
    """A GGUF loaded into llama.cpp with one context. `adapters`: (LoRA adapter GGUF, scale)
    pairs. `threads` and `gpu_layers` left as None suit this machine (`default_threads`,
    `default_gpu_layers`: every layer on the GPU when llama.cpp was built with GPU support)."""

    def __init__(
        self,
        path: Path,
        adapters: Sequence[tuple[Path, float]] = (),
        *,
        n_ctx: int = 2048,
        threads: int | None = None,
        n_batch: int = 512,
        gpu_layers: int | None = None,
        seed: int = 0,
    ) -> None:
        self.path = Path(path)
        self._threads = threads or default_threads()
        self._gpu_layers = default_gpu_layers() if gpu_layers is None else gpu_layers
        self._llm = _open(
            self.path,
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=self._threads,
            n_gpu_layers=self._gpu_layers,
            seed=seed,
        )
        self._embedder: Any = None
        try:
            if adapters:
                self._set_adapters(adapters)
        except BaseException:
            self._llm.close()
            raise

    def _set_adapters(self, adapters: Sequence[tuple[Path, float]]) -> None:
        import llama_cpp

        from convsim.convert.llama_logs import quiet_llama_logs

        # Not freed by hand: llama.cpp frees an adapter together with the model it was loaded on.
        loaded = []
        with quiet_llama_logs():
            for path, _ in adapters:
                if not Path(path).is_file():
                    raise FileNotFoundError(f"{path}: adapter file not found")
                handle = llama_cpp.llama_adapter_lora_init(
                    self._llm._model.model, str(path).encode("utf-8")
                )
                if handle is None:
                    raise ValueError(f"{path}: llama.cpp could not load this LoRA adapter")
                loaded.append(handle)
            n = len(loaded)
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*loaded)
            scales = (ctypes.c_float * n)(*(float(scale) for _, scale in adapters))
            if llama_cpp.llama_set_adapters_lora(self._llm._ctx.ctx, handles, n, scales):
                raise ValueError("llama.cpp refused the LoRA adapters for this model")

    def __del__(self) -> None:
        # The embedding context must go before the model the Llama frees when collected; at
        # interpreter exit llama_cpp may be half torn down.
        with contextlib.suppress(Exception):
            self._free_embedder()

    def _free_embedder(self) -> None:
        if getattr(self, "_embedder", None) is not None:
            import llama_cpp

            llama_cpp.llama_free(self._embedder)
            self._embedder = None

    def close(self) -> None:
        self._free_embedder()  # before the model it runs on
        self._llm.close()

    # -- facts ---------------------------------------------------------------------------------

    def n_ctx(self) -> int:
        return int(self._llm.n_ctx())

    def n_vocab(self) -> int:
        return int(self._llm.n_vocab())

    def n_embd(self) -> int:
        return int(self._llm.n_embd())

    def n_layers(self) -> int:
        import llama_cpp

        return int(llama_cpp.llama_model_n_layer(self._llm._model.model))

    @property
    def evaluated(self) -> int:
        """Tokens evaluated by llama.cpp since the model was opened (prompt and generation)."""
        return int(self._llm.evaluated)

    # -- text <-> tokens -----------------------------------------------------------------------

    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def detokenize(self, tokens: Sequence[int], prev: Sequence[int] | None = None) -> bytes:
        """The bytes of `tokens`; `prev`, the tokens before them, decides leading spaces."""
        return bytes(self._llm.detokenize(list(tokens), prev_tokens=list(prev) if prev else None))

    def piece_ends(self, tokens: Sequence[int]) -> list[int]:
        """Byte offset where each token's text ends in the detokenised string (BOS = 0 bytes)."""
        ends, total = [], 0
        for i, t in enumerate(tokens):
            total += len(self.detokenize([t], tokens[:i]))
            ends.append(total)
        return ends

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends generation (end of text, end of turn...)."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token))

    # -- generation ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the KV cache: the next prompt is evaluated from its first token."""
        self._llm.reset()

    def generate(
        self,
        tokens: Sequence[int],
        *,
        seed: int,
        temperature: float,
        top_k: int,
        top_p: float,
        min_p: float,
        repeat_penalty: float,
        presence_penalty: float,
        frequency_penalty: float,
    ) -> Generator[int, None, None]:
        """Sampled token ids after the prompt `tokens`, end-of-generation tokens included, until
        the caller stops. Only the part of the prompt that differs from the cached tokens is
        evaluated; the cache then holds the prompt and what was generated."""
        self._llm.set_seed(seed)
        gen = self._llm.generate(
            list(tokens),
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            temp=temperature,
            repeat_penalty=repeat_penalty,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
        )
        try:
            yield from gen
        finally:
            gen.close()

    def _evaluate(self, tokens: Sequence[int], keep: int) -> None:
        """Make the cache hold `tokens`, keeping its first `keep` (which must already match)."""
        self._llm.n_tokens = keep
        self._llm.eval(list(tokens[keep:]))

    def _common_prefix(self, tokens: Sequence[int]) -> int:
        n = 0
        for a, b in zip(self._llm.input_ids[: self._llm.n_tokens], tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    def next_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """The logits (n_vocab floats) that predict the token after `tokens`, reusing the
        cached prefix (the last token is always evaluated again, for fresh logits)."""
        import llama_cpp
        import numpy as np

        if not 0 < len(tokens) <= self.n_ctx():
            raise ValueError(f"{len(tokens)} tokens: need 1 to n_ctx {self.n_ctx()}")
        self._evaluate(tokens, min(self._common_prefix(tokens), len(tokens) - 1))
        row = llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(row, shape=(self.n_vocab(),)).copy()

    def token_logprobs(self, tokens: Sequence[int], scored_from: int, keep: int = 0) -> list[float]:
        """Log-probabilities of tokens[scored_from:], each given everything before it.
        With `scored_from == len(tokens)` it only decodes (fills the cache) and returns [].

        The first `keep` tokens are assumed to be in the KV cache already (a shared prefix that
        was evaluated once); only the rest is decoded, and logits are requested only at the
        positions that predict a scored token, so no vocabulary projection is wasted.
        """
        import llama_cpp
        import numpy as np

        llm = self._llm
        if not 0 < scored_from <= len(tokens):
            raise ValueError("scored_from must point inside the token list, after the first token")
        if keep >= scored_from:
            # Scoring token s needs the logits of position s - 1, so that one must be decoded now.
            raise ValueError("the kept prefix must end before the first scored token")
        if len(tokens) > self.n_ctx():
            raise ValueError(f"{len(tokens)} tokens do not fit a context of {self.n_ctx()}")
        ctx = llm._ctx.ctx
        llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        # llama-cpp-python's record of the cache follows every step, so a failed decode never
        # leaves it claiming tokens the cache no longer holds.
        llm.n_tokens = keep
        llm._requires_eval = True
        n_vocab = self.n_vocab()
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
                llm.input_ids[start : start + len(chunk)] = chunk
                llm.n_tokens = start + len(chunk)
                llm.evaluated += len(chunk)
                for j, nxt in rows:
                    ptr = llama_cpp.llama_get_logits_ith(ctx, j)
                    logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
                    top = logits.max()
                    out.append(float(logits[nxt] - top - np.log(np.exp(logits - top).sum())))
        finally:
            llama_cpp.llama_batch_free(batch)
        # The last position's logits were not computed (they predict nothing scored), so
        # generate() must evaluate again before sampling (`_requires_eval`, set above).
        return out

    # -- steering ------------------------------------------------------------------------------

    def set_control_vector(
        self, data: np.ndarray | None, layer_start: int = 1, layer_end: int | None = None
    ) -> None:
        """Add row i of `data` (rows x n_embd, rows <= n_layers) to the output of block i + 1,
        for blocks `layer_start`..`layer_end` (inclusive; default: every block but the first).
        None removes the vector. Either way the KV cache is emptied."""
        import llama_cpp
        import numpy as np

        n_embd, n_layers = self.n_embd(), self.n_layers()
        end = n_layers - 1 if layer_end is None else layer_end
        if data is None:
            code = llama_cpp.llama_set_adapter_cvec(self._llm._ctx.ctx, None, 0, n_embd, -1, -1)
        else:
            array = np.ascontiguousarray(data, dtype=np.float32)
            if array.ndim != 2 or array.shape[1] != n_embd or not 0 < array.shape[0] <= n_layers:
                raise ValueError(
                    f"control vector: expected (at most {n_layers}) x {n_embd} floats, "
                    f"got shape {array.shape}"
                )
            if not np.isfinite(array).all():
                raise ValueError("control vector: values must be finite")
            if not 1 <= layer_start <= end < n_layers:
                raise ValueError(
                    f"control vector: layers {layer_start}..{end} must lie within 1..{n_layers - 1}"
                )
            ptr = array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            code = llama_cpp.llama_set_adapter_cvec(
                self._llm._ctx.ctx, ptr, array.size, n_embd, layer_start, end
            )
        if code != 0:
            raise ValueError(f"llama.cpp refused the control vector (error {code})")
        self.reset()

    # -- embeddings ----------------------------------------------------------------------------

    def _embedding_context(self) -> Any:
        """A second context on the same weights, in embedding mode with mean pooling and no
        adapters; opened on first use, freed by `close`."""
        if self._embedder is None:
            import llama_cpp

            params = llama_cpp.llama_context_default_params()
            params.n_ctx = params.n_batch = params.n_ubatch = EMBED_CTX
            params.n_seq_max = 1
            params.n_threads = params.n_threads_batch = self._threads
            params.embeddings = True
            params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
            from convsim.convert.llama_logs import quiet_llama_logs

            with quiet_llama_logs():
                ctx = llama_cpp.llama_init_from_model(self._llm._model.model, params)
            if ctx is None:
                raise RuntimeError(f"{self.path}: llama.cpp could not open an embedding context")
            self._embedder = ctx
        return self._embedder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled embeddings (len(texts) x n_embd float32, not normalised) of the base
        model, without the LoRA adapters or control vector; texts are cut at EMBED_CTX
        tokens."""
        import llama_cpp
        import numpy as np

        ctx = self._embedding_context()
        n_embd = self.n_embd()
        out = np.zeros((len(texts), n_embd), dtype=np.float32)
        batch = llama_cpp.llama_batch_init(EMBED_CTX, 0, 1)
        try:
            for row, text in enumerate(texts):
                tokens = self.tokenize(text)[:EMBED_CTX]
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
