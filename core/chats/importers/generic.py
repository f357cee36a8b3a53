"""Any chat as a table: CSV/TSV with a header row, or JSON Lines (one object per line).

Contract notes:
- Columns come from `options.columns` (keys timestamp, sender, text, optional kind), else the
  first header that matches, case-insensitively: timestamp/time/date, sender/author/from/name,
  text/message/content/body, kind. Separate "date" and "time" columns (and no "timestamp") are
  joined into one timestamp.
- Timestamps: ISO 8601 with "T" or a space, with or without seconds; a UTC offset is dropped and
  the wall clock kept. Plain numbers are epoch seconds or milliseconds, rendered in UTC.
- Kind column values must be one of the model's kinds; `system` rows have no sender.
- Rows that cannot be used become Skipped("line N", why); a mapped column the header lacks is a
  ChatImportError. One chat per file, titled with the file's stem; rows sorted by time (stable).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from convsim.core.chats.importers.base import ImportOptions, Source, json_loads, sniffer
from convsim.core.chats.messages import (
    KINDS,
    SYSTEM,
    TEXT,
    ChatImportError,
    ParsedChat,
    ParsedMessage,
    Skipped,
)

NAME = "generic"

_TABLE_SUFFIXES = (".csv", ".tsv")
_SUFFIXES = (*_TABLE_SUFFIXES, ".jsonl")
_GUESSES = {
    "timestamp": ("timestamp", "time", "date"),
    "sender": ("sender", "author", "from", "name"),
    "text": ("text", "message", "content", "body"),
    "kind": ("kind",),
}
_REQUIRED = ("timestamp", "sender", "text")
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?"
    r"\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@sniffer
def sniff(source: Source) -> bool:
    """A .csv/.tsv/.jsonl file whose header row (or first object) has a recognisable timestamp,
    sender and text column."""
    suffix = source.path.suffix.lower()
    if source.is_dir or source.is_zip or suffix not in _SUFFIXES:
        return False
    head = source.head()
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    text = head.decode("utf-16" if utf16 else "utf-8-sig", errors="replace")
    if suffix == ".jsonl" and not utf16 and "\n" not in text.strip():
        text = _first_line(source)  # a first object longer than the head
    fields = _first_object_keys(text) if suffix == ".jsonl" else _header(text, suffix)
    return all(_guess(fields or [], key) for key in _REQUIRED)


def _first_line(source: Source) -> str:
    """The first non-empty line of a file, however long."""
    with source.open() as f:
        for raw in f:
            if raw.strip():
                return raw.decode("utf-8-sig", errors="replace")
    return ""


def parse(source: Source, options: ImportOptions) -> list[ParsedChat]:
    """One ParsedChat per file (a folder or zip: per .csv/.tsv/.jsonl member)."""
    if not (source.is_dir or source.is_zip):
        return [_parse_file(source, None, options.columns)]
    members = [m for m in source.members() if PurePosixPath(m).suffix.lower() in _SUFFIXES]
    if not members:
        raise ChatImportError(f"{source.name}: no .csv, .tsv or .jsonl file inside")
    return [_parse_file(source, m, options.columns) for m in members]


@dataclass(frozen=True)
class _Columns:
    timestamp: tuple[str, ...]  # one column, or a date column and a time column
    sender: str
    text: str
    kind: str | None


def _parse_file(source: Source, member: str | None, mapping: dict[str, str]) -> ParsedChat:
    where = source.member_name(member)
    name = PurePosixPath(member) if member else PurePosixPath(source.path.name)
    text = source.read_text(member)
    if not text.strip():
        raise ChatImportError(
            f"{where}: empty file; expected a CSV with a header row or JSON Lines"
        )
    is_jsonl = name.suffix.lower() == ".jsonl" or (
        name.suffix.lower() not in _TABLE_SUFFIXES and text.lstrip().startswith("{")
    )
    rows = _jsonl_rows(text) if is_jsonl else _csv_rows(text, name.suffix.lower(), where)
    columns: _Columns | None = None
    found: list[ParsedMessage] = []
    skipped: list[Skipped] = []
    for line, fields, values in rows:
        if columns is None and fields:
            columns = _resolve(fields, mapping, where, line)
        if isinstance(values, Skipped):
            skipped.append(values)
        elif values is not None and columns is not None:
            result = _message(values, columns, f"line {line}")
            if isinstance(result, Skipped):
                skipped.append(result)
            else:
                found.append(result)
    found.sort(key=lambda m: m.timestamp)
    return ParsedChat(NAME, name.stem, found, skipped)


# (line number, the header or the object's keys, the values by column / why unusable / None
# for the header row itself)
_Row = tuple[int, list[str], dict[str, Any] | Skipped | None]


def _csv_rows(text: str, suffix: str, where: str) -> Iterator[_Row]:
    """The header, then the rows of a CSV/TSV file; the delimiter is the one the header row
    uses most (sniffing the whole sample trips over commas inside messages)."""
    # Windows line ends become "\n" inside quoted bodies too, like every other importer's bodies.
    text = text.replace("\r\n", "\n")
    delimiter = _delimiter(text.split("\n", 1)[0], suffix)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    last = 0
    try:
        header = [h.strip() for h in next(reader)]
        end = reader.line_num
        yield end, header, None
        for row in reader:
            line, end = end + 1, reader.line_num
            if not row or row == [""]:
                continue
            last = line
            if len(row) < len(header) or any(f.strip() for f in row[len(header) :]):
                # Surplus empty fields (a stray delimiter at the end) are ignored; surplus text
                # (a delimiter inside an unquoted message) would be cut off: the row is refused.
                why = f"{len(row)} fields where the header (line 1) has {len(header)}"
                yield line, header, Skipped(f"line {line}", why)
            else:
                yield line, header, dict(zip(header, row, strict=False))
    except csv.Error as e:
        raise ChatImportError(f"{where}: invalid CSV at line {reader.line_num} ({e})") from e
    if last and _ends_inside_quotes(text, last, delimiter):
        raise ChatImportError(
            f"{where}: the quoted field starting on line {last} is never closed; expected a "
            "complete CSV file (is it truncated?)"
        )


def _ends_inside_quotes(text: str, line: int, delimiter: str) -> bool:
    """Whether the record starting on `line` runs to the end of the file inside an open quote:
    the lenient reader would silently make the rest of the file one body."""
    tail = text.split("\n", line - 1)[-1]
    try:
        for _ in csv.reader(io.StringIO(tail, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False


def _jsonl_rows(text: str) -> Iterator[_Row]:
    """Objects of a JSON Lines file. Split on "\\n" only: JSON strings may hold U+2028."""
    for line, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            value = json_loads(raw)
        except json.JSONDecodeError as e:
            yield line, [], Skipped(f"line {line}", f"invalid JSON ({e.msg}, column {e.colno})")
            continue
        if not isinstance(value, dict):
            yield line, [], Skipped(f"line {line}", "expected a JSON object")
            continue
        yield line, list(value), value


def _delimiter(header_line: str, suffix: str) -> str:
    if suffix == ".tsv":
        return "\t"
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])  # a tie keeps the comma
    return best if counts[best] else ","


def _header(text: str, suffix: str) -> list[str] | None:
    first = text.split("\n", 1)[0].rstrip("\r")
    row = next(csv.reader([first], delimiter=_delimiter(first, suffix)), None)
    return [h.strip() for h in row] if row else None


def _first_object_keys(text: str) -> list[str] | None:
    for raw in text.split("\n"):
        if raw.strip():
            value = json_loads(raw)
            return list(value) if isinstance(value, dict) else None
    return None


def _find(fields: list[str], wanted: str) -> str | None:
    if wanted in fields:
        return wanted
    return next((f for f in fields if f.strip().lower() == wanted.strip().lower()), None)


def _guess(fields: list[str], key: str) -> tuple[str, ...] | None:
    if key == "timestamp" and not _find(fields, "timestamp"):
        date, time = _find(fields, "date"), _find(fields, "time")
        if date and time:
            return (date, time)
    return next(((f,) for g in _GUESSES[key] if (f := _find(fields, g))), None)


def _resolve(fields: list[str], mapping: dict[str, str], where: str, line: int) -> _Columns:
    """Which column holds what, from the mapping or the guesses; fails naming what's missing."""
    found: dict[str, tuple[str, ...] | None] = {}
    shown = ", ".join(repr(f) for f in fields)
    for key in (*_REQUIRED, "kind"):
        if key in mapping:
            column = _find(fields, mapping[key])
            if column is None:
                raise ChatImportError(
                    f"{where}: line {line} has no column {mapping[key]!r} (mapped to {key}); "
                    f"expected it among {shown}"
                )
            found[key] = (column,)
        else:
            found[key] = _guess(fields, key)
            if found[key] is None and key != "kind":
                names = "/".join(_GUESSES[key])
                raise ChatImportError(
                    f"{where}: line {line} has no {key} column (looked for {names} among "
                    f"{shown}); expected one of those or a column mapping for {key}"
                )
    kind = found["kind"]
    return _Columns(
        timestamp=found["timestamp"] or (),
        sender=(found["sender"] or ("",))[0],
        text=(found["text"] or ("",))[0],
        kind=kind[0] if kind else None,
    )


