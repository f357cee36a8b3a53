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
