"""Quantise a GGUF with llama.cpp, and `export`: merge a LoRA into its base, then quantise.

`quantize` calls `llama_cpp.llama_model_quantize` with llama.cpp's default parameters, except
`allow_requantize`: a merged model still holds the base's quantised tensors (e.g. Q4_K), which
llama.cpp otherwise refuses to touch. Tensors already in the target type are copied as they are
by llama.cpp; other quantised ones are dequantised and quantised again (a second rounding, small
next to the first). Every metadata key, convsim's provenance included, is carried over by
llama.cpp.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from convsim.core.config import Config
from convsim.core.files import replacing

from . import QUANT_KINDS
from .llama_logs import quiet_llama_logs
from .merge import ExportCancelled, MergeProgress, merge_lora


def _ftype(kind: str) -> int:
    import llama_cpp

    check_kind(kind)
    table = {
        "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
        "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    }
    return int(table[kind])


def quantize(src: Path | str, dst: Path | str, kind: str, *, threads: int | None = None) -> Path:
    """Quantise GGUF `src` into `dst` as `kind`; raises RuntimeError if llama.cpp fails."""
    import llama_cpp

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"no such model file: {src}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _ftype(kind)
    params.nthread = threads if threads else (os.cpu_count() or 1)
    params.allow_requantize = True
    with replacing(dst) as tmp:
        with quiet_llama_logs():
            rc = llama_cpp.llama_model_quantize(
                str(src).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        if rc != 0:
            raise RuntimeError(f"llama.cpp failed to quantise {src} to {kind} (code {rc})")
    return dst


def check_kind(kind: str) -> None:
    """Raise ValueError unless `kind` is one of `QUANT_KINDS`."""
    if kind not in QUANT_KINDS:
        raise ValueError(f"unknown quantisation {kind!r} (choose from {', '.join(QUANT_KINDS)})")


@dataclass(frozen=True)
class ExportConfig(Config):
    """How an exported model was made; saved as `<out>.json` beside it."""

    setting_kind: ClassVar[str] = "export"

    base: str  # the base GGUF file it was merged into
    quant: str  # final quantisation: q8_0, q4_k_m or f16
    merge_type: str  # type of merged tensors before quantising (f16 or f32)
    lora_scale: float  # multiplier on the adapter, as llama.cpp's lora scale


def export(
    base: Path | str,
    adapter: Any,
    out: Path | str,
    quant: str = "q8_0",
    *,
    lora_scale: float = 1.0,
    provenance: dict[str, Any] | None = None,
    progress: Callable[[MergeProgress], None] | None = None,
    cancel: threading.Event | None = None,
    threads: int | None = None,
) -> Path:
    """Merge `adapter` into `base`, quantise to `quant`, write `out` and `<out>.json`.

    `adapter` is anything `merge_lora` accepts (our GGUF adapter, a PEFT dir, a PeftModel).
    The merged intermediate is F16 and is removed afterwards. `cancel` is honoured between
    tensors of the merge and before quantising; llama.cpp's quantiser itself runs to the end.
    """
    check_kind(quant)  # fail on a bad kind before the slow merge
    out = Path(out)
    # A name of its own: two exports of the same model at once must not share it.
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".merged-f16.tmp")
    os.close(fd)
    merged = Path(name)
    try:
        merge_lora(
            base, adapter, merged, "f16",
            scale=lora_scale, provenance=provenance, progress=progress, cancel=cancel,
        )  # fmt: skip
        if cancel is not None and cancel.is_set():
            raise ExportCancelled(f"export to {out} cancelled")
        quantize(merged, out, quant, threads=threads)
    finally:
        merged.unlink(missing_ok=True)
    config = ExportConfig(str(base), quant, "f16", lora_scale)
    config.save(out.with_name(out.name + ".json"))
    return out
