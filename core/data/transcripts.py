"""Saved conversations: JSON Lines of {"speaker", "text"}, one turn per line (`load` also reads
the `[Name] message` lines people write by hand).

The same files `convsim simulate --transcript` reads, so a conversation saved in the app can be
continued from a script and back. Writes go to a temporary file renamed into place, so a crash
never leaves half a transcript under the real name."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from convsim.core.data.turns import Turn, is_name, parse_line
from convsim.core.files import json_loads, read_text, write_jsonl
from convsim.core.locations import make_private_dir


class TranscriptError(ValueError):
    """A transcript file that cannot be read; the message names the file and line."""


def save(folder: Path, name: str, turns: Sequence[Turn], when: datetime | None = None) -> Path:
    """Write `turns` to `folder/<name>-<YYYYmmdd-HHMMSS>.jsonl` and return the path; a second
    save within the same second (another window, another command) gets `...-2.jsonl`, and so on:
    a save never replaces another."""
    make_private_dir(folder)
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "chat"
    n = 1
    while True:  # claim a free name first (O_EXCL), then write it whole in its place
        target = folder / (f"{safe}-{stamp}.jsonl" if n == 1 else f"{safe}-{stamp}-{n}.jsonl")
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            break
        except FileExistsError:
            n += 1
    try:
        return write_jsonl(target, ({"speaker": who, "text": text} for who, text in turns))
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def load(path: Path) -> list[Turn]:
    """The turns of a transcript file: JSON Lines {"speaker", "text"} (what `save` writes), or
    `[Name] message` lines, or a mix. A speaker is a name on one line and a text is text.
    Raises TranscriptError naming the file and line."""
    lines = read_text(path, TranscriptError).removeprefix("\ufeff").splitlines()
    turns = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            turns.append(_json_turn(f"{path}:{n}", line))
            continue
        turn = parse_line(line)
        if turn is None:
            raise TranscriptError(f"{path}:{n}: expected a line like '[Name] message'")
        turns.append(turn)
    return turns


def _json_turn(where: str, line: str) -> Turn:
    expected = 'expected a JSON object {"speaker": "Name", "text": "..."}'
    try:
        row = json_loads(line)
    except json.JSONDecodeError:
        raise TranscriptError(f"{where}: not JSON; {expected}") from None
    if not isinstance(row, dict) or not {"speaker", "text"} <= row.keys():
        raise TranscriptError(f"{where}: {expected}") from None
    speaker, text = row["speaker"], row["text"]
    if not is_name(speaker):
        raise TranscriptError(f"{where}: 'speaker' must be a name on one line")
    if not isinstance(text, str):
        raise TranscriptError(f"{where}: 'text' must be text, not {type(text).__name__}")
    return speaker.strip(), text


def saved(folder: Path) -> list[Path]:
    """Saved transcripts in `folder`, newest first (not empty files: a save claims its name
    with one before it writes)."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.jsonl") if p.is_file() and p.stat().st_size]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def mentioning(folder: Path, speakers: set[str], texts: set[str]) -> list[Path]:
    """Saved transcripts in `folder` with a turn by one of `speakers`, or a turn whose text is
    one of `texts` (what forgetting a person or a chat must remove too). Unreadable files are
    left to the user: they are not convsim's to judge."""
    found = []
    for path in saved(folder):
        try:
            turns = load(path)
        except TranscriptError:
            continue
        if any(speaker in speakers or text in texts for speaker, text in turns):
            found.append(path)
    return found
