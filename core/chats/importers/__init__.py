"""Chat-export importers: bytes in, `ParsedChat`s and a list of skipped records out.

Public API: `parse_export(path, format=None, options=None)`, `stream_export(...)` for exports
too large to hold, `detect(source)`, `FORMATS`.
Contract: pure (nothing written, nothing printed); input that is not a usable export raises
`ChatImportError` naming the file and place. Each format lives in its own module (see `base.py`
for what every module provides); a new format is a new module named in `FORMATS`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from convsim.core.chats.importers.base import AmbiguousDateOrder, ImportOptions, Source
from convsim.core.chats.messages import ChatImportError, ChatStream, ParsedChat

# Order matters for detection: the most specific sniffers first, the generic one last.
FORMATS = ("imessage", "sms", "telegram", "discord", "messenger", "whatsapp", "signal", "generic")

__all__ = [
    "FORMATS",
    "AmbiguousDateOrder",
    "ImportOptions",
    "Source",
    "detect",
    "importer",
    "parse_export",
    "stream_export",
]


def importer(name: str) -> ModuleType:
    if name not in FORMATS:
        raise ChatImportError(f"unknown format {name!r}; expected one of {', '.join(FORMATS)}")
    return importlib.import_module(f"convsim.core.chats.importers.{name}")


def detect(source: Source) -> str:
    """The name of the first format whose sniffer accepts the source."""
    for name in FORMATS:
        if importer(name).sniff(source):
            return name
    if source.is_dir:
        what = "a folder with no chat export in it"
    elif source.is_zip:
        what = "a zip archive with no chat export in it"
    elif not source.head().strip():
        what = "an empty file"
    elif source.head().lstrip()[:1] in (b"{", b"["):
        # Broken JSON is the most common damaged export (a cut-off download): say where it
        # breaks rather than only that no format matched.
        source.read_json()
        what = "JSON, but not in the shape of any chat export this version can read"
    else:
        what = "not a chat export this version can read"
    raise ChatImportError(
        f"{source.name}: {what}; expected an export from one of: {', '.join(FORMATS)}"
    )


def stream_export(
    path: Path | str, format: str | None = None, options: ImportOptions | None = None
) -> ChatStream | None:
    """A `ChatStream` when the export is too large to parse whole and its format can stream
    (a big WhatsApp text file); None means `parse_export` it."""
    with Source(Path(path)) as source:
        name = format or detect(source)
        streamer = getattr(importer(name), "stream", None)
        return streamer(source, options or ImportOptions()) if streamer else None


def parse_export(
    path: Path | str, format: str | None = None, options: ImportOptions | None = None
) -> list[ParsedChat]:
    """Parse an export file, folder or zip. Raises `ChatImportError` for unusable input."""
    options = options or ImportOptions()
    with Source(Path(path)) as source:
        name = format or detect(source)
        chats = importer(name).parse(source, options)
    if not chats or not any(c.messages for c in chats):
        skipped = [s for c in chats for s in c.skipped]
        why = "; ".join(f"{s.position}: {s.reason}" for s in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        raise ChatImportError(
            f"{path}: no messages found in this {name} export"
            + (f"; every record was skipped: {why}{more}" if skipped else "")
        )
    return chats