def _message(values: dict[str, Any], columns: _Columns, pos: str) -> ParsedMessage | Skipped:
    """One row as a message, or why it cannot be one."""
    for column in (*columns.timestamp, columns.sender, columns.text):
        if column not in values:
            return Skipped(pos, f"no {column!r} field")
    raw_time = " ".join(_cell(values[c]) for c in columns.timestamp)
    stamp = parse_timestamp(
        values[columns.timestamp[0]] if len(columns.timestamp) == 1 else raw_time
    )
    if stamp is None:
        return Skipped(pos, f"timestamp {raw_time!r} is not ISO 8601 or epoch seconds/ms")
    kind = _cell(values.get(columns.kind)).strip().lower() if columns.kind else ""
    kind = kind or TEXT
    if kind not in KINDS:
        return Skipped(pos, f"kind {kind!r} is not one of {', '.join(KINDS)}")
    text, sender = values[columns.text], values[columns.sender]
    if isinstance(text, (dict, list, bool)):
        return Skipped(pos, f"{columns.text!r} is not text")
    if isinstance(sender, (dict, list, bool)):
        return Skipped(pos, f"{columns.sender!r} is not a name")
    sender = _cell(sender).strip()
    text = _cell(text)
    if kind != SYSTEM and not sender:
        return Skipped(pos, "no sender")
    if kind == TEXT and not text.strip():
        return Skipped(pos, "empty text")
    return ParsedMessage(stamp, None if kind == SYSTEM else sender, text, kind)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def parse_timestamp(value: Any) -> str | None:
    """ISO 8601 (wall clock kept, offset dropped) or epoch seconds/milliseconds (UTC), as
    `YYYY-MM-DDTHH:MM:SS`; None when the value is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    text = str(value).strip()
    match = _ISO.fullmatch(text)
    if match:
        try:
            year, month, day, hour, minute, second = (int(p) for p in match.groups("0"))
            return datetime(year, month, day, hour, minute, second).isoformat()
        except ValueError:
            return None
    return _from_epoch(float(text)) if _NUMBER.fullmatch(text) else None


def _from_epoch(number: float) -> str | None:
    # Seconds from 1973 to 5138, else milliseconds from 1973 to 5138: anything else is not a
    # send time (and a bare "2020" must not become 1970).
    if 1e11 <= number < 1e14:
        number /= 1000
    if not 1e8 <= number < 1e11:
        return None
    moment = datetime.fromtimestamp(int(number), timezone.utc).replace(tzinfo=None)
    return moment.isoformat()
