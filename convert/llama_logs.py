"""Silencing llama.cpp's C-level logging.

llama.cpp logs through a process-wide callback; llama-cpp-python installs one at import that
prints to stderr, and `verbose=False` does not stop every line (e.g. gemma3's "using full-size
SWA cache", or one "cannot use buft CPU_REPACK" per tensor when a LoRA meets a quantised base).
Library code must not print, so wrap llama.cpp calls in `quiet_llama_logs()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator

# Re-entrant: a quiet block may call code that opens its own.
_swap_lock = threading.RLock()


@contextlib.contextmanager
def quiet_llama_logs() -> Iterator[None]:
    """Drop llama.cpp's log lines for the duration of the block (process-wide).

    llama-cpp-python installs a Python log callback at import; we swap in a no-op one and put
    its callback back afterwards.
    """
    import llama_cpp
    from llama_cpp import _logger

    @llama_cpp.llama_log_callback
    def _drop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        pass

    with _swap_lock:
        llama_cpp.llama_log_set(_drop, ctypes.c_void_p(0))
        try:
            yield
        finally:
            llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
