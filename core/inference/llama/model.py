"""`LlamaModel`: one GGUF loaded into llama.cpp with one KV cache, and everything convsim does
with it (see the package docstring for the contract)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.core.inference.llama import embedding, steer
from convsim.core.inference.llama.grammar import best_allowed, grammar_text
from convsim.core.inference.llama.machine import (
    default_gpu_layers,
    default_threads,
    model_params_without_amx,
)

if TYPE_CHECKING:
    import numpy as np


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


def _chunks(keep: int, split: int, end: int, size: int) -> list[tuple[int, int]]:
    """[keep, end) in pieces of at most `size` tokens, none crossing `split`."""
    out = []
    for lo, hi in ((keep, min(split, end)), (max(keep, split), end)):
        out += [(a, min(a + size, hi)) for a in range(lo, hi, size)]
    return out


def _open(path: Path, **kwargs: Any) -> Any:
    from convsim.convert.llama_logs import quiet_llama_logs

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    # Loading is where llama.cpp talks (context sizes, one line per tensor for an adapter on a
    # quantised base); keep it off the user's screen. On a CPU with AMX, llama.cpp's AMX path
    # would crash the first decode (`machine.amx_in_build`).
    with quiet_llama_logs(), model_params_without_amx():
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
        self._states: Any = None  # the hidden-state context, with the adapters (`mean_states`)
        self._lora: tuple[Any, Any, int] | None = None  # (handles, scales, count) as set
        self._steering = steer.Steering(self._llm._ctx.ctx, self.n_embd())
        try:
            if adapters:
                self._set_adapters(adapters)
        except BaseException:
            self._llm.close()
            raise

    def _set_adapters(self, adapters: Sequence[tuple[Path, float]]) -> None:
        import llama_cpp

        from convsim.convert.gguf_file import read_gguf
        from convsim.convert.llama_logs import quiet_llama_logs

        # Not freed by hand: llama.cpp frees an adapter together with the model it was loaded on.
        loaded = []
        with quiet_llama_logs():
            for path, _ in adapters:
                if not Path(path).is_file():
                    raise FileNotFoundError(f"{path}: adapter file not found")
                # llama.cpp reads a damaged adapter past its end and crashes the process:
                # check the header and that every tensor fits in the file first.
                read_gguf(path)
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
        self._lora = (handles, scales, n)

    def __del__(self) -> None:
        # The embedding context must go before the model the Llama frees when collected; at
        # interpreter exit llama_cpp may be half torn down.
        with contextlib.suppress(Exception):
            self._free_embedder()

    def _free_embedder(self) -> None:
        if getattr(self, "_embedder", None) is not None:
            embedding.free_context(self._embedder)
            self._embedder = None
        if getattr(self, "_states", None) is not None:
            embedding.free_context(self._states)
            self._states = None

    def close(self) -> None:
        self._free_embedder()  # before the model they run on
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
        self._steering.forget_cache()

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
        steer_from: int = 0,
        logit_bias: np.ndarray | None = None,
    ) -> Generator[int, None, None]:
        """Sampled token ids after the prompt `tokens`, end-of-generation tokens included, until
        the caller stops. Only the part of the prompt that differs from the cached tokens (or
        was cached under another control vector) is evaluated; the cache then holds the prompt
        and what was generated. With a control vector set, tokens from position `steer_from`
        on (at most the prompt's last) and every generated token are steered. `logit_bias`
        (n_vocab floats) is added to the logits of every step before sampling."""
        if not 0 < len(tokens) < self.n_ctx():
            raise ValueError(f"{len(tokens)} tokens: need 1 to n_ctx {self.n_ctx()} - 1")
        processors = None
        if logit_bias is not None:
            from llama_cpp import LogitsProcessorList

            bias = self._bias(logit_bias)
            processors = LogitsProcessorList([lambda _ids, logits: logits + bias])
        steer_from = min(steer_from, len(tokens) - 1)
        # Everything but the last prompt token, each part under its vector; `Llama.generate`
        # then finds that prefix cached and evaluates the last token for fresh logits.
        self._steering.cached = self._fill(tokens, len(tokens) - 1, steer_from)
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
            logits_processor=processors,
        )
        try:
            yield from gen
        finally:
            gen.close()

    def generate_json(self, tokens: Sequence[int], json_schema: str) -> Generator[int, None, None]:
        """Greedy token ids after the prompt `tokens`, constrained by a llama.cpp grammar to JSON
        text matching `json_schema` (a JSON Schema, as JSON text): at each step the likeliest
        token the grammar allows. Once the JSON is complete only an end-of-generation token is
        allowed; it is yielded and generation ends. The prompt reuses the cached prefix, as in
        `generate`. A schema the grammar converter cannot express raises ValueError.

        Not `generate` with a grammar: llama.cpp's sampler chain checks the grammar against the
        whole vocabulary (262k tokens for Gemma 3) at every step, which made generation 3x
        slower. Here the grammar sees the 64 likeliest tokens first and the rest only when none
        of them fits; the chosen token is the same."""
        import llama_cpp
        import numpy as np

        if not 0 < len(tokens) < self.n_ctx():
            raise ValueError(f"{len(tokens)} tokens: need 1 to n_ctx {self.n_ctx()} - 1")
        grammar = llama_cpp.llama_sampler_init_grammar(
            self._llm._model.vocab, grammar_text(json_schema).encode("utf-8"), b"root"
        )
        if not grammar:
            raise ValueError("llama.cpp could not build a grammar from this JSON schema")
        try:
            self._fill(tokens, len(tokens), 0, most=len(tokens) - 1)
            n_vocab, ctx = self.n_vocab(), self._llm._ctx.ctx
            while True:
                row = llama_cpp.llama_get_logits_ith(ctx, -1)
                logits = np.ctypeslib.as_array(row, shape=(n_vocab,))
                token = best_allowed(grammar, logits)
                llama_cpp.llama_sampler_accept(grammar, token)
                yield token
                if self.is_eog(token) or self._llm.n_tokens >= self.n_ctx():
                    return
                self._llm.eval([token])
        finally:
            llama_cpp.llama_sampler_free(grammar)

    def _fill(
        self, tokens: Sequence[int], upto: int, steer_from: int, most: int | None = None
    ) -> tuple[int, int] | None:
        """Make the cache hold tokens[:upto], those from `steer_from` on computed under the
        control vector (when one is set), reusing the valid cached prefix (at most `most`
        tokens of it); the context then steers the tokens decoded next as it steers the last
        of `tokens`. Returns the steering of that sequence (`Steering.target`)."""
        steering = self._steering
        target = steering.target(len(tokens), steer_from)
        keep = steering.keep(self._common_prefix(tokens[:upto]), target)
        keep = keep if most is None else min(keep, most)
        split = upto if target is None else min(upto, target[1])
        self._llm.n_tokens = keep
        if keep < split:
            steering.apply(False)
            self._llm.eval(list(tokens[keep:split]))
        if max(keep, split) < upto:
            steering.apply(True)
            self._llm.eval(list(tokens[max(keep, split) : upto]))
        steering.cached = target if target is not None and upto > target[1] else None
        steering.apply(target is not None)
        return target

    def _common_prefix(self, tokens: Sequence[int]) -> int:
        n = 0
        for a, b in zip(self._llm.input_ids[: self._llm.n_tokens], tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    def next_logits(self, tokens: Sequence[int], steer_from: int = 0) -> np.ndarray:
        """The logits (n_vocab floats) that predict the token after `tokens`, reusing the
        cached prefix (the last token is always evaluated again, for fresh logits). With a
        control vector set, tokens from position `steer_from` on are steered."""
        import llama_cpp
        import numpy as np

        if not 0 < len(tokens) <= self.n_ctx():
            raise ValueError(f"{len(tokens)} tokens: need 1 to n_ctx {self.n_ctx()}")
        self._fill(tokens, len(tokens), steer_from, most=len(tokens) - 1)
        row = llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(row, shape=(self.n_vocab(),)).copy()

    def token_logprobs(
        self,
        tokens: Sequence[int],
        scored_from: int,
        keep: int = 0,
        steer_from: int = 0,
        logit_bias: np.ndarray | None = None,
    ) -> list[float]:
        """Log-probabilities of tokens[scored_from:], each given everything before it (with
        `logit_bias`, n_vocab floats, added to every position's logits first).
        With `scored_from == len(tokens)` it only decodes (fills the cache) and returns [].

        The first `keep` tokens are assumed to be in the KV cache already (a shared prefix that
        was evaluated once); only the rest is decoded, and logits are requested only at the
        positions that predict a scored token, so no vocabulary projection is wasted. With a
        control vector set, tokens from position `steer_from` on are steered (a cached prefix
        computed under another vector counts only up to where the steering differs).
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
        target = self._steering.target(len(tokens), steer_from)
        keep = self._steering.keep(keep, target)
        split = len(tokens) if target is None else target[1]
        llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        # llama-cpp-python's record of the cache follows every step, so a failed decode never
        # leaves it claiming tokens the cache no longer holds.
        llm.n_tokens = keep
        llm._requires_eval = True
        n_vocab = self.n_vocab()
        bias = None if logit_bias is None else self._bias(logit_bias).astype(np.float64)
        out: list[float] = []
        batch = llama_cpp.llama_batch_init(llm.n_batch, 0, 1)
        try:
            for start, stop in _chunks(keep, split, len(tokens), llm.n_batch):
                chunk = tokens[start:stop]
                self._steering.apply(start >= split)
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
                    if bias is not None:
                        logits += bias
                    top = logits.max()
                    out.append(float(logits[nxt] - top - np.log(np.exp(logits - top).sum())))
        finally:
            llama_cpp.llama_batch_free(batch)
            self._steering.cached = target if target is not None and llm.n_tokens > split else None
        # The last position's logits were not computed (they predict nothing scored), so
        # generate() must evaluate again before sampling (`_requires_eval`, set above).
        return out

    def _bias(self, logit_bias: np.ndarray) -> np.ndarray:
        import numpy as np

        bias = np.asarray(logit_bias, dtype=np.float32)
        if bias.shape != (self.n_vocab(),):
            raise ValueError(f"logit_bias has shape {bias.shape}: need ({self.n_vocab()},)")
        return bias

    # -- steering ------------------------------------------------------------------------------

    def set_control_vector(
        self, data: np.ndarray | None, layer_start: int = 1, layer_end: int | None = None
    ) -> None:
        """Add row i of `data` (rows x n_embd, rows <= n_layers) to the output of block i + 1,
        for blocks `layer_start`..`layer_end` (inclusive; default: every block but the first),
        at the steered positions of each later call (`steer_from`). None removes the vector.
        Cached tokens computed under the previous vector are evaluated again when next used;
        an unsteered cached prefix stays valid."""
        if data is None:
            self._steering.want(None)
            return
        self._steering.version += 1
        self._steering.want(
            steer.check(
                data, self.n_layers(), self.n_embd(), layer_start, layer_end,
                self._steering.version,
            )
        )  # fmt: skip

    # -- embeddings ----------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled embeddings (len(texts) x n_embd float32, not normalised) of the base
        model, without the LoRA adapters or control vector (see `embedding`); texts are cut at
        `embedding.EMBED_CTX` tokens. The embedding context opens on first use."""
        if self._embedder is None:
            self._embedder = embedding.open_context(
                self._llm._model.model, self._threads, self.path
            )
        return embedding.embed(self._embedder, [self.tokenize(t) for t in texts], self.n_embd())

    def mean_states(self, items: Sequence[tuple[Sequence[int], int]]) -> np.ndarray:
        """For each (tokens, first): the mean over tokens[first:] of the model's last hidden
        state (after the final norm, before the output projection), each token seen after all
        the tokens before it; len(items) x n_embd float32, not normalised. Unlike `embed`, the
        states are the persona's: computed with this model's LoRA adapters (no control vector),
        in a third context that opens on first use (`embedding.open_states_context`). Lists
        longer than `embedding.EMBED_CTX` tokens lose their first tokens."""
        import llama_cpp

        if self._states is None:
            ctx = embedding.open_states_context(self._llm._model.model, self._threads, self.path)
            if self._lora is not None:
                handles, scales, n = self._lora
                if llama_cpp.llama_set_adapters_lora(ctx, handles, n, scales):
                    embedding.free_context(ctx)
                    raise ValueError("llama.cpp refused the LoRA adapters on the states context")
            self._states = ctx
        return embedding.mean_states(self._states, items, self.n_embd())
