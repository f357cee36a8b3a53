"""Every format's sniffer answers "not mine" for input it cannot even read, so detection moves on
to the next format and ends in one clear error instead of a stray exception."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import pytest

from convsim.core.chats.importers import FORMATS, detect, importer
from convsim.core.chats.importers.base import Source, sniffer
from convsim.core.chats.messages import ChatImportError

# One member name each format looks inside a zip for.
MEMBERS = ("result.json", "message_1.json", "chat.txt", "sms.xml", "chat.db", "chat.jsonl")


def damaged_zip(tmp_path: Path) -> Path:
    """A zip whose directory is intact but whose compressed members are garbage: listing works,
    reading any member fails."""
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name in MEMBERS:
            z.writestr(name, '{"name": "Sam", "messages": []}\n' * 200)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            data[start : start + info.compress_size] = b"\xff" * info.compress_size
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as z, pytest.raises((zlib.error, zipfile.BadZipFile)):
        z.read(MEMBERS[0])
    return path


@pytest.mark.parametrize("name", FORMATS)
def test_sniff_is_false_for_unreadable_members(tmp_path: Path, name: str) -> None:
    with Source(damaged_zip(tmp_path)) as source:
        assert importer(name).sniff(source) is False


@pytest.mark.parametrize("name", FORMATS)
def test_sniff_is_false_for_binary_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / "noise.json"
    path.write_bytes(bytes(range(256)) * 64)
    with Source(path) as source:
        assert importer(name).sniff(source) is False


def test_detect_names_the_archive_when_nothing_can_be_read(tmp_path: Path) -> None:
    path = damaged_zip(tmp_path)
    with Source(path) as source, pytest.raises(ChatImportError) as error:
        detect(source)
    assert str(path) in str(error.value) and "zip archive" in str(error.value)


def test_sniffer_turns_errors_into_false_and_keeps_the_docstring(tmp_path: Path) -> None:
    @sniffer
    def sniff(source: Source) -> bool:
        """Mine when the file says hello; fails on anything it cannot decode."""
        return source.head().decode("ascii").startswith("hello")

    good, bad = tmp_path / "a.txt", tmp_path / "b.txt"
    good.write_text("hello\n")
    bad.write_bytes(b"\xffhello\n")
    with Source(good) as source:
        assert sniff(source) is True
    with Source(bad) as source:
        assert sniff(source) is False
    assert sniff.__doc__ and sniff.__doc__.startswith("Mine when")
