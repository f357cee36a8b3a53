"""Control vectors on a llama.cpp context, and which cached tokens were computed under one.

llama.cpp adds a context's control vector (`llama_set_adapter_cvec`) to the output of every
block in its range, at every token it decodes from then on; tokens already in the KV cache keep
what they were computed with. convsim steers a *suffix* of each prompt (the reply, from its
speaker tag on), so the conversation before it is cached once, unsteered, and a slider change
costs only the reply's few tokens. `Steering` remembers the vector asked for, the one the
context holds, and the (vector version, first steered position) of the cache's steered suffix;
`keep` says how much of a cached prefix is still valid for a new (tokens, steer_from).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Vector:
    """A validated control vector: `data` (rows x n_embd float32), blocks `start`..`end`."""

    data: np.ndarray
    start: int
    end: int
    version: int


def check(
    data: Any, n_layers: int, n_embd: int, start: int, end: int | None, version: int
) -> Vector:
    """`data` as a Vector, or ValueError saying what is wrong with it."""
    import numpy as np

    end = n_layers - 1 if end is None else end
    array = np.ascontiguousarray(data, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != n_embd or not 0 < array.shape[0] <= n_layers:
        raise ValueError(
            f"control vector: expected (at most {n_layers}) x {n_embd} floats, "
            f"got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError("control vector: values must be finite")
    if not 1 <= start <= end < n_layers:
        raise ValueError(f"control vector: layers {start}..{end} must lie within 1..{n_layers - 1}")
    return Vector(array, start, end, version)


class Steering:
    """The control-vector state of one llama.cpp context (see the module docstring)."""

    def __init__(self, ctx: Any, n_embd: int) -> None:
        self._ctx = ctx
        self._n_embd = n_embd
        self.wanted: Vector | None = None  # what generation should use
        self._applied: int | None = None  # version the context holds (None: no vector)
        self.cached: tuple[int, int] | None = None  # (version, first position) steered in cache
        self.version = 0

    def want(self, vector: Vector | None) -> None:
        self.wanted = vector

    def forget_cache(self) -> None:
        self.cached = None

    def target(self, n_tokens: int, steer_from: int) -> tuple[int, int] | None:
        """(version, first steered position) for a sequence of `n_tokens`: None when nothing
        in it is steered."""
        if self.wanted is None or steer_from >= n_tokens:
            return None
        return (self.wanted.version, max(0, steer_from))

    def keep(self, common: int, target: tuple[int, int] | None) -> int:
        """How much of a cached prefix matching `common` tokens is valid under `target`: tokens
        at or after the first position steered in either the cache or the target must be
        evaluated again unless both were steered alike from the same position."""
        if self.cached == target:
            return common
        starts = [t[1] for t in (self.cached, target) if t is not None]
        return min([common, *starts])

    def apply(self, steered: bool) -> None:
        """Make the context add the wanted vector (`steered`) or nothing from now on."""
        import llama_cpp

        vector = self.wanted if steered else None
        version = None if vector is None else vector.version
        if version == self._applied:
            return
        if vector is None:
            code = llama_cpp.llama_set_adapter_cvec(self._ctx, None, 0, self._n_embd, -1, -1)
        else:
            ptr = vector.data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            code = llama_cpp.llama_set_adapter_cvec(
                self._ctx, ptr, vector.data.size, self._n_embd, vector.start, vector.end
            )
        if code != 0:
            raise ValueError(f"llama.cpp refused the control vector (error {code})")
        self._applied = version
