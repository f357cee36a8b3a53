"""What every importer is given and must provide.

An importer is a module with three names:

- ``NAME``: the format name users pass to ``--format`` (``"whatsapp"``...).
- ``sniff(source) -> bool``: does this source look like my format? Decided from content
  (``source.head()``, member names), never from the file name alone. Must be cheap, and never
  raise: wrap it in ``@sniffer``.
- ``parse(source, options) -> list[ParsedChat]``: read everything. Raise ``ChatImportError``
  naming ``source.name`` and the position for input it cannot use at all; record recoverable
  problems as ``Skipped`` entries instead. Pure: no printing, no store access.
"""

from __future__ import annotations

import functools
import gc
import io
import json
import locale
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from convsim.core.chats.messages import ChatImportError
from convsim.core.files import json_loads

HEAD_BYTES = 64 * 1024
# What reading a damaged zip raises: bad CRC or deflate data, cut short, odd version or flags,
# an offset before the start of the file, a name that is not UTF-8.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    OSError,
    UnicodeDecodeError,
)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collections triggered while hundreds of thousands of fresh objects are made (messages,
    row tuples) would walk them again and again; parsing and storing make no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def sniffer(looks_like: Callable[[Source], bool]) -> Callable[[Source], bool]:
    """An importer's ``sniff``: any error while looking (unreadable, truncated, not this format
    at all) means "not mine", so that detection can go on to the next format."""

    @functools.wraps(looks_like)
    def sniff(source: Source) -> bool:
        try:
            return bool(looks_like(source))
        except Exception:
            return False

    return sniff


@dataclass
class ImportOptions:
    """Choices the user can make about an import."""

    # WhatsApp day/month order when the file itself can't tell: "dmy", "mdy" or None (infer/ask).
    date_order: str | None = None
    # Generic CSV/JSONL: which column holds what. Keys: timestamp, sender, text, kind (optional).
    columns: dict[str, str] = field(default_factory=dict)
    # Name of the exporting user, for formats that only say "me" (iMessage, SMS).
    me_name: str = "Me"
    # When the file can't tell and `date_order` is None: True reads it in the order of the
    # system's locale, with a warning in the report (the app, --json runs); False raises.
    locale_fallback: bool = False


# Territories whose locales write the month first (en_US, fil_PH...); everywhere else the
# day comes first, also when no locale is set.
_MONTH_FIRST = {"US", "PH", "PR", "GU", "AS", "MP", "VI", "UM", "FM", "MH", "PW"}


def system_date_order() -> tuple[str, str]:
    """("dmy" or "mdy", the locale it was read from) for this system: LC_ALL, LC_TIME or LANG,
    else the locale Python started with."""
    name = next(
        (os.environ[k] for k in ("LC_ALL", "LC_TIME", "LANG") if os.environ.get(k)),
        locale.getlocale()[0] or "",
    )
    territory = name.split(".")[0].split("@")[0].partition("_")[2].upper()
    return ("mdy" if territory in _MONTH_FIRST else "dmy"), name or "none set"


def parse_json(text: str, where: str) -> Any:
    """Parse JSON, or fail naming line and column."""
    try:
        return json_loads(text)
    except json.JSONDecodeError as e:
        raise ChatImportError(
            f"{where}: invalid JSON at line {e.lineno}, column {e.colno} ({e.msg})"
        ) from e


def valid_timestamp(stamp: str) -> bool:
    """Whether an ISO 8601 `YYYY-MM-DDTHH:MM:SS` is a real date and time (no 31 February)."""
    try:
        datetime.fromisoformat(stamp)
    except ValueError:
        return False
    return True


def damaged_member(where: str, error: Exception) -> ChatImportError:
    """The error for a zip member that cannot be read (`error`: what zipfile or zlib raised)."""
    return ChatImportError(f"{where}: damaged zip member ({error}); expected an intact archive")


