"""Control-vector GGUF files: the format llama.cpp's `--control-vector` loads (as written by
its cvector-generator and by repeng), with convsim's calibration as extra keys.

Layout: architecture `controlvector`, `controlvector.model_hint` (the model's architecture),
`controlvector.layer_count`, and one F32 tensor `direction.N` of n_embd values per steered
block N (block 0 never has one: llama.cpp cannot steer it). llama.cpp adds `direction.N`,
times the scale it is given, to block N's output. Extra keys live under `convsim.` and are
ignored by llama.cpp: numbers and strings as they are, anything else as JSON text after
`JSON_MARK` (so a string that merely looks like JSON reads back as the same string).

`read_control_vector` refuses, naming the file, a GGUF that is not a control vector and one
whose width does not fit the model it is meant for (`check_fits`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convsim.core.files import replacing

ARCH = "controlvector"
PREFIX = "convsim."
JSON_MARK = "json:"


@dataclass
class ControlVector:
    model_hint: str  # the architecture it was computed on, e.g. "gemma3"
    rows: np.ndarray  # n_blocks x n_embd: row N is direction.N (row 0, and unsteered rows, zero)
    meta: dict[str, Any] = field(default_factory=dict)  # convsim.* keys, without the prefix

    @property
    def n_embd(self) -> int:
        return int(self.rows.shape[1])


def write_control_vector(path: Path, vector: ControlVector) -> Path:
    """Write `vector` to `path` (through a temporary file of its own beside it, then renamed:
    two builds of the same vector at once never write into each other's file)."""
    import gguf

    path = Path(path)
    rows = np.asarray(vector.rows, dtype=np.float32)
    steered = [n for n in range(1, len(rows)) if np.any(rows[n])]
    with replacing(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), ARCH)
        writer.add_string(f"{ARCH}.model_hint", vector.model_hint)
        writer.add_uint32(f"{ARCH}.layer_count", len(steered))
        for key, value in vector.meta.items():
            name = PREFIX + key
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                writer.add_string(name, JSON_MARK + json.dumps(value))
            elif isinstance(value, str):
                writer.add_string(name, value)
            elif isinstance(value, int):
                writer.add_int64(name, value)
            else:
                writer.add_float64(name, value)
        for n in steered:
            writer.add_tensor(f"direction.{n}", rows[n])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def read_control_vector(path: Path, n_blocks: int | None = None) -> ControlVector:
    """The control vector in `path`; `n_blocks` sizes its rows (default: its highest
    direction + 1). ValueError names the file when it is not a control vector."""
    import gguf

    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # gguf raises ValueError, KeyError, struct errors on damaged files
        raise ValueError(f"{path}: not a GGUF file ({e})") from None
    fields = {name: _value(f) for name, f in reader.fields.items()}
    arch = fields.get("general.architecture")
    if arch != ARCH:
        raise ValueError(
            f"{path}: not a control vector (its architecture is {arch!r}, expected {ARCH!r})"
        )
    directions = {}
    for tensor in reader.tensors:
        if not tensor.name.startswith("direction."):
            continue
        try:
            n = int(tensor.name.split(".", 1)[1])
        except ValueError:
            raise ValueError(f"{path}: tensor {tensor.name!r} is not direction.N") from None
        if n < 1:
            raise ValueError(f"{path}: direction.{n}: block 0 cannot be steered")
        directions[n] = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
    if not directions:
        raise ValueError(f"{path}: the control vector holds no direction.N tensors")
    widths = {len(d) for d in directions.values()}
    if len(widths) != 1:
        raise ValueError(f"{path}: its directions have different widths {sorted(widths)}")
    size = max(n_blocks or 0, max(directions) + 1)
    rows = np.zeros((size, widths.pop()), dtype=np.float32)
    for n, d in directions.items():
        rows[n] = d
    meta = {}
    for name, value in fields.items():
        if name.startswith(PREFIX):
            meta[name[len(PREFIX) :]] = _decoded(value)
    return ControlVector(str(fields.get(f"{ARCH}.model_hint", "")), rows, meta)


def check_fits(path: Path, vector: ControlVector, arch: str, n_embd: int, n_blocks: int) -> None:
    """ValueError, naming the file, when `vector` was made for another kind of model."""
    if vector.model_hint and vector.model_hint != arch:
        raise ValueError(
            f"{path}: this control vector is for a {vector.model_hint!r} model, "
            f"not this {arch!r} one"
        )
    if vector.n_embd != n_embd:
        raise ValueError(
            f"{path}: this control vector is {vector.n_embd} wide; this model's hidden "
            f"states are {n_embd} wide"
        )
    if len(vector.rows) > n_blocks:
        raise ValueError(
            f"{path}: this control vector steers block {len(vector.rows) - 1}; "
            f"this model has {n_blocks} blocks"
        )


def _value(f: Any) -> Any:
    import gguf

    kind = f.types[0] if f.types else None
    if kind == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if kind == gguf.GGUFValueType.ARRAY:
        return None
    return f.parts[f.data[0]][0].item() if f.data else None


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(JSON_MARK):
        return json.loads(value[len(JSON_MARK) :])
    return value
