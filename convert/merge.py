"""Merge a LoRA into a base GGUF, producing a standalone model GGUF.

Contract:
- Every tensor the LoRA touches is dequantised (gguf.quants handles every type, K-quants
  included), gets `scale * alpha/r * B @ A` added in GGUF row order (so llama's permuted q/k
  rows line up, because the adapter's B is permuted the same way), and is written as F16 or F32
  (`out_type`).
- Every other tensor is copied byte-for-byte in its original type.
- Every metadata key is copied byte-for-byte (tokenizer, chat template, ...), except
  `general.file_type` (recomputed: ALL_F32 / MOSTLY_F16 when every matrix now is, else the
  base's value, as the base's quantised matrices still dominate) and `convsim.provenance`
  (a new record that embeds the adapter's).
- Memory use is about one tensor; the output appears atomically.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from convsim.core.files import replacing

from .adapter import KEY_PROVENANCE, LoraWeights, lora_weights, provenance_record, read_lora_adapter
from .gguf_file import TensorOut, encode_kv, read_gguf, write_gguf

OutType = Literal["f16", "f32"]


class ExportCancelled(Exception):
    """Raised when a merge/export is cancelled through its threading.Event."""


@dataclass(frozen=True)
class MergeProgress:
    """One step of a merge: tensor `index` of `total` is being written."""

    index: int
    total: int
    tensor: str
    merged: bool  # True when this tensor gets the LoRA delta


def load_lora(adapter: Any, base_gguf: Path | str) -> LoraWeights:
    """LoraWeights from a GGUF adapter file, a PEFT dir/PeftModel/state dict, or LoraWeights."""
    if isinstance(adapter, LoraWeights):
        return adapter
    if isinstance(adapter, (str, os.PathLike)) and Path(adapter).is_file():
        return read_lora_adapter(Path(adapter))
    return lora_weights(adapter, base_gguf)


def merge_lora(
    base_gguf: Path | str,
    adapter: Any,
    out: Path | str,
    out_type: OutType = "f16",
    *,
    scale: float = 1.0,
    provenance: dict[str, Any] | None = None,
    progress: Callable[[MergeProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Write `base_gguf` with `adapter` merged in (at `scale`, like llama.cpp's lora scale)."""
    import gguf

    if out_type not in ("f16", "f32"):
        raise ValueError(f"out_type must be 'f16' or 'f32', not {out_type!r}")
    qtype = gguf.GGMLQuantizationType.F16 if out_type == "f16" else gguf.GGMLQuantizationType.F32
    base_gguf, out = Path(base_gguf), Path(out)
    lora = load_lora(adapter, base_gguf)
    base = read_gguf(base_gguf, max_strings=0)
    arch = base.get(gguf.Keys.General.ARCHITECTURE)
    if lora.arch != arch:
        raise ValueError(f"adapter is for {lora.arch!r} but {base_gguf} is {arch!r}")
    for name, (a, b) in lora.tensors.items():
        info = base.tensors.get(name)
        if info is None or info.rows_cols != (b.shape[0], a.shape[1]):
            raise ValueError(f"{base_gguf}: adapter tensor {name} does not fit the base model")

    def merged(name: str) -> Callable[[], np.ndarray]:
        def produce() -> np.ndarray:
            weight = base.array(name) + np.float32(scale) * lora.delta(name)
            return weight.astype(np.float16 if out_type == "f16" else np.float32)

        return produce

    def copied(name: str) -> Callable[[], np.ndarray]:
        return lambda: base.raw(name)

    tensors = []
    for name, info in base.tensors.items():
        if name in lora.tensors:
            itemsize = 2 if out_type == "f16" else 4
            nbytes = int(np.prod(info.shape)) * itemsize
            tensors.append(TensorOut(name, info.shape, qtype, nbytes, merged(name)))
        else:
            tensors.append(TensorOut(name, info.shape, info.type, info.nbytes, copied(name)))

    file_type = _file_type(tensors, base.get(gguf.Keys.General.FILE_TYPE))
    record = provenance_record(
        provenance,
        kind="merged_model",
        base={"file": base_gguf.name, "size_bytes": base_gguf.stat().st_size},
        base_provenance=_json_or_none(base.get(KEY_PROVENANCE)),
        merge={"out_type": out_type, "scale": scale, "tensors": len(lora.tensors)},
        adapter=lora.provenance,
    )
    kvs = [
        (key, kv.record)
        for key, kv in base.kv.items()
        if key not in (gguf.Keys.General.FILE_TYPE, KEY_PROVENANCE)
    ]
    if file_type is not None:
        kvs.append((gguf.Keys.General.FILE_TYPE, encode_kv(file_type, gguf.GGUFValueType.UINT32)))
    kvs.append((KEY_PROVENANCE, encode_kv(json.dumps(record), gguf.GGUFValueType.STRING)))

    def on_tensor(index: int, total: int, name: str) -> None:
        if cancel is not None and cancel.is_set():
            raise ExportCancelled(f"merge into {out} cancelled")
        if progress is not None:
            progress(MergeProgress(index, total, name, name in lora.tensors))

    with replacing(out) as tmp:
        write_gguf(tmp, kvs, tensors, alignment=base.alignment, on_tensor=on_tensor)
    return out


def _file_type(tensors: list[TensorOut], base_value: Any) -> int | None:
    import gguf

    types = {t.type for t in tensors if len(t.shape) >= 2}
    F32, F16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16
    if types <= {F32}:
        return int(gguf.LlamaFileType.ALL_F32)
    if types <= {F32, F16}:
        return int(gguf.LlamaFileType.MOSTLY_F16)
    return None if base_value is None else int(base_value)


def _json_or_none(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
