"""Small pieces every command-line module shares."""

from __future__ import annotations

import json
from typing import Any


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def workspace() -> Any:
    from convsim.core.workspace import Workspace

    return Workspace.open()


def print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def duration(seconds: float | None) -> str:
    """A time left, like 4m05s or 1h20m ("?" when unknown)."""
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