class AmbiguousDateOrder(ChatImportError):
    """Every date in the file reads correctly as both day/month and month/day."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path}: every date reads both as day/month and month/day; "
            "the day/month order must be given (dmy or mdy)"
        )
        self.path = path


class Source:
    """A file, a folder or a zip archive, read lazily. Members are addressed by relative POSIX
    path; for a plain file the only member is its own name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._zip: zipfile.ZipFile | None = None
        if not path.exists():
            raise ChatImportError(f"{path}: no such file or folder")
        if not (path.is_file() or path.is_dir()):  # read once, it would be gone when parsed
            raise ChatImportError(
                f"{path}: not a file (a pipe or a device); save the export to a file and "
                "import that"
            )
        if path.is_file() and zipfile.is_zipfile(path):
            try:
                self._zip = zipfile.ZipFile(path)
            except ZIP_ERRORS as e:
                raise ChatImportError(f"{path}: damaged zip archive ({e})") from e
        elif path.is_file() and self.head()[:4] == b"PK\x03\x04":
            raise ChatImportError(
                f"{path}: a damaged or incomplete zip archive (its end is missing: a download "
                "or copy cut short?); expected the whole .zip the app exported"
            )

    @property
    def is_dir(self) -> bool:
        return self.path.is_dir()

    @property
    def is_zip(self) -> bool:
        return self._zip is not None

    def members(self) -> list[str]:
        """Relative paths of the files inside (the file's own name for a plain file)."""
        if self._zip is not None:
            return [i.filename for i in self._zip.infolist() if not i.is_dir()]
        if self.path.is_dir():
            return sorted(
                p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
            )
        return [self.path.name]

    def member_name(self, member: str | None) -> str:
        """How to name a member (None: the source itself) in an error message."""
        if member is None or (self._zip is None and not self.path.is_dir()):
            return self.name
        return f"{self.name}:{member}" if self._zip is not None else str(self.path / member)

    def member_path(self, member: str | None) -> PurePosixPath:
        """A member's path inside the source (None: the source's own path), for titles."""
        return PurePosixPath(member) if member else PurePosixPath(self.path.as_posix())

    def read_bytes(self, member: str | None = None) -> bytes:
        if self._zip is not None:
            if member is None:
                raise ChatImportError(f"{self.name}: a zip archive, not a single file")
            try:
                return self._zip.read(member)
            except ZIP_ERRORS as e:
                raise damaged_member(self.member_name(member), e) from e
        if self.path.is_dir():
            if member is None:
                raise ChatImportError(f"{self.name}: a folder, not a chat export file")
            return (self.path / member).read_bytes()
        return self.path.read_bytes()

    def open(self, member: str | None = None) -> io.BufferedIOBase:
        """A binary stream, for formats that must be parsed without reading everything."""
        if self._zip is not None and member is not None:
            try:
                return self._zip.open(member)  # type: ignore[return-value]
            except ZIP_ERRORS as e:
                raise damaged_member(self.member_name(member), e) from e
        if self.path.is_dir() and member is not None:
            return open(self.path / member, "rb")
        if self._zip is None and self.path.is_file():
            return open(self.path, "rb")
        raise ChatImportError(f"{self.name}: cannot open {member or 'it'} as a file")

    def matching(
        self,
        looks_right: Callable[[bytes], object],
        suffixes: tuple[str, ...],
        *,
        limit: int = 200,
        first: str | None = None,
    ) -> list[str | None]:
        """The files whose first bytes `looks_right` accepts: `[None]` (the file itself) or `[]`
        for a plain file; for a folder or zip, member names ending in `suffixes` (any case),
        sorted, with members named `first` ahead, and at most `limit` of them looked at."""
        if not (self.is_dir or self.is_zip):
            return [None] if looks_right(self.head()) else []
        names = sorted(
            (m for m in self.members() if m.lower().endswith(suffixes)),
            key=lambda m: (PurePosixPath(m).name != first, m),
        )
        return [m for m in names[:limit] if looks_right(self.head(m))]

    def head(self, member: str | None = None, size: int = HEAD_BYTES) -> bytes:
        """The first `size` bytes of a member (or of the file), for sniffing."""
        if self._zip is None and self.path.is_dir() and member is None:
            return b""
        try:
            with self.open(member) as f:
                return f.read(size)
        except (OSError, KeyError, ChatImportError, *ZIP_ERRORS):
            return b""

    def read_text(self, member: str | None = None) -> str:
        """Decode UTF-8 (a BOM is dropped; UTF-16 with a BOM is accepted), or fail naming the
        byte where decoding broke."""
        data = self.read_bytes(member)
        where = self.member_name(member)
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            try:
                return data.decode("utf-16")
            except UnicodeDecodeError as e:
                raise ChatImportError(f"{where}: invalid UTF-16 at byte {e.start}") from e
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise ChatImportError(
                f"{where}: not UTF-8 text (invalid byte at line {line}, byte {e.start}); "
                "expected a chat export saved as UTF-8"
            ) from e

    def read_json(self, member: str | None = None) -> Any:
        """Parse JSON, or fail naming line and column."""
        text = self.read_text(member)
        where = self.member_name(member)
        if not text.strip():
            raise ChatImportError(f"{where}: empty file; expected a JSON chat export")
        return parse_json(text, where)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
