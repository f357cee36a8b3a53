"""What llama.cpp can do on this machine, and how much of it convsim uses: threads, GPU layers
(both overridable by environment variables) and the library's own description of itself."""

from __future__ import annotations

import os
from typing import Any

ENV_THREADS = "CONVSIM_THREADS"  # overrides the CPU threads llama.cpp uses
ENV_GPU_LAYERS = "CONVSIM_GPU_LAYERS"  # overrides how many layers go to the GPU (0 = none)


def default_threads() -> int:
    """$CONVSIM_THREADS, else the CPU count (at most 8: more rarely helps token generation)."""
    return _env_int(ENV_THREADS) or max(1, min(8, os.cpu_count() or 1))


def default_gpu_layers() -> int:
    """$CONVSIM_GPU_LAYERS, else every layer (-1) when this llama.cpp build can offload to a
    GPU (CUDA, Metal, Vulkan...), else 0."""
    value = _env_int(ENV_GPU_LAYERS)
    if value is not None:
        return value
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name} must be a whole number, not {value!r}") from None


def library_info() -> dict[str, Any]:
    """llama-cpp-python's version, the llama.cpp library's own version, its system info (the CPU
    features it was built for) and whether it can offload to a GPU. Raises ImportError/OSError
    when the library does not load."""
    import llama_cpp

    system = llama_cpp.llama_print_system_info()
    library = llama_cpp.llama_version() if hasattr(llama_cpp, "llama_version") else b""
    return {
        "version": llama_cpp.__version__,
        "library": library.decode(errors="replace") if library else "unknown",
        "system_info": system.decode(errors="replace").strip(" |"),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    }
