"""Generic CSV/TSV/JSONL importer: column guessing and mapping, timestamps, bad rows."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from convsim.core.chats.importers import ImportOptions, Source, generic, parse_export
from convsim.core.chats.messages import ChatImportError, Skipped

FIXTURES = Path(__file__).parents[1] / "fixtures" / "generic"


def parse(path: Path, **columns: str) -> list:
    return parse_export(path, format="generic", options=ImportOptions(columns=columns))


def rows(chat) -> list[tuple]:
    return [(m.timestamp, m.sender, m.text, m.kind) for m in chat.messages]


def test_comma_csv_with_guessed_columns():
    (chat,) = parse(FIXTURES / "chat.csv")
    assert (chat.format, chat.title, chat.source_key) == ("generic", "chat", None)
    assert rows(chat) == [
        ("2024-03-01T17:59:00", "Sam", '"quoted" first, but out of order', "text"),
        ("2024-03-01T18:00:00", "Riya", "hey, are we still on for tonight?", "text"),
        # A quoted body over two CRLF lines keeps its newline (as "\n").
        (
            "2024-03-01T18:01:00",
            "Sam",
            "yes!\nsame place as last time \U0001f9d1\u200d\U0001f373",
            "text",
        ),
        ("2024-03-01T18:03:00", "Riya", "offset is dropped", "text"),  # +05:30 wall clock kept
        ("2024-03-01T18:05:00", "Sam", "epoch seconds", "text"),
        ("2024-03-01T18:06:00", "Riya", "epoch milliseconds", "text"),
    ]


def test_bad_rows_are_skipped_with_their_line():
    (chat,) = parse(FIXTURES / "chat.csv")
    assert chat.skipped == [
        Skipped("line 8", "timestamp 'yesterday at 6' is not ISO 8601 or epoch seconds/ms"),
        Skipped("line 9", "2 fields where the header (line 1) has 3"),
        Skipped("line 11", "empty text"),
    ]


def test_semicolon_csv_with_separate_date_and_time():
    (chat,) = parse(FIXTURES / "gruppe.csv")
    assert chat.title == "gruppe"
    assert rows(chat) == [
        ("2024-03-01T18:00:00", "Jonas", "Hallo zusammen", "text"),
        ("2024-03-01T18:01:00", "Zoë", "Na, alles gut?", "text"),
    ]
    assert chat.skipped == [
        Skipped("line 4", "timestamp '2024-02-30 18:02' is not ISO 8601 or epoch seconds/ms")
    ]


def test_tsv_with_kind_column():
    (chat,) = parse(FIXTURES / "export.tsv")
    assert rows(chat) == [
        ("2024-03-01T18:00:00", None, "Riya joined the chat", "system"),
        ("2024-03-01T18:01:00", "Riya", "IMG_0042.jpg", "media"),
        ("2024-03-01T18:02:00", "Sam", "nice", "text"),
    ]
    assert chat.skipped == [
        Skipped(
            "line 5", "kind 'voicemail' is not one of text, media, sticker, deleted, call, system"
        )
    ]


def test_jsonl_with_column_mapping():
    (chat,) = parse(FIXTURES / "messages.jsonl", timestamp="TS", sender="user", text="msg")
    assert chat.title == "messages"
    assert rows(chat) == [
        ("2023-11-05T21:13:00", "Sam Carter", "sent before the first one", "text"),
        # A raw U+2028 inside a JSON string does not end the line.
        ("2023-11-05T21:14:00", "maya.lin", "first line\u2028still line one", "text"),
        ("2023-11-05T21:16:00", "Sam Carter", "42", "text"),
    ]
    assert [(s.position, s.reason.split(" (")[0]) for s in chat.skipped] == [
        ("line 4", "invalid JSON"),
        ("line 5", "expected a JSON object"),
        ("line 7", "no 'msg' field"),
        ("line 8", "no sender"),
    ]


def test_jsonl_with_guessed_columns():
    (chat,) = parse(FIXTURES / "history.jsonl")
    assert rows(chat) == [
        ("2024-05-10T07:30:12", "Lena", "Morgen! \u2600\ufe0f", "text"),
        ("2024-05-10T07:31:40", "Tom", "morgen \U0001f634", "text"),
    ]


def test_jsonl_whose_first_object_is_longer_than_the_sniffed_head(tmp_path: Path):
    path = tmp_path / "long.jsonl"
    first = {"timestamp": "2021-03-05T10:00:00", "sender": "Max", "text": "b" * 70_000}
    second = {"timestamp": "2021-03-05T10:01:00", "sender": "Ned", "text": "short"}
    path.write_text(f"{json.dumps(first)}\n{json.dumps(second)}\n", encoding="utf-8")
    (chat,) = parse_export(path)
    assert chat.format == "generic" and [m.text for m in chat.messages] == ["b" * 70_000, "short"]


def test_rows_that_would_lose_or_invent_data_are_skipped_with_the_reason(tmp_path: Path):
    table = tmp_path / "extra.csv"
    table.write_text(
        "timestamp,sender,text\n2022-03-01 10:00:00,Ann,hello,world\n"
        "2022-03-01 10:01:00,Ben,fine,\n",  # a trailing delimiter is harmless
        encoding="utf-8",
    )
    (chat,) = parse_export(table)
    assert [m.text for m in chat.messages] == ["fine"]
    assert chat.skipped == [Skipped("line 2", "4 fields where the header (line 1) has 3")]
    lines = tmp_path / "senders.jsonl"
    rows = [{"timestamp": "2022-04-15T10:00:00", "sender": {"n": 1}, "text": "j"},
            {"timestamp": "2022-04-15T10:01:00", "sender": 5551234, "text": "k"}]  # fmt: skip
    lines.write_text("\n".join(map(json.dumps, rows)) + "\n", encoding="utf-8")
    (chat,) = parse_export(lines)
    assert [(m.sender, m.text) for m in chat.messages] == [("5551234", "k")]
    assert chat.skipped == [Skipped("line 1", "'sender' is not a name")]


def test_a_file_of_only_bad_rows_says_why_each_was_skipped(tmp_path: Path):
    table = tmp_path / "dates.csv"
    table.write_text("timestamp,sender,text\n01.03.2022 10:00,Ann,hello\nyesterday,Ben,hi\n")
    with pytest.raises(ChatImportError) as caught:
        parse_export(table)
    assert "every record was skipped: line 2: timestamp '01.03.2022 10:00' is not" in str(
        caught.value
    ) and "line 3: timestamp 'yesterday'" in str(caught.value)


def test_equal_timestamps_keep_file_order(tmp_path: Path):
    path = tmp_path / "ties.csv"
    path.write_text(
        "time,name,text\n2024-01-01 10:00,b,second\n2024-01-01 09:00,a,first\n"
        "2024-01-01 10:00,c,third\n2024-01-01 10:00:00,d,fourth\n"
    )
    (chat,) = parse(path)
    assert [m.text for m in chat.messages] == ["first", "second", "third", "fourth"]


def test_mapped_column_missing_names_file_and_column():
    path = FIXTURES / "chat.csv"
    with pytest.raises(ChatImportError) as error:
        parse(path, text="Body")
    assert str(error.value) == (
        f"{path}: line 1 has no column 'Body' (mapped to text); "
        "expected it among 'Timestamp', 'Author', 'Message'"
    )


def test_unguessable_column_names_file_and_expectation(tmp_path: Path):
    path = tmp_path / "export.csv"
    path.write_text("when,who,what\n2024-01-01 10:00,a,hi\n")
    with pytest.raises(ChatImportError) as error:
        parse(path)
    assert str(error.value).startswith(
        f"{path}: line 1 has no timestamp column (looked for timestamp/time/date among "
        "'when', 'who', 'what')"
    )
    (chat,) = parse(path, timestamp="WHEN", sender="who", text="what")  # case-insensitive
    assert rows(chat) == [("2024-01-01T10:00:00", "a", "hi", "text")]


def test_jsonl_missing_mapped_field_names_the_record_line(tmp_path: Path):
    path = tmp_path / "log.jsonl"
    path.write_text('\n{"time": 1700000000, "from": "a", "body": "x"}\n')
    with pytest.raises(ChatImportError, match=r"line 2 has no column 'text'"):
        parse(path, text="text")


def test_empty_file(tmp_path: Path):
    path = tmp_path / "empty.csv"
    path.write_text("\n \n")
    with pytest.raises(ChatImportError) as error:
        parse(path)
    assert str(error.value).startswith(f"{path}: empty file")


def test_truncated_inside_a_quoted_body_is_an_error(tmp_path: Path):
    path = tmp_path / "broken.csv"
    path.write_text(
        'timestamp,sender,text\n2024-01-01 10:00,a,hi\n2024-01-01 10:01,b,"never\nclosed'
    )
    with pytest.raises(ChatImportError) as error:
        parse(path)
    assert str(error.value).startswith(
        f"{path}: the quoted field starting on line 3 is never closed"
    )


def test_oversized_field_is_an_error_with_line(tmp_path: Path):
    path = tmp_path / "broken.csv"
    path.write_text('timestamp,sender,text\n2024-01-01 10:00,a,"never closed\n' + "x" * 140_000)
    with pytest.raises(ChatImportError, match=r"broken\.csv: invalid CSV at line 3"):
        parse(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T18:00:00", "2024-03-01T18:00:00"),
        ("2024-03-01 18:00", "2024-03-01T18:00:00"),
        ("2024-03-01T18:00:59.999Z", "2024-03-01T18:00:59"),
        ("2024-03-01T23:30:00-08:00", "2024-03-01T23:30:00"),
        ("2024-03-01T23:30:00+0530", "2024-03-01T23:30:00"),
        ("1709316000", "2024-03-01T18:00:00"),
        ("1709316000.75", "2024-03-01T18:00:00"),
        ("1709316000000", "2024-03-01T18:00:00"),
        (1709316000, "2024-03-01T18:00:00"),
        (1709316000000, "2024-03-01T18:00:00"),
        ("2020", None),  # a year, not an epoch
        ("2024-03-01", None),
        ("01/03/2024 18:00", None),
        ("2024-13-01 18:00", None),
        (True, None),
        ("", None),
    ],
)
def test_parse_timestamp(value: object, expected: str | None):
    assert generic.parse_timestamp(value) == expected


def test_sniff(tmp_path: Path):
    for name in ("chat.csv", "gruppe.csv", "export.tsv", "history.jsonl"):
        with Source(FIXTURES / name) as source:
            assert generic.sniff(source), name
    odd_columns = FIXTURES / "messages.jsonl"  # needs a mapping: not recognisable on its own
    wrong_suffix = tmp_path / "chat.txt"
    wrong_suffix.write_text((FIXTURES / "chat.csv").read_text())
    no_header = tmp_path / "numbers.csv"
    no_header.write_text("1,2,3\n4,5,6\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    for path in (odd_columns, wrong_suffix, no_header, empty, FIXTURES):
        with Source(path) as source:
            assert not generic.sniff(source), path


def test_forced_format_reads_other_suffixes_by_content(tmp_path: Path):
    path = tmp_path / "dump.txt"
    path.write_text('{"timestamp": "2024-01-01 10:00", "sender": "a", "text": "hi"}\n')
    (chat,) = parse(path)
    assert (chat.title, rows(chat)) == ("dump", [("2024-01-01T10:00:00", "a", "hi", "text")])


def test_zip_gives_one_chat_per_table(tmp_path: Path):
    archive = tmp_path / "tables.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(FIXTURES / "gruppe.csv", "exports/gruppe.csv")
        z.write(FIXTURES / "history.jsonl", "exports/history.jsonl")
        z.writestr("exports/README.md", "not a table")
    chats = parse(archive)
    assert [c.title for c in chats] == ["gruppe", "history"]
    assert [len(c.messages) for c in chats] == [2, 2]
