"""What a GGUF model file is: architecture, sizes, tokenizer, quantisation.

`read_info(path)` reads only the header (about 0.1 s for the 262k-vocab default base, where
`gguf.GGUFReader` needs ~10 s), so the UI can call it freely. It raises ValueError naming the
file for anything convsim cannot train on: not a GGUF, an adapter instead of a model, or an
architecture outside `SUPPORTED_ARCHS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .gguf_file import GGUFFile

# The architectures whose LoRA adapters convsim writes (convert.names maps their tensors).
# Mistral GGUFs use the "llama" architecture.
SUPPORTED_ARCHS = ("gemma3", "llama", "qwen2", "qwen3")


@dataclass(frozen=True)
class GGUFInfo:
    """Facts about a GGUF model, read from its metadata."""

    path: Path  # the file the facts came from
    arch: str  # general.architecture, e.g. "gemma3"
    name: str | None  # general.name, if the file has one
    n_layers: int  # {arch}.block_count
    n_embd: int  # {arch}.embedding_length
    n_head: int  # {arch}.attention.head_count
    n_head_kv: int  # {arch}.attention.head_count_kv (= n_head when absent)
    head_dim: int  # {arch}.attention.key_length (= n_embd // n_head when absent)
    n_ff: int  # {arch}.feed_forward_length
    n_vocab: int  # {arch}.vocab_size, else the length of tokenizer.ggml.tokens
    context_length: int  # {arch}.context_length (training context)
    file_type: int | None  # general.file_type (a llama_ftype / gguf.LlamaFileType value)
    file_type_name: str  # that value's name, e.g. "MOSTLY_Q4_K_M"; "unknown" when absent
    tokenizer_model: str | None  # tokenizer.ggml.model: "llama" (SentencePiece), "gpt2" (BPE)
    add_bos: bool | None  # tokenizer.ggml.add_bos_token, when present
    size_bytes: int  # file size


def read_info(path: Path | str) -> GGUFInfo:
    """Read a model's facts from its GGUF metadata.

    Raises FileNotFoundError if the file is missing, ValueError (naming the file) if it is not
    a GGUF model of a supported architecture.
    """
    from .gguf_file import read_gguf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    return info_from_file(read_gguf(path, max_strings=0))


def info_from_file(gf: GGUFFile) -> GGUFInfo:
    """`read_info` for an already parsed file."""
    from gguf import Keys, LlamaFileType

    path = gf.path
    arch = gf.get(Keys.General.ARCHITECTURE)
    if not isinstance(arch, str):
        raise ValueError(f"{path}: GGUF file has no general.architecture")
    kind = gf.get(Keys.General.TYPE, "model")
    if kind != "model":
        raise ValueError(f"{path}: is a GGUF {kind} file, not a model")
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(
            f"{path}: architecture {arch!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHS)})"
        )

    def required(key: str) -> int:
        value = gf.get(key.format(arch=arch))
        if value is None:
            raise ValueError(f"{path}: missing GGUF key {key.format(arch=arch)}")
        if not isinstance(value, int):
            # Per-layer arrays (some archs vary heads per layer); ours must be uniform.
            values = {int(v) for v in value}
            if len(values) != 1:
                raise ValueError(f"{path}: {key.format(arch=arch)} varies per layer")
            return values.pop()
        return value

    n_embd = required(Keys.LLM.EMBEDDING_LENGTH)
    n_head = required(Keys.Attention.HEAD_COUNT)
    n_head_kv = n_head
    if gf.get(Keys.Attention.HEAD_COUNT_KV.format(arch=arch)) is not None:
        n_head_kv = required(Keys.Attention.HEAD_COUNT_KV)
    head_dim = n_embd // n_head
    if gf.get(Keys.Attention.KEY_LENGTH.format(arch=arch)) is not None:
        head_dim = required(Keys.Attention.KEY_LENGTH)

    n_vocab = gf.get(Keys.LLM.VOCAB_SIZE.format(arch=arch))
    if n_vocab is None:
        tokens = gf.kv.get(Keys.Tokenizer.LIST)
        if tokens is None:
            raise ValueError(f"{path}: GGUF file has neither a vocab size nor a token list")
        n_vocab = tokens.count

    file_type = gf.get(Keys.General.FILE_TYPE)
    try:
        file_type_name = LlamaFileType(file_type).name if file_type is not None else "unknown"
    except ValueError:
        file_type_name = f"type {file_type}"
    add_bos = gf.get(Keys.Tokenizer.ADD_BOS)
    return GGUFInfo(
        path=path,
        arch=arch,
        name=gf.get(Keys.General.NAME),
        n_layers=required(Keys.LLM.BLOCK_COUNT),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        n_ff=required(Keys.LLM.FEED_FORWARD_LENGTH),
        n_vocab=int(n_vocab),
        context_length=required(Keys.LLM.CONTEXT_LENGTH),
        file_type=None if file_type is None else int(file_type),
        file_type_name=file_type_name,
        tokenizer_model=gf.get(Keys.Tokenizer.MODEL),
        add_bos=None if add_bos is None else bool(add_bos),
        size_bytes=path.stat().st_size,
    )
