"""Large WhatsApp exports, read in chunks so that memory stays bounded by the chunk, not the file.

`stream(source, options)` is None for what `whatsapp.parse` reads whole (zips, folders, UTF-16
files, anything up to `STREAM_BYTES`): one pass over one decoded text is the fastest way there.
A larger plain-text export becomes a `ChatStream`. A first pass reads only the header dates,
so that the day/month order comes from the whole file as `parse` decides it. Each later pass
yields the messages chunk by chunk. A chunk ends just before its last header; the rest is
carried into the next one, so a message is never cut in two.

Contract: the batches, joined, are the messages `whatsapp.parse` gives for the same file, with
one exception: a notice "sent" by someone who writes is told apart within the batch only.
Lines in `Skipped` entries are lines of the whole file.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from pathlib import Path

from convsim.core.chats.importers import whatsapp
from convsim.core.chats.importers.base import ImportOptions, Source, gc_paused
from convsim.core.chats.importers.whatsapp_dates import date_map
from convsim.core.chats.messages import ChatImportError, ChatStream, ParsedChat, ParsedMessage

# Files up to STREAM_BYTES are parsed whole (faster: one pass); larger ones stream in chunks.
# The batch a chunk makes costs about 12 times its size in memory (Python strings and
# message objects), and two are alive while one is stored and the next is read.
STREAM_BYTES = 16 << 20  # about 250,000 messages of a typical chat
CHUNK_BYTES = 4 << 20  # about 60,000
_TAIL = 1 << 16  # where the last header of a chunk is looked for first


def stream(source: Source, options: ImportOptions) -> ChatStream | None:
    """A stream over a large plain-text export, or None (then use `whatsapp.parse`)."""
    chunk = CHUNK_BYTES
    if source.is_zip or source.is_dir or source.path.stat().st_size <= STREAM_BYTES:
        return None
    if source.head(size=2) in (b"\xff\xfe", b"\xfe\xff"):
        return None
    path, where = source.path, source.name
    layout = whatsapp.layout_of(next(_texts(path, where, None, chunk))[0], where)
    days: list[str] = []
    for text, _, last, _ in _texts_with_lines(path, where, layout, chunk):
        days += [day for day, _ in groupby(whatsapp.split(text, layout, last)[1::4])]
    dmap, warning = date_map(days, layout.year_first, options, where)
    chat = ParsedChat(format=whatsapp.NAME, title=whatsapp.title_of([path.stem]), messages=[])
    chat.warnings += [warning] if warning else []

    size = max(path.stat().st_size, 1)

    def batches() -> Iterator[list[ParsedMessage]]:
        chat.skipped.clear()
        for text, line, last, read in _texts_with_lines(path, where, layout, chunk):
            with gc_paused():
                parts = whatsapp.split(text, layout, last)
                messages, skipped = whatsapp.messages_of(parts, text, layout, dmap, line)
            chat.skipped += skipped
            del parts, text  # the batch's strings live on in its messages only
            chat_stream.done = min(read / size, 1.0)
            yield messages
            del messages

    chat_stream = ChatStream(chat, batches)
    return chat_stream


def _texts_with_lines(
    path: Path, where: str, layout: whatsapp.Layout, chunk: int
) -> Iterator[tuple[str, int, bool, int]]:
    """(text, the file line its first line is, whether it ends the file, bytes of the file
    read up to its end) for each chunk."""
    line = 1
    texts = _texts(path, where, layout, chunk)
    current = next(texts, None)
    while current is not None:
        following = next(texts, None)
        text, read = current
        yield text, line, following is None, read
        line += text.count("\n")  # each text holds the newline before each of its lines
        current = following


def _texts(
    path: Path, where: str, layout: whatsapp.Layout | None, chunk: int
) -> Iterator[tuple[str, int]]:
    """The file's text in chunks of about `chunk` bytes, each starting with the newline before
    a header (the first with one put in front, as `whatsapp._read` does) and ending just before
    the next chunk's, with how many bytes of the file lie before that end (about). Without a
    layout, the first chunk only, as it comes."""
    regex = whatsapp.header_regex(layout) if layout else None
    carry, pending, lines = "\n", b"", 0
    with open(path, "rb") as f:
        data = f.read(chunk).removeprefix(b"\xef\xbb\xbf")
        while True:
            more = f.read(chunk)
            data, pending = pending + data, b""
            if more:  # keep the bytes after the last newline: they may cut a character
                cut = data.rfind(b"\n") + 1
                if cut or regex is not None:
                    data, pending = data[:cut], data[cut:]
                else:  # the layout from a first line longer than a chunk: its start will do
                    data = _whole_characters(data)
            text = carry + _decode(data.replace(b"\r\n", b"\n"), where, lines)
            lines += data.count(b"\n")
            if regex is None:
                yield text, len(data)
                return
            if more:
                start = _last_header(regex, text)
                text, carry = (text[:start], text[start:]) if start > 0 else ("", text)
            if text:
                yield text, f.tell() - len(more) - len(pending) - len(carry.encode()) * bool(more)
            if not more:
                return
            data = more


def _whole_characters(data: bytes) -> bytes:
    """`data` without the UTF-8 character its end may cut."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # a character's first byte: how many bytes it takes
            size = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= size else data[:-back]
    return data


def _last_header(regex: object, text: str) -> int:
    """Where the last header of `text` starts (its newline), or 0 when there is none but the
    first: then the chunk holds one unfinished message and must grow."""
    finditer = regex.finditer  # type: ignore[attr-defined]
    for start in (max(len(text) - _TAIL, 1), 1):
        found = [m.start() for m in finditer(text, start)]
        if found:
            return found[-1]
    return 0


def _decode(data: bytes, where: str, lines_before: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = lines_before + data.count(b"\n", 0, e.start) + 1
        raise ChatImportError(
            f"{where}: not UTF-8 text (invalid byte at line {line}); expected a chat export "
            "saved as UTF-8"
        ) from e
