"""Small pieces every command-line module shares."""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import json
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import PurePath
from types import FrameType
from typing import Any


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def ctrl_c_sets(event: threading.Event) -> contextlib.AbstractContextManager[None]:
    """While inside, Ctrl-C (SIGINT) sets `event` instead of raising KeyboardInterrupt.

    A handler that only sets a flag keeps Ctrl-C from raising at an arbitrary point of the
    generation (KeyboardInterrupt in the middle of llama-cpp-python's bookkeeping, or in a
    `Thread.join` -- which in Python 3.11 marks a still-running thread as stopped).
    """
    return _sigint_handled_by(lambda signum, frame: event.set())


def ctrl_c_outside_llama() -> contextlib.AbstractContextManager[None]:
    """While inside, Ctrl-C raises KeyboardInterrupt anywhere but in a llama.cpp log callback.
    llama.cpp calls back into Python for each log line (while a model loads, a GGUF is
    quantised...), and a KeyboardInterrupt raised in such a ctypes callback is printed and
    dropped, so the command would carry on. Caught there, the signal is sent again a moment
    later, until it lands outside one. With Ctrl-C ignored (a background job) nothing
    changes."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return contextlib.nullcontext()
    return _sigint_handled_by(_interrupt)


@contextlib.contextmanager
def _sigint_handled_by(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """`handler` handles SIGINT while inside. Python runs signal handlers in the main thread
    only: called from another thread, this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if frame is not None and _in_log_callback(frame.f_code.co_filename):
        # Sent again from another thread a moment later: sent from here, it would be handled
        # at once, in this very handler.
        again = threading.Timer(0.02, _send_again, (signal.Signals(signum),))
        again.daemon = True
        again.start()
        return
    raise KeyboardInterrupt


def _send_again(signum: signal.Signals) -> None:
    """A real signal where there is one, so that a main thread asleep or waiting wakes."""
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident or 0, signum)
    else:
        _thread.interrupt_main(signum)


def _in_log_callback(filename: str) -> bool:
    """The code of a llama.cpp log callback: llama-cpp-python's, or convsim's own."""
    parts = PurePath(filename).parts
    return parts[-2:] in (("llama_cpp", "_logger.py"), ("convert", "llama_logs.py"))


def workspace() -> Any:
    from convsim.core.workspace import Workspace

    return Workspace.open()


def print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def record_json(
    record: Any, rename: dict[str, str] | None = None, omit: tuple[str, ...] = (), **values: Any
) -> dict[str, Any]:
    """A store record (dataclass or named tuple) as the JSON object a command prints: fields in
    order, some renamed (`{"id": "chat_id"}`), some left out, some given other `values`."""
    fields = record._asdict() if hasattr(record, "_asdict") else dataclasses.asdict(record)
    fields.update(values)
    rename = rename or {}
    return {rename.get(k, k): v for k, v in fields.items() if k not in omit}


def clip(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def duration(seconds: float | None) -> str:
    """A time left, like 4m05s or 1h20m ("?" when unknown)."""
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
