"""A trained persona as GGUF files: its runtime LoRA adapter, and merged, quantised exports
that LM Studio, Ollama or llama.cpp open on their own (the work itself is in `convsim.convert`).

Errors are typed (`errors.ModelNotReady`, `errors.AdapterMissing`) and say what is wrong; the
caller decides what to suggest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from convsim.core.training.errors import AdapterMissing, ModelNotReady

if TYPE_CHECKING:
    from convsim.core.workspace import Workspace


def adapter_gguf(ws: Workspace, model_id: str) -> Path:
    """The runtime LoRA adapter GGUF of a finished model's current version (`versions`).
    Raises KeyError for an unknown id, `ModelNotReady` while it is unfinished,
    `AdapterMissing` when its file is gone."""
    from convsim.core.training.versions import current

    record = ws.store.model(model_id)
    if record.status != "ready":
        raise ModelNotReady(model_id, record.status)
    path = current(ws.store, model_id).adapter_gguf  # the newest kept version (`versions`)
    if not path.is_file():
        raise AdapterMissing(path, model_id, record.chat_id, record.person)
    return path


def export_model(ws: Workspace, model_id: str, quant: str = "q8_0") -> Path:
    """Merge the adapter into its base and quantise: one standalone GGUF for LM Studio,
    Ollama or llama.cpp, written beside the model."""
    from convsim.convert.quantize import check_kind, export

    check_kind(quant)
    record = ws.store.model(model_id)
    adapter = adapter_gguf(ws, model_id)
    if not Path(record.base).is_file():
        raise ValueError(f"{record.base}: the base model {model_id} was trained on is missing "
                         "(moved or deleted?); put it back there to export")  # fmt: skip
    out = Path(record.path) / f"{model_id}-{quant}.gguf"
    return Path(export(Path(record.base), adapter, out, quant))
