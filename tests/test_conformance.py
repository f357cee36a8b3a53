"""Our importers against exports written by other projects (../shared/fixtures/real/).

chat-miner's expected parses (`target.json`, newest first) differ from ours on purpose in two
ways: it joins multi-line bodies with a space and drops system messages; we keep newlines and
keep system messages as kind "system". For Telegram it also joins text entities with a space,
where we concatenate them exactly as the export gives them. We compare accordingly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convsim.core.chats.importers import parse_export
from convsim.core.chats.messages import SYSTEM

CHAT_MINER = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "chat-miner"
pytestmark = pytest.mark.skipif(not CHAT_MINER.is_dir(), reason="shared fixtures absent")


def expected(folder: str) -> list[tuple[str, str, str]]:
    rows = json.loads((CHAT_MINER / folder / "target.json").read_text(encoding="utf-8"))
    return [(r["timestamp"], r["author"], r["message"]) for r in reversed(rows)]


def ours(path: Path, fmt: str) -> list[tuple[str, str, str]]:
    (chat,) = parse_export(path, fmt)
    return [
        (m.timestamp, m.sender or "", " ".join(m.text.split("\n")))
        for m in chat.messages
        if m.kind != SYSTEM
    ]


WHATSAPP = sorted((CHAT_MINER / "whatsapp").glob("*.txt")) if CHAT_MINER.is_dir() else []


@pytest.mark.parametrize("path", WHATSAPP, ids=[p.name for p in WHATSAPP])
def test_whatsapp_matches_chat_miner(path: Path) -> None:
    assert ours(path, "whatsapp") == expected("whatsapp")
    # The auto-detected format is WhatsApp too, and the system lines are kept, not lost.
    (chat,) = parse_export(path)
    assert chat.format == "whatsapp"
    system = [m.text for m in chat.messages if m.kind == SYSTEM]
    assert 'created group "Groupname"' in system[1] and system[2] == "You were added"


@pytest.mark.parametrize("name", ["test_single_export.json", "test_batch_export.json"])
def test_telegram_matches_chat_miner(name: str) -> None:
    path = CHAT_MINER / "telegram" / name
    got = ours(path, "telegram")
    want = list(reversed(expected("telegram")))  # this one target.json is oldest-first
    assert [(t, a) for t, a, _ in got] == [(t, a) for t, a, _ in want]
    # chat-miner puts a space between entities; the export itself has none.
    assert [m for _, _, m in got] == ["Minimal Message", "Link:https://telegram.org/"]
    assert parse_export(path)[0].format == "telegram"


def test_instagram_matches_chat_miner() -> None:
    path = CHAT_MINER / "instagram" / "test_export.json"
    assert ours(path, "messenger") == expected("instagram")
    assert parse_export(path)[0].format == "messenger"


def test_signal_text_matches_chat_miner() -> None:
    path = CHAT_MINER / "signal" / "test_export.txt"
    assert ours(path, "signal") == expected("signal")
    # Auto-detection reads this layout as WhatsApp's (it is one of WhatsApp's too): same parse.
    assert ours(path, parse_export(path)[0].format) == expected("signal")
