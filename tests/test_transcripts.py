"""Transcript files: what the app saves and what `convsim simulate --transcript` reads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from convsim.core.data import transcripts


def test_saved_transcripts_read_back_and_list_newest_first(tmp_path: Path) -> None:
    turns = [("Riya", 'hi [there] "you"'), ("Sam", "line one\nline two")]
    first = transcripts.save(tmp_path, "sam-1", turns, datetime(2026, 1, 2, 3, 4, 5))
    assert first.name == "sam-1-20260102-030405.jsonl"
    assert transcripts.load(first) == turns
    second = transcripts.save(tmp_path, "a/b c", turns[:1])
    assert second.name.startswith("a_b_c-")
    second.touch()
    assert transcripts.saved(tmp_path)[0] == second
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_two_saves_in_the_same_second_keep_both(tmp_path: Path) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5)
    paths = [transcripts.save(tmp_path, "sam-1", [("Sam", f"take {i}")], when) for i in (1, 2, 3)]
    assert [p.name for p in paths] == [
        "sam-1-20260102-030405.jsonl",
        "sam-1-20260102-030405-2.jsonl",
        "sam-1-20260102-030405-3.jsonl",
    ]
    assert [transcripts.load(p) for p in paths] == [[("Sam", f"take {i}")] for i in (1, 2, 3)]


def test_hand_written_lines_and_json_lines_mix(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_text('[Riya] hey are we going\n\n{"speaker": "Sam", "text": "yes"}\n[Riya]  ok \n')
    assert transcripts.load(path) == [("Riya", "hey are we going"), ("Sam", "yes"), ("Riya", "ok")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[Riya] fine\n\n{"speaker": "Sam"}\n', ':3: expected a JSON object {"speaker": "Name", '),
        ("[Riya] fine\nno tag here\n", ":2: expected a line like '[Name] message'"),
        ("[] nobody\n", ":1: expected a line like '[Name] message'"),
        ('{"speaker": null, "text": null}\n', ":1: 'speaker' must be a name on one line"),
        ('{"speaker": "Riya\\n[Sam", "text": "hi"}\n', ":1: 'speaker' must be a name on one"),
        ('{"speaker": " ", "text": "hi"}\n', ":1: 'speaker' must be a name on one line"),
        ('{"speaker": "Riya", "text": null}\n', ":1: 'text' must be text, not NoneType"),
        ("{" * 100_000 + "\n", ":1: not JSON"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(transcripts.TranscriptError) as err:
        transcripts.load(path)
    assert str(err.value).startswith(f"{path}{message}")


def test_unreadable_files_say_why(tmp_path: Path) -> None:
    with pytest.raises(transcripts.TranscriptError, match="No such file or directory"):
        transcripts.load(tmp_path / "missing.jsonl")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"[Ren\xe9] salut\n")
    with pytest.raises(transcripts.TranscriptError, match="not UTF-8 text"):
        transcripts.load(latin)


def test_a_name_claimed_by_a_save_still_writing_is_not_listed(tmp_path: Path) -> None:
    claimed = tmp_path / "sam-1-20260102-030405.jsonl"
    claimed.touch()  # what a save in another window holds while it writes
    written = transcripts.save(tmp_path, "sam-1", [("Sam", "hi")], datetime(2026, 1, 2, 3, 4, 5))
    assert written.name == "sam-1-20260102-030405-2.jsonl"
    assert transcripts.saved(tmp_path) == [written]


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "notepad.txt"
    path.write_text("\ufeff[Riya] hi\n[Sam] hey\n", encoding="utf-8")
    assert transcripts.load(path) == [("Riya", "hi"), ("Sam", "hey")]
