"""Tiny random-weight causal LMs, in torch and as F32 GGUF files that llama.cpp loads.

A helper for tests (not a test module). For each supported architecture it builds a Hugging Face
model (hidden 64, 2 layers, 4 heads, 2 KV heads) with random weights big enough to give
non-trivial logits, then writes the same weights as a GGUF the way llama.cpp's
convert_hf_to_gguf.py does: gguf-py's name map, llama's q/k row permutation for RoPE, gemma's
`norm + 1`, the per-arch hyperparameter keys, and a small tokenizer (SentencePiece-style for
gemma3/llama, byte-level BPE for qwen). Builds take well under a second each on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from convsim.convert import names

TINY_ARCHS = ("gemma3", "llama", "qwen2", "qwen3")

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN = 64, 2, 4, 2, 16, 128
CONTEXT = 512


@dataclass
class TinyModel:
    arch: str
    model: Any  # transformers PreTrainedModel, float32, eval mode
    gguf_path: Path  # the same weights as an F32 GGUF
    n_vocab: int


# ---------------------------------------------------------------- tokenizers


def spm_vocab() -> dict[str, Any]:
    """A SentencePiece-style vocab: 4 specials, 256 byte tokens, a few word pieces."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    pieces = ["▁", "▁the", "▁hey", "▁you", "▁are", "▁we", "▁going", "\n", "["]
    pieces += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["▁" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = specials + byte_tokens + pieces
    assert len(set(tokens)) == len(tokens), "llama.cpp aborts on duplicate tokens"
    types = [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.UNKNOWN]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * (4 + 256) + [-float(i) for i in range(len(pieces))]
    return {"tokens": tokens, "types": types, "scores": scores, "bos": 2, "eos": 1, "unk": 3}


def _bytes_to_unicode() -> list[str]:
    """GPT-2's printable stand-in for each byte value (index = byte)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def bpe_vocab() -> dict[str, Any]:
    """A byte-level BPE vocab (GPT-2 style, as Qwen uses): 256 bytes, a few merges, one special."""
    byte_chars = _bytes_to_unicode()
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("e", "r"), ("Ġ", "w")]
    merged = ["".join(m) for m in merges]
    tokens = [*byte_chars, *merged, "<|endoftext|>"]
    assert len(set(tokens)) == len(tokens), "llama.cpp aborts on duplicate tokens"
    types = [gguf.TokenType.NORMAL] * (len(tokens) - 1) + [gguf.TokenType.CONTROL]
    eot = len(tokens) - 1
    return {
        "tokens": tokens,
        "types": types,
        "merges": [f"{a} {b}" for a, b in merges],
        "bos": eot,
        "eos": eot,
    }


def _vocab(arch: str) -> dict[str, Any]:
    return spm_vocab() if arch in ("gemma3", "llama") else bpe_vocab()


def _add_tokenizer(writer: gguf.GGUFWriter, arch: str, vocab: dict[str, Any]) -> None:
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types([int(t) for t in vocab["types"]])
    writer.add_bos_token_id(vocab["bos"])
    writer.add_eos_token_id(vocab["eos"])
    if arch in ("gemma3", "llama"):
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_scores(vocab["scores"])
        writer.add_unk_token_id(vocab["unk"])
        writer.add_pad_token_id(0)
        writer.add_add_bos_token(True)
        writer.add_add_space_prefix(arch == "llama")
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("qwen2")
        writer.add_token_merges(vocab["merges"])
        writer.add_add_bos_token(False)


# ---------------------------------------------------------------- torch models


def _config(arch: str, n_vocab: int) -> Any:
    import transformers

    common: dict[str, Any] = dict(
        vocab_size=n_vocab,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=CONTEXT,
        rms_norm_eps=1e-6,
    )
    if arch == "gemma3":
        # Both layers are sliding-window layers in HF (pattern 6) and in llama.cpp alike.
        return transformers.Gemma3TextConfig(
            **common, query_pre_attn_scalar=HEAD_DIM, sliding_window=128, bos_token_id=2,
            eos_token_id=1, pad_token_id=0, tie_word_embeddings=True,
        )  # fmt: skip
    if arch == "llama":
        # Untied, so the test also covers lm_head -> output.weight.
        return transformers.LlamaConfig(**common, tie_word_embeddings=False)
    if arch == "qwen2":
        common.pop("head_dim")
        return transformers.Qwen2Config(**common, tie_word_embeddings=True)
    if arch == "qwen3":
        return transformers.Qwen3Config(**common, tie_word_embeddings=True)
    raise ValueError(arch)


def build_hf(arch: str, n_vocab: int, seed: int = 0) -> Any:
    """A random-weight HF causal LM; weights scaled so logits have a spread of a few units."""
    import transformers

    torch.manual_seed(seed)
    config = _config(arch, n_vocab)
    cls = {
        "gemma3": transformers.Gemma3ForCausalLM,
        "llama": transformers.LlamaForCausalLM,
        "qwen2": transformers.Qwen2ForCausalLM,
        "qwen3": transformers.Qwen3ForCausalLM,
    }[arch]
    model = cls(config).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                # gemma stores norms as (scale - 1); the others as the scale itself.
                centre = 0.0 if arch == "gemma3" else 1.0
                param.copy_(centre + 0.1 * torch.randn(param.shape, generator=gen))
            elif name.endswith("embed_tokens.weight"):
                std = HIDDEN**-0.5 if arch == "gemma3" else 1.0  # gemma scales by sqrt(hidden)
                param.copy_(std * torch.randn(param.shape, generator=gen))
            elif param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=gen) / param.shape[1] ** 0.5)
            else:  # qwen2's q/k/v biases
                param.copy_(0.1 * torch.randn(param.shape, generator=gen))
    return model


# ---------------------------------------------------------------- GGUF writer


def write_gguf(model: Any, arch: str, path: Path, vocab: dict[str, Any]) -> Path:
    """Write `model`'s weights as an F32 GGUF, mirroring llama.cpp's converter for `arch`."""
    config = model.config
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(f"tiny-{arch}")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    rope = config.rope_parameters
    if arch == "gemma3":
        writer.add_rope_freq_base(rope["full_attention"]["rope_theta"])
        writer.add_sliding_window(config.sliding_window)
    else:
        writer.add_rope_freq_base(rope["rope_theta"])
    if arch == "llama":
        writer.add_vocab_size(config.vocab_size)
        writer.add_rope_dimension_count(HEAD_DIM)
    _add_tokenizer(writer, arch, vocab)

    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        data = tensor.detach().to(torch.float32).numpy().copy()
        if arch == "gemma3" and name.endswith("norm.weight"):
            data = data + 1.0  # llama.cpp multiplies by the weight itself
        if names.needs_qk_permute(arch):
            if ".q_proj." in name:
                data = names.permute_qk_rows(data, HEADS)
            elif ".k_proj." in name:
                data = names.permute_qk_rows(data, KV_HEADS)
        gguf_name = names.hf_to_gguf(arch, LAYERS, name)
        if gguf_name is None:
            raise KeyError(f"no GGUF name for {name}")
        writer.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def build_tiny(arch: str, directory: Path, seed: int = 0) -> TinyModel:
    """Build the tiny `arch` model and its GGUF under `directory`."""
    vocab = _vocab(arch)
    n_vocab = len(vocab["tokens"])
    model = build_hf(arch, n_vocab, seed)
    directory.mkdir(parents=True, exist_ok=True)
    path = write_gguf(model, arch, directory / f"tiny-{arch}-f32.gguf", vocab)
    return TinyModel(arch, model, path, n_vocab)


def token_ids(n_vocab: int, n: int = 24, seed: int = 1) -> list[int]:
    """`n` random token ids, avoiding the first few (specials) and starting with a plain token."""
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(4, n_vocab - 1, size=n)]


def llama_logits(
    model_path: Path, ids: list[int], lora_path: Path | None = None, *, f32_cache: bool = True
) -> np.ndarray:
    """llama.cpp's logits for every position of `ids` (n_tokens x n_vocab), float32.

    `f32_cache` keeps the KV cache in F32 (llama.cpp's default is F16), so that F32 models can be
    compared with torch near-exactly.
    """
    import llama_cpp

    from convsim.convert.llama_logs import quiet_llama_logs
    from convsim.core.inference.llama.machine import model_params_without_amx

    kwargs: dict[str, Any] = {"type_k": 0, "type_v": 0} if f32_cache else {}  # GGML_TYPE_F32
    with quiet_llama_logs(), model_params_without_amx():  # as convsim loads models
        llm = llama_cpp.Llama(
            model_path=str(model_path),
            lora_path=None if lora_path is None else str(lora_path),
            n_ctx=max(64, len(ids) + 8),
            n_threads=2,
            logits_all=True,
            verbose=False,
            **kwargs,
        )
        try:
            llm.eval(ids)
            return np.array(llm.scores[: len(ids)], dtype=np.float32)
        finally:
            llm.close()


def torch_logits(model: Any, ids: list[int]) -> np.ndarray:
    """The HF/PEFT model's logits for every position of `ids`, float32."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two logit arrays, flattened."""
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
