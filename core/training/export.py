"""A trained persona as GGUF files: its runtime LoRA adapter, and merged, quantised exports
that LM Studio, Ollama or llama.cpp open on their own (the work itself is in `convsim.convert`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from convsim.core.workspace import Workspace


def adapter_gguf(ws: Workspace, model_id: str) -> Path:
    record = ws.store.model(model_id)
    path = Path(record.path) / "adapter.gguf"
    if record.status != "ready":
        raise ValueError(
            f"model {model_id} is not ready ({record.status}); "
            f"finish it with: convsim train --resume {model_id}"
        )
    if not path.is_file():
        again = (
            f"convsim train {record.chat_id} --as {record.person!r}"
            if record.chat_id is not None
            else "convsim train"
        )
        raise ValueError(
            f"{path}: the adapter of model {model_id} is missing (moved or deleted); "
            f"train it again with: {again}"
        )
    return path


def export_model(ws: Workspace, model_id: str, quant: str = "q8_0") -> Path:
    """Merge the adapter into its base and quantise: one standalone GGUF for LM Studio,
    Ollama or llama.cpp, written beside the model."""
    from convsim.convert.quantize import check_kind, export

    check_kind(quant)
    record = ws.store.model(model_id)
    out = Path(record.path) / f"{model_id}-{quant}.gguf"
    return Path(export(Path(record.base), adapter_gguf(ws, model_id), out, quant))
