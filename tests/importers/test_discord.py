"""DiscordChatExporter JSON: DMs, group DMs and server channels."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from convsim.core.chats.importers import ImportOptions, Source, discord, parse_export
from convsim.core.chats.messages import (
    CALL,
    MEDIA,
    STICKER,
    SYSTEM,
    TEXT,
    ChatImportError,
    ParsedChat,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "discord"


def parse(path: Path) -> list[ParsedChat]:
    with Source(path) as source:
        return discord.parse(source, ImportOptions())


def sniff(path: Path) -> bool:
    with Source(path) as source:
        return discord.sniff(source)


def one(name: str) -> ParsedChat:
    (chat,) = parse(FIXTURES / name)
    return chat


def rows(chat: ParsedChat) -> list[tuple]:
    return [(m.timestamp, m.sender, m.text, m.kind) for m in chat.messages]


def test_dm_title_and_key() -> None:
    chat = one("dm.json")
    assert (chat.format, chat.title, chat.source_key) == (
        "discord",
        "bobthebuilder",
        "discord:900000000000000001",
    )


def test_dm_messages() -> None:
    assert rows(one("dm.json")) == [
        # Offsets and fractions are dropped; the wall clock shown is kept.
        ("2020-01-17T21:49:00", "Alice", "hey bob 👋🏽", TEXT),
        ("2020-01-17T21:50:00", "Bob", "hi!\nsorry, was cooking\n\n🧑\u200d🍳", TEXT),
        ("2020-01-17T21:52:00", "Alice", "what are you making?", TEXT),
        ("2020-01-17T21:53:00", "Bob", "<attachment>", MEDIA),
        ("2020-01-17T21:54:00", "Bob", "recipe attached", MEDIA),
        ("2020-01-17T21:55:00", "Alice", "Wumpus Love", STICKER),
        ("2020-01-17T22:10:00", "Alice", "Started a call that lasted 12 minutes.", CALL),
        ("2020-01-17T22:30:00", "Bob", "https://youtu.be/xyz", MEDIA),
    ]


def test_dm_meta() -> None:
    metas = [m.meta for m in one("dm.json").messages]
    assert metas[1] == {"source_id": "1000000000000000002", "edited": True}
    assert metas[2] == {"source_id": "1000000000000000003", "reply_to": "1000000000000000002"}
    assert metas[3] == {
        "source_id": "1000000000000000004",
        "reactions": [
            {"sender": "Alice", "emoji": "😍"},
            {"sender": None, "emoji": "👍"},
            {"sender": None, "emoji": "👍"},
        ],
        "attachments": ["pasta.jpg"],
    }
    assert metas[4] == {"source_id": "1000000000000000005", "attachments": ["recipe.pdf"]}


def test_group_dm_notifications_name_the_actor() -> None:
    chat = one("group_dm.json")
    assert chat.title == "weekend plans"
    assert [(m.sender, m.text, m.kind) for m in chat.messages] == [
        (None, "Alice added Carol to the group.", SYSTEM),
        ("carol.k", "thanks for the add!", TEXT),
        (None, "Alice changed the channel name.", SYSTEM),
        (None, "Bob pinned a message.", SYSTEM),
        (None, "carol.k left the group.", SYSTEM),
    ]
    assert chat.messages[3].meta == {
        "source_id": "2000000000000000004",
        "reply_to": "2000000000000000002",
    }


def test_server_channel() -> None:
    chat = one("server.json")
    assert (chat.title, chat.source_key) == ("Cozy Corner / general", "discord:900000000000000003")
    # The file lists the join after the first message; output is chronological.
    assert rows(chat) == [
        ("2022-07-04T18:00:00", None, "carol.k joined the server.", SYSTEM),
        ("2022-07-04T18:05:00", "carol.k", "hello everyone!", TEXT),
        ("2022-07-04T18:05:01", "Dyno", "Welcome!\nRead #rules first.", MEDIA),
        ("2022-07-04T18:06:00", None, "Bob started a thread.", SYSTEM),
        ("2022-07-04T18:09:00", None, "Bob: Discord event of type 8.", SYSTEM),
        ("2022-07-04T18:10:00", "Dyno", "/roll 1d20 → 17", TEXT),
    ]


def test_bots_are_flagged() -> None:
    flagged = [m.sender for m in one("server.json").messages if (m.meta or {}).get("bot")]
    assert flagged == ["Dyno", "Dyno"]


def test_bad_messages_are_skipped_with_positions() -> None:
    assert [(s.position, s.reason) for s in one("server.json").skipped] == [
        ("messages[4].author", 'missing, or without a "name"'),
        ("messages[5].timestamp", "missing or not an ISO 8601 date and time"),
        ("messages[6].timestamp", "missing or not an ISO 8601 date and time"),
        ("messages[7]", "empty message (no content, attachments, embeds or stickers)"),
    ]


def test_forwarded_message_uses_its_snapshot(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "dm.json").read_text(encoding="utf-8"))
    forward = dict(data["messages"][0], id="99", content="")
    forward["forwardedMessage"] = {"timestamp": "2020-01-01T00:00:00+00:00", "content": "fwd 📦"}
    data["messages"] = [forward]
    path = tmp_path / "fwd.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert rows(parse(path)[0]) == [("2020-01-17T21:49:00", "Alice", "fwd 📦", TEXT)]


def test_sniff() -> None:
    for name in ("dm.json", "group_dm.json", "server.json"):
        assert sniff(FIXTURES / name)
    assert not sniff(FIXTURES.parent / "telegram" / "single_chat.json")
    assert not sniff(FIXTURES.parent / "signal" / "sigtop" / "Book Club (group).json")


def test_sniff_rejects_empty_and_binary(tmp_path: Path) -> None:
    empty = tmp_path / "a.json"
    empty.write_bytes(b"")
    binary = tmp_path / "b.json"
    binary.write_bytes(bytes(range(256)))
    assert not sniff(empty)
    assert not sniff(binary)


def test_folder_and_zip_give_one_chat_per_file(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    shutil.copytree(FIXTURES, folder)
    (folder / "notes.json").write_text('{"not": "discord"}', encoding="utf-8")
    assert sniff(folder)
    assert sorted(c.title for c in parse(folder)) == [
        "Cozy Corner / general",
        "bobthebuilder",
        "weekend plans",
    ]
    archive = tmp_path / "exports.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(FIXTURES / "dm.json", "Direct Messages - bobthebuilder [900000000000000001].json")
    assert [c.title for c in parse(archive)] == ["bobthebuilder"]


def test_parse_export_with_format() -> None:
    assert parse_export(FIXTURES / "dm.json", format="discord")[0].title == "bobthebuilder"


def test_truncated_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "channel.json"
    path.write_text((FIXTURES / "dm.json").read_text(encoding="utf-8")[:900], encoding="utf-8")
    with pytest.raises(
        ChatImportError, match=r"channel\.json: invalid JSON at line \d+, column \d+"
    ):
        parse(path)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "top level is not a JSON object"),
        ({"guild": {}, "messages": []}, '"channel" is missing or not an object'),
        ({"guild": {}, "channel": {"id": "1"}, "messages": {}}, '"messages" is missing or not'),
    ],
)
def test_wrong_structure_names_the_expected_field(
    tmp_path: Path, document: object, expected: str
) -> None:
    path = tmp_path / "channel.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ChatImportError, match=expected) as err:
        parse(path)
    assert str(path) in str(err.value)


def test_wrong_encoding_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "channel.json"
    path.write_bytes('{"guild": {"name": "Caf\u00e9"}}'.encode("latin-1"))
    with pytest.raises(ChatImportError, match=r"channel\.json: not UTF-8 text.*line 1"):
        parse(path)
