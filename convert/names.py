"""Hugging Face module names <-> GGUF tensor names, and the one layout difference between them.

Contract:
- Names go through gguf-py's own table (`gguf.get_tensor_name_map`), the table llama.cpp's
  converter uses, so a module maps here exactly as it maps when llama.cpp converts a model.
- HF names may carry PEFT / multimodal prefixes (`base_model.model.`, `language_model.`); they
  are stripped before the lookup.
- `llama` GGUFs (Llama, Mistral, ...) store the rows of q/k projections permuted for llama.cpp's
  interleaved RoPE; `permute_qk_rows` is that permutation. gemma3 and qwen2/3 use NeoX RoPE and
  store weights in HF order.

Importing this module imports `gguf` (and numpy): only modules that need GGUF import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gguf

from .gguf_info import SUPPORTED_ARCHS

if TYPE_CHECKING:
    import numpy as np

# The linear layers a LoRA may target, by their HF leaf name: the one list, also the trainer's
# default `TrainConfig.target_modules`. Every supported architecture shares the Llama layout:
# attention q/k/v/o and a gated MLP.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_LINEARS: dict[str, tuple[str, ...]] = {arch: LORA_TARGETS for arch in SUPPORTED_ARCHS}

# HF module path of each LoRA-able linear inside decoder block `{bid}`.
_HF_LINEAR_PATHS = {
    "q_proj": "model.layers.{bid}.self_attn.q_proj",
    "k_proj": "model.layers.{bid}.self_attn.k_proj",
    "v_proj": "model.layers.{bid}.self_attn.v_proj",
    "o_proj": "model.layers.{bid}.self_attn.o_proj",
    "gate_proj": "model.layers.{bid}.mlp.gate_proj",
    "up_proj": "model.layers.{bid}.mlp.up_proj",
    "down_proj": "model.layers.{bid}.mlp.down_proj",
}

# Prefixes that wrappers put in front of the plain causal-LM module path.
_HF_PREFIXES = ("base_model.model.",)
_HF_INFIXES = (("model.language_model.", "model."), ("language_model.", ""))


def model_arch(arch: str) -> gguf.MODEL_ARCH:
    """The gguf-py enum for an architecture string such as "gemma3"; ValueError if unknown."""
    for member, name in gguf.MODEL_ARCH_NAMES.items():
        if name == arch:
            return member
    raise ValueError(f"unknown GGUF architecture {arch!r}")


def check_supported(arch: str, what: str = "model") -> None:
    """Raise ValueError unless `arch` is one convsim converts adapters for."""
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(
            f"{what}: architecture {arch!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHS)})"
        )


def needs_qk_permute(arch: str) -> bool:
    """True when GGUF q/k rows are stored permuted relative to HF (llama.cpp's `llama` arch)."""
    return arch == "llama"


def strip_hf_prefix(name: str) -> str:
    """`base_model.model.model.language_model.layers.0...` -> `model.layers.0...`."""
    for prefix in _HF_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
    for infix, replacement in _HF_INFIXES:
        if name.startswith(infix):
            name = replacement + name[len(infix) :]
            break
    return name


def hf_to_gguf(arch: str, n_layers: int, hf_name: str) -> str | None:
    """GGUF tensor name for an HF module or parameter name, None if llama.cpp has no such tensor.

    `model.layers.3.self_attn.q_proj` -> `blk.3.attn_q`;
    `model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`.
    """
    table = gguf.get_tensor_name_map(model_arch(arch), n_layers)
    return table.get_name(strip_hf_prefix(hf_name), try_suffixes=(".weight", ".bias"))


def gguf_to_hf(arch: str, n_layers: int, gguf_name: str) -> str:
    """HF module name of a LoRA-able GGUF tensor: `blk.3.attn_q[.weight]` -> HF q_proj path.

    Only the linear layers in `LORA_LINEARS` are covered; anything else raises KeyError.
    """
    base = gguf_name.removesuffix(".weight")
    table = gguf.get_tensor_name_map(model_arch(arch), n_layers)
    for bid in range(n_layers):
        for leaf in LORA_LINEARS[arch]:
            hf_name = _HF_LINEAR_PATHS[leaf].format(bid=bid)
            if table.get_name(hf_name) == base:
                return hf_name
    raise KeyError(f"{gguf_name!r} is not a LoRA-able {arch} tensor")


def lora_leaf(hf_name: str) -> str:
    """The last component of a module name (`...self_attn.q_proj` -> `q_proj`)."""
    return strip_hf_prefix(hf_name).rsplit(".", 1)[-1]


def is_lora_linear(arch: str, hf_name: str) -> bool:
    """True for the decoder linears llama.cpp applies a runtime LoRA to."""
    name = strip_hf_prefix(hf_name)
    return name.startswith("model.layers.") and lora_leaf(name) in LORA_LINEARS[arch]


def permute_qk_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the output rows of a q or k projection from HF order into llama.cpp's order.

    Within each head HF keeps the two RoPE halves apart ([x0..x_{d/2-1}, y0..]); llama.cpp's
    interleaved RoPE wants pairs side by side ([x0, y0, x1, y1, ...]). Works on any array whose
    first axis is the projection's output (weights, biases, LoRA B). `n_head` is the number of
    heads of that projection: n_head for q, n_head_kv for k (as llama.cpp's converter does).
    """
    out = rows.shape[0]
    if out % (2 * n_head):
        raise ValueError(f"{out} rows cannot be split into {n_head} heads of RoPE pairs")
    return (
        rows.reshape(n_head, 2, out // n_head // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def unpermute_qk_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of `permute_qk_rows`: llama.cpp order back to HF order."""
    out = rows.shape[0]
    if out % (2 * n_head):
        raise ValueError(f"{out} rows cannot be split into {n_head} heads of RoPE pairs")
    return (
        rows.reshape(n_head, out // n_head // 2, 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )
