"""A lean GGUF (v2/v3, little-endian) reader and a streaming writer that copies metadata verbatim.

Why not only `gguf.GGUFReader`: it builds a numpy view per array element, so opening the default
base (262,144 vocab strings) takes ~10 s on our 2-core machine; this reader walks the same file
in well under a second because it skips big string arrays unless asked for them. It also keeps
each key's raw bytes, so a merged model can copy the tokenizer and every other key byte-for-byte.

Contract:
- `read_gguf(path)` parses the header, every key and every tensor info; tensor data stays on
  disk (numpy memmap views on request). Numeric arrays are always decoded (zero-copy); string
  arrays longer than `max_strings` are left undecoded (`value is None`, `count` is set).
- `write_gguf(path, kvs, tensors)` writes a GGUF v3 file: raw KV records as given, tensor infos,
  then each tensor's bytes produced lazily, in order, with gguf's alignment rules.
- Anything that isn't a readable GGUF raises ValueError naming the file.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
    Keys,
)

GGML_MAX_DIMS = 4  # ggml's limit: a tensor with more is a damaged header

# Fixed-size value types: struct format and numpy dtype (little-endian).
_SCALAR = {
    GGUFValueType.UINT8: ("<B", np.uint8),
    GGUFValueType.INT8: ("<b", np.int8),
    GGUFValueType.UINT16: ("<H", np.uint16),
    GGUFValueType.INT16: ("<h", np.int16),
    GGUFValueType.UINT32: ("<I", np.uint32),
    GGUFValueType.INT32: ("<i", np.int32),
    GGUFValueType.FLOAT32: ("<f", np.float32),
    GGUFValueType.BOOL: ("<?", np.bool_),
    GGUFValueType.UINT64: ("<Q", np.uint64),
    GGUFValueType.INT64: ("<q", np.int64),
    GGUFValueType.FLOAT64: ("<d", np.float64),
}


@dataclass
class KV:
    """One metadata key. `record` is its bytes after the key name (type tag + value)."""

    type: GGUFValueType
    value: Any  # python scalar/str, numpy array, list[str]; None for an undecoded string array
    record: bytes
    sub_type: GGUFValueType | None = None  # element type of an array
    count: int = 1  # element count of an array


@dataclass
class TensorInfo:
    """A tensor's header entry. `shape` is in GGUF/ggml order (ne0 = row length first)."""

    name: str
    shape: tuple[int, ...]
    type: GGMLQuantizationType
    offset: int  # absolute byte offset of the data in the file
    nbytes: int

    @property
    def rows_cols(self) -> tuple[int, int]:
        """(rows, row length) of a 2-D tensor in numpy order, e.g. (out, in) for a weight."""
        if len(self.shape) != 2:
            raise ValueError(f"{self.name} is not 2-D: {self.shape}")
        return self.shape[1], self.shape[0]


@dataclass
class GGUFFile:
    path: Path
    version: int
    kv: dict[str, KV]
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    alignment: int = GGUF_DEFAULT_ALIGNMENT

    def get(self, key: str, default: Any = None) -> Any:
        item = self.kv.get(key)
        return default if item is None else item.value

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 memmap shaped (rows, bytes per row)."""
        info = self.tensors[name]
        rows = int(np.prod(info.shape[1:], dtype=np.int64)) if len(info.shape) > 1 else 1
        data = np.memmap(
            self.path, dtype=np.uint8, mode="r", offset=info.offset, shape=(info.nbytes,)
        )
        return data.reshape(rows, info.nbytes // rows)

    def array(self, name: str) -> np.ndarray:
        """The tensor as float32 in numpy order (rows, cols), dequantised if needed."""
        from gguf.quants import dequantize

        info = self.tensors[name]
        values = dequantize(self.raw(name), info.type)
        return np.asarray(values, dtype=np.float32).reshape(tuple(reversed(info.shape)))


class _Cursor:
    def __init__(self, buf: Any, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise ValueError(f"{self.path}: truncated GGUF file")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, decode: bool = True) -> str | None:
        n = self.unpack("<Q")
        if self.pos + n > len(self.buf):
            raise ValueError(f"{self.path}: truncated GGUF string")
        start, self.pos = self.pos, self.pos + n
        return (
            bytes(self.buf[start : self.pos]).decode("utf-8", errors="replace") if decode else None
        )

    def value(
        self, vtype: GGUFValueType, max_strings: int
    ) -> tuple[Any, GGUFValueType | None, int]:
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype][0]), None, 1
        if vtype == GGUFValueType.STRING:
            return self.string(), None, 1
        if vtype != GGUFValueType.ARRAY:
            raise ValueError(f"{self.path}: unknown GGUF value type {int(vtype)}")
        sub = GGUFValueType(self.unpack("<I"))
        count = self.unpack("<Q")
        if sub in _SCALAR:
            dtype = np.dtype(_SCALAR[sub][1]).newbyteorder("<")
            end = self.pos + count * dtype.itemsize
            if end > len(self.buf):
                raise ValueError(f"{self.path}: truncated GGUF array")
            arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
            self.pos = end
            return arr, sub, count
        if sub == GGUFValueType.STRING:
            decode = count <= max_strings
            items = [self.string(decode) for _ in range(count)]
            return (items if decode else None), sub, count
        # Arrays of arrays: walk them, keep nothing.
        for _ in range(count):
            self.value(sub, 0)
        return None, sub, count


def read_gguf(path: Path | str, *, max_strings: int = 4096) -> GGUFFile:
    """Parse a GGUF file's header, metadata and tensor infos (not the tensor data)."""
    path = Path(path)
    with path.open("rb") as fh:
        try:
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # empty file
            raise ValueError(f"{path}: not a GGUF file (empty)") from exc
    try:
        return _parse(buf, path, max_strings)
    except (struct.error, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"{path}: corrupt GGUF file ({exc})") from exc
    except ValueError as exc:  # an unknown value or tensor type: a damaged header
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: corrupt GGUF file ({exc})") from exc
    finally:
        buf.close()


def _parse(buf: Any, path: Path, max_strings: int) -> GGUFFile:
    cur = _Cursor(buf, path)
    if len(buf) < 24 or cur.unpack("<I") != GGUF_MAGIC:
        raise ValueError(f"{path}: not a GGUF file (bad magic)")
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise ValueError(f"{path}: unsupported GGUF version {version} (big-endian or too new?)")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    kvs: dict[str, KV] = {}
    for _ in range(n_kv):
        key = cur.string()
        assert key is not None
        start = cur.pos
        vtype = GGUFValueType(cur.unpack("<I"))
        value, sub, count = cur.value(vtype, max_strings)
        kvs[key] = KV(vtype, value, bytes(buf[start : cur.pos]), sub, count)
    alignment_kv = kvs.get(Keys.General.ALIGNMENT)
    alignment = int(alignment_kv.value) if alignment_kv else GGUF_DEFAULT_ALIGNMENT
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        assert name is not None
        n_dims = cur.unpack("<I")
        if not 1 <= n_dims <= GGML_MAX_DIMS:
            raise ValueError(f"{path}: tensor {name} has {n_dims} dimensions (corrupt file?)")
        shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
        ttype = GGMLQuantizationType(cur.unpack("<I"))
        infos.append((name, shape, ttype, cur.unpack("<Q")))
    data_start = _pad(cur.pos, alignment)
    tensors = {}
    for name, shape, ttype, rel in infos:
        block, type_size = GGML_QUANT_SIZES[ttype]
        nbytes = math.prod(shape) // block * type_size  # Python ints: a huge shape cannot wrap
        if data_start + rel + nbytes > len(buf):
            raise ValueError(f"{path}: tensor {name} runs past the end of the file")
        tensors[name] = TensorInfo(name, shape, ttype, data_start + rel, nbytes)
    return GGUFFile(path, version, kvs, tensors, alignment)


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _gguf_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def encode_kv(value: Any, vtype: GGUFValueType) -> bytes:
    """The record (type tag + value) for a scalar or string key."""
    if vtype == GGUFValueType.STRING:
        return struct.pack("<I", vtype) + _gguf_string(str(value))
    if vtype in _SCALAR:
        return struct.pack("<I", vtype) + struct.pack(_SCALAR[vtype][0], value)
    raise ValueError(f"encode_kv does not write {vtype.name} values")


@dataclass
class TensorOut:
    """A tensor to write: header fields plus a callable producing exactly `nbytes` bytes."""

    name: str
    shape: tuple[int, ...]  # GGUF/ggml order
    type: GGMLQuantizationType
    nbytes: int
    data: Callable[[], np.ndarray]


def write_gguf(
    path: Path,
    kvs: Iterable[tuple[str, bytes]],
    tensors: list[TensorOut],
    *,
    alignment: int = GGUF_DEFAULT_ALIGNMENT,
    on_tensor: Callable[[int, int, str], None] | None = None,
) -> None:
    """Write a GGUF v3 file. `kvs` are (key, record) pairs as in `KV.record` / `encode_kv`.

    Tensor data is produced one tensor at a time, so memory stays at one tensor.
    `on_tensor(index, total, name)` is called before each tensor's data is produced.
    """
    kv_list = list(kvs)
    with Path(path).open("wb") as out:
        out.write(struct.pack("<IIQQ", GGUF_MAGIC, 3, len(tensors), len(kv_list)))
        for key, record in kv_list:
            out.write(_gguf_string(key) + record)
        offset = 0
        for t in tensors:
            out.write(_gguf_string(t.name) + struct.pack("<I", len(t.shape)))
            out.write(struct.pack(f"<{len(t.shape)}Q", *t.shape))
            out.write(struct.pack("<IQ", int(t.type), offset))
            offset = _pad(offset + t.nbytes, alignment)
        out.write(b"\0" * (_pad(out.tell(), alignment) - out.tell()))
        for i, t in enumerate(tensors):
            if on_tensor is not None:
                on_tensor(i, len(tensors), t.name)
            data = np.ascontiguousarray(t.data())
            if data.nbytes != t.nbytes:
                raise ValueError(f"{t.name}: produced {data.nbytes} bytes, expected {t.nbytes}")
            out.write(data.data.cast("B"))
            out.write(b"\0" * (_pad(t.nbytes, alignment) - t.nbytes))
