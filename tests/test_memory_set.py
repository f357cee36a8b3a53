"""The labelled memory set (benchmarks/memory_set.py): deterministic, big enough, every label
pointing at a message that holds its answer, and a chat convsim's WhatsApp importer reads as
written. Not a test of search quality (benchmarks/memory_recall.py measures that)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import pytest

from convsim.core.chats.importers import ImportOptions, parse_export

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from memory_set import JORDAN, SAM, build_chat, build_set  # noqa: E402


@pytest.fixture(scope="module")
def built():
    return build_set(0)


def test_same_seed_same_bytes(tmp_path: Path, built) -> None:
    first, second = built.write(tmp_path / "a").parent, build_set(0).write(tmp_path / "b").parent
    for name in ("chat.txt", "questions.jsonl", "facts.jsonl"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert build_set(1).chat_text != built.chat_text
    assert build_chat(3000, seed=2) == build_chat(3000, seed=2)


def test_sizes(built) -> None:
    assert 800 <= built.messages <= 1300
    assert len(built.questions) >= 60
    assert len({q["id"] for q in built.questions}) == len(built.questions)
    assert {q["person"] for q in built.questions} == {SAM, JORDAN}
    days = {r.timestamp[:10] for r in built.records}
    months = {d[:7] for d in days}
    assert len(days) >= 60 and len(months) >= 10
    assert build_chat(5000).count("\n") == 5000


def test_evidence_holds_the_answer(built) -> None:
    """Each question has 1-3 evidence lines, each a message (not the notice) containing one of
    the question's hints; each fact's evidence too."""
    by_line = {r.line: r for r in built.records}
    for q in built.questions:
        assert 1 <= len(q["evidence"]) <= 3, q["id"]
        assert q["question"].strip() and q["answer"].strip()
        for line in q["evidence"]:
            record = by_line[line]
            assert record.sender is not None, q["id"]
            assert built.lines[line - 1].endswith(": " + record.text)
            assert any(h in record.text.lower() for h in q["hints"]), (q["id"], record.text)
    for fact in built.facts:
        assert fact["evidence"], fact["id"]
        assert fact["valid_from"] == by_line[fact["evidence"][0]].timestamp[:10]
    # keyword search alone should miss some: their evidence shares no content word
    assert sum(not q["shares_word"] for q in built.questions) >= 20


def test_facts_change_over_time(built) -> None:
    facts = {f["id"]: f for f in built.facts}
    superseded = [f for f in built.facts if f["superseded"]]
    assert len(superseded) >= 6
    for fact in built.facts:
        if fact["replaces"]:
            old = facts[fact["replaces"]]
            assert old["superseded"] and old["valid_until"] == fact["valid_from"]
            assert (old["person"], old["key"]) == (fact["person"], fact["key"])
            assert min(old["evidence"]) < min(fact["evidence"])
    now = [q for q in built.questions if q["when"] == "now"]
    before = [q for q in built.questions if q["when"] == "before"]
    assert len(now) >= 6 and len(before) >= 6
    assert all(q["changed"] for q in now + before)


def test_imports_as_written(tmp_path: Path, built) -> None:
    """convsim's importer reads every line as one message, in order, with the same time, sender
    and text, and the day/month order is not a guess."""
    path = built.write(tmp_path)
    chats = parse_export(path, options=ImportOptions())
    assert len(chats) == 1 and chats[0].format == "whatsapp"
    chat = chats[0]
    assert not chat.warnings and not chat.skipped
    parsed = [(m.timestamp[:16], m.sender, m.text) for m in chat.messages]
    assert parsed == [(r.timestamp[:16], r.sender, r.text) for r in built.records]
    stamps = [datetime.fromisoformat(r.timestamp) for r in built.records]
    assert stamps == sorted(stamps)
