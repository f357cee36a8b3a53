"""What llama.cpp can do on this machine, and how much of it convsim uses: threads, GPU layers
(both overridable by environment variables), whether models may use llama.cpp's Intel AMX path,
and the library's own description of itself."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from typing import Any

ENV_THREADS = "CONVSIM_THREADS"  # overrides the CPU threads llama.cpp uses
ENV_GPU_LAYERS = "CONVSIM_GPU_LAYERS"  # overrides how many layers go to the GPU (0 = none)
ENV_AMX = "CONVSIM_LLAMA_AMX"  # "1" lets models use llama.cpp's AMX buffers where it has them
AMX_MARK = "AMX_INT8 = 1"  # in llama.cpp's system info, when the build multiplies with AMX
_LOADING = threading.RLock()  # model loads that change llama-cpp-python's default parameters


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


@functools.cache
def amx_in_build() -> bool:
    """Whether this llama.cpp build multiplies with Intel AMX tiles: built with `-march=native`
    on a CPU that has them (Sapphire Rapids and later Xeons). Its AMX path crashes there with
    quantised models (a segmentation fault in `ggml_backend_amx_mul_mat` on the first decode,
    seen with llama-cpp-python 0.3.36 and Gemma 3 270M Q4_K_M; llama.cpp issue 20824)."""
    import llama_cpp

    return AMX_MARK.encode() in llama_cpp.llama_print_system_info()


def amx_asked_for() -> bool:
    """Whether $CONVSIM_LLAMA_AMX is 1: the user lets models use llama.cpp's AMX path."""
    return os.environ.get(ENV_AMX, "").strip() == "1"


def skip_amx() -> bool:
    """Whether models are loaded without llama.cpp's extra CPU buffer types (AMX, and the weight
    repacking that comes with them): on a build with AMX, unless `amx_asked_for()`."""
    return not amx_asked_for() and amx_in_build()


@contextlib.contextmanager
def model_params_without_amx() -> Iterator[None]:
    """Inside, `llama_cpp.Llama` loads a model without the extra CPU buffer types when
    `skip_amx()`: llama-cpp-python builds its model parameters from
    `llama_model_default_params` and has no argument for them, so that function is wrapped
    for the duration of the load (one load at a time)."""
    if not skip_amx():
        yield
        return
    import llama_cpp.llama_cpp as api

    with _LOADING:
        default = api.llama_model_default_params

        def without_extra() -> Any:
            params = default()
            params.use_extra_bufts = False
            return params

        api.llama_model_default_params = without_extra
        try:
            yield
        finally:
            api.llama_model_default_params = default


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
