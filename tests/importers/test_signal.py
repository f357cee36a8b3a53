"""Signal: the plain-text form, signal-export (data.json / chat.md) and sigtop JSON."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from convsim.core.chats.importers import ImportOptions, Source, parse_export, signal
from convsim.core.chats.messages import (
    CALL,
    DELETED,
    MEDIA,
    STICKER,
    SYSTEM,
    TEXT,
    ChatImportError,
    ParsedChat,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "signal"
JANE_SIGTOP = FIXTURES / "sigtop" / "Jane Doe (+15551234567).json"


def parse(path: Path, options: ImportOptions | None = None) -> list[ParsedChat]:
    with Source(path) as source:
        return signal.parse(source, options or ImportOptions())


def sniff(path: Path) -> bool:
    with Source(path) as source:
        return signal.sniff(source)


def rows(chat: ParsedChat) -> list[tuple]:
    return [(m.timestamp, m.sender, m.text, m.kind) for m in chat.messages]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_text_form() -> None:
    (chat,) = parse(FIXTURES / "text_export.txt")
    assert (chat.format, chat.title, chat.source_key) == ("signal", "text_export", None)
    assert rows(chat) == [
        ("2019-12-24T12:23:00", "Jane Doe", "Hello John! Merry Christmas 🎄", TEXT),
        (
            "2019-12-24T12:25:00",
            "John Doe",
            "Thanks Jane!\nSame to you.\n\nSay hi to 👨\u200d👩\u200d👧\u200d👦 for me",
            TEXT,
        ),
        ("2019-12-24T12:26:00", "Jane Doe", "will do: promise", TEXT),
        # Only signal-export's chat.md marks calls this way; in plain text it is just text.
        ("2019-12-24T12:30:00", "John Doe", "Missed voice call", TEXT),
    ]
    assert [(s.position, s.reason) for s in chat.skipped] == [("line 8", "empty message")]


def test_text_before_first_header_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "chat.txt", "exported by hand\n\n[2020-01-17, 21:49] A: hi\n")
    (chat,) = parse(path)
    assert rows(chat) == [("2020-01-17T21:49:00", "A", "hi", TEXT)]
    assert [(s.position, s.reason) for s in chat.skipped] == [
        ("line 1", "text before the first message")
    ]


def test_signal_export_folder_reads_data_json_not_chat_md() -> None:
    (chat,) = parse(FIXTURES / "signal-export", ImportOptions(me_name="John"))
    assert (chat.title, chat.me) == ("JaneDoe", "John")
    assert rows(chat) == [
        ("2023-05-01T14:03:12", "Jane Doe", "are you around later?", TEXT),
        ("2023-05-01T14:05:00", "John", "yes!\nafter 6", TEXT),
        ("2023-05-01T14:06:30", "Jane Doe", "<attachment>", MEDIA),
        ("2023-05-01T14:07:00", "John", "🐱", STICKER),
        ("2023-05-01T14:08:00", "Jane Doe", "", DELETED),
        ("2023-05-01T18:00:00", "John", "Outgoing voice call (accepted, 2m 3s)", CALL),
    ]
    metas = [m.meta for m in chat.messages]
    assert metas[0] == {"reactions": [{"sender": "John", "emoji": "👍"}]}
    assert metas[2] == {"attachments": ["2023-05-01T14-06-30.001_00_IMG_0042.jpg"]}
    assert [(s.position, s.reason[:40]) for s in chat.skipped] == [
        ("line 7.date", "missing or not an ISO 8601 date and time"),
        ("line 8", "invalid JSON at line 8, column 55 (Unter"),
    ]


def test_signal_export_chat_md() -> None:
    (chat,) = parse(FIXTURES / "signal-export" / "JaneDoe" / "chat.md")
    assert (chat.title, chat.me) == ("JaneDoe", "Me")
    assert rows(chat) == [
        ("2023-05-01T14:03:12", "Jane Doe", "are you around later?", TEXT),
        ("2023-05-01T14:05:00", "Me", "yes!\nafter 6", TEXT),
        ("2023-05-01T14:06:30", "Jane Doe", "<attachment>", MEDIA),
    ]
    assert chat.messages[0].meta == {"reactions": [{"sender": "Me", "emoji": "👍"}]}


def test_sigtop_one_to_one() -> None:
    (chat,) = parse(JANE_SIGTOP)
    assert (chat.title, chat.source_key, chat.me) == (
        "Jane Doe",
        "signal:5c1d0e7a-2b8e-4f0e-9a51-7f1c2d3e4a5b",
        "Me",
    )
    # Epoch milliseconds, rendered in UTC.
    assert rows(chat) == [
        ("2023-05-01T14:03:12", "Jane Doe", "hi John 😀", TEXT),
        ("2023-05-01T14:05:00", "Me", "hey!\nhow was the trip?", TEXT),
        ("2023-05-01T14:06:40", "Jane Doe", "<image>", MEDIA),
        ("2023-05-01T14:08:20", "Jane Doe", "🐱", STICKER),
        ("2023-05-01T14:23:20", "Jane Doe", "Missed voice call", CALL),
        ("2023-05-01T14:40:00", None, "Safety number changed", SYSTEM),
        ("2023-05-01T14:56:40", "Jane Doe", "", DELETED),
        ("2023-05-01T15:13:20", None, "Disappearing message timer changed", SYSTEM),
    ]
    metas = [m.meta for m in chat.messages]
    assert metas[0] == {
        "source_id": "1682949792345",
        "reactions": [{"sender": "Me", "emoji": "❤️"}],
    }
    assert metas[1] == {"source_id": "1682949900000", "reply_to": "1682949792345", "edited": True}
    assert metas[2] == {"source_id": "1682950000000", "attachments": ["IMG_0042.jpg"]}
    assert [(s.position, s.reason) for s in chat.skipped] == [
        ("[8]", "empty message"),
        ("[9].sent_at", "missing or not epoch milliseconds"),
    ]


def test_sigtop_group_senders_are_ids() -> None:
    (chat,) = parse(FIXTURES / "sigtop" / "Book Club (group).json")
    assert (chat.title, chat.source_key) == (
        "Book Club",
        "signal:7e7e7e7e-9999-8888-7777-666666666666",
    )
    assert [(m.sender, m.text, m.kind) for m in chat.messages] == [
        (None, "Group settings changed", SYSTEM),
        ("8c0e1a5e-aaaa-bbbb-cccc-000000000002", "first chapter done?", TEXT),
        ("Me", "almost", TEXT),
        ("+15559876543", "same", TEXT),
    ]
    # Reactors in a group are only known by an internal id: left unnamed.
    assert chat.messages[1].meta is not None
    assert chat.messages[1].meta["reactions"] == [{"sender": None, "emoji": "😂"}]


def test_sigtop_record_without_time_is_skipped(tmp_path: Path) -> None:
    records = [
        {"conversationId": "c1", "type": "incoming", "body": "when?", "source": "+1555"},
        {"conversationId": "c1", "type": "outgoing", "body": "now", "sent_at": 1000},
    ]
    path = write(tmp_path, "Sam (+1555).json", json.dumps(records))
    (chat,) = parse(path)
    assert rows(chat) == [("1970-01-01T00:00:01", "Me", "now", TEXT)]
    assert [(s.position, s.reason) for s in chat.skipped] == [
        ("[0].sent_at", "missing or not epoch milliseconds")
    ]


def test_sniff() -> None:
    assert sniff(FIXTURES / "text_export.txt")
    assert sniff(FIXTURES / "signal-export" / "JaneDoe" / "data.json")
    assert sniff(FIXTURES / "signal-export" / "JaneDoe" / "chat.md")
    assert sniff(JANE_SIGTOP)
    assert sniff(FIXTURES / "sigtop")
    assert not sniff(FIXTURES.parent / "telegram" / "single_chat.json")
    assert not sniff(FIXTURES.parent / "discord" / "dm.json")


def test_sniff_rejects_lookalikes(tmp_path: Path) -> None:
    whatsapp = write(tmp_path, "wa.txt", "[17/01/2020, 21:49:00] Jane: hi\n")
    jsonl = write(tmp_path, "log.jsonl", '{"date": "2020-01-01T00:00:00", "text": "x"}\n')
    array = write(tmp_path, "list.json", '[{"id": 1, "sent_at": 5}]')
    empty = write(tmp_path, "empty.txt", "")
    for path in (whatsapp, jsonl, array, empty):
        assert not sniff(path), path.name


def test_zip_of_sigtop_exports(tmp_path: Path) -> None:
    archive = tmp_path / "signal.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in (FIXTURES / "sigtop").iterdir():
            z.write(path, f"messages/{path.name}")
    assert sniff(archive)
    assert sorted(c.title for c in parse(archive)) == ["Book Club", "Jane Doe"]


def test_parse_export_with_format() -> None:
    chats = parse_export(FIXTURES / "text_export.txt", format="signal")
    assert chats[0].messages[0].sender == "Jane Doe"


def test_truncated_sigtop_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "Jane Doe (+15551234567).json"
    path.write_text(JANE_SIGTOP.read_text(encoding="utf-8")[:600], encoding="utf-8")
    with pytest.raises(ChatImportError, match=r"\.json: invalid JSON at line \d+, column \d+"):
        parse(path)


def test_data_json_with_no_readable_line_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "JaneDoe"
    folder.mkdir()
    path = write(folder, "data.json", '{"date": "2023-05-01T14:03:12", "sender": "A", "bo\n')
    with pytest.raises(ChatImportError, match=r"data\.json: invalid JSON at line 1, column \d+"):
        parse(path)


def test_wrong_structure_names_what_was_expected(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", "just some notes\nnothing else\n")
    with pytest.raises(ChatImportError, match=r"notes\.txt: line 1 is not a Signal message"):
        parse(path)


def test_wrong_encoding_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_bytes("[2020-01-17, 21:49] Zo\u00eb: h\u00e9\n".encode("latin-1"))
    with pytest.raises(ChatImportError, match=r"chat\.txt: not UTF-8 text"):
        parse(path)


def test_folder_with_both_signal_export_files(tmp_path: Path) -> None:
    # chat.md beside data.json is not read twice.
    shutil.copytree(FIXTURES / "signal-export", tmp_path / "out")
    assert len(parse(tmp_path / "out")) == 1
