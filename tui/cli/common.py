"""Small pieces every command-line module shares."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


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
