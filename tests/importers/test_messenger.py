"""Facebook Messenger / Instagram JSON importer: fixtures written the way Facebook writes them
(newest first, every non-ASCII character as latin-1 mojibake, \\u-escaped)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from convsim.core.chats.importers import ImportOptions, Source, messenger, parse_export
from convsim.core.chats.messages import ChatImportError, Skipped

FIXTURES = Path(__file__).parents[1] / "fixtures" / "messenger"
RIYA = FIXTURES / "inbox" / "riyapatel_10158230517364921"
CREW = FIXTURES / "inbox" / "weekendcrew_7284619573826193"
INSTAGRAM = FIXTURES / "instagram" / "message_1.json"
CHAT_MINER = Path(__file__).parents[2] / ".." / "shared" / "fixtures" / "real" / "chat-miner"


def parse(path: Path) -> list:
    return parse_export(path, format="messenger")


def by_title(chats: list) -> dict:
    return {chat.title: chat for chat in chats}


def rows(chat) -> list[tuple]:
    return [(m.timestamp, m.sender, m.text, m.kind) for m in chat.messages]


def test_fixtures_really_hold_mojibake():
    raw = (RIYA / "message_2.json").read_text()
    assert raw.isascii()
    assert "caf\\u00c3\\u00a9 at 7? \\u00f0\\u009f\\u0098\\u0082" in raw


def test_thread_folder_merges_message_files_in_chronological_order():
    (chat,) = parse(RIYA)
    assert chat.format == "messenger"
    assert chat.title == "Riya Patel"
    assert chat.source_key == "messenger:inbox/riyapatel_10158230517364921"
    assert chat.participants == ["Riya Patel", "Sam Carter"]
    assert rows(chat) == [
        ("2024-03-01T18:00:00", "Sam Carter", "hey! are we still on for tonight?", "text"),
        ("2024-03-01T18:01:10", "Riya Patel", "yes!! café at 7? \U0001f602", "text"),
        ("2024-03-01T18:02:00", "Riya Patel", "", "media"),
        ("2024-03-01T18:03:00", "Sam Carter", "", "sticker"),
        ("2024-03-01T18:05:00", "Riya Patel", "Zoë says hi \U0001f44b\U0001f3fd", "text"),
        ("2024-03-01T18:06:00", "Sam Carter", "", "deleted"),
        ("2024-03-01T18:07:00", "Riya Patel", "Riya called you.", "call"),
        # Same millisecond: the file lists Riya's first (newest first), so Sam's came first.
        (
            "2024-03-01T18:10:00",
            "Sam Carter",
            "look at this place\nhttps://maps.app.goo.gl/x7Yq2",
            "text",
        ),
        (
            "2024-03-01T18:10:00",
            "Riya Patel",
            "ok\nsee you there \U0001f9d1\u200d\U0001f373",
            "text",
        ),
    ]


def test_reactions_and_attachments_go_to_meta():
    (chat,) = parse(RIYA)
    assert chat.messages[1].meta == {"reactions": [{"sender": "Sam Carter", "emoji": "\u2764"}]}
    assert chat.messages[2].meta == {"attachments": ["431161462_1106425397344958_n.jpg"]}
    assert chat.messages[3].meta == {
        "attachments": ["39178562_1505197616293642_5411344281094848512_n.png"]
    }
    assert chat.messages[0].meta is None


def test_reaction_notice_is_skipped_not_stored_as_a_message():
    (chat,) = parse(RIYA)
    assert chat.skipped == [
        Skipped(
            "message_2.json: messages[2]",
            "a reaction notice; the reaction is kept on the message it answers",
        )
    ]
    assert all("to your message" not in m.text for m in chat.messages)


def test_group_chat_repairs_names_titles_and_reactions():
    (chat,) = parse(CREW)
    assert chat.title == "Weekend crew \U0001f3d5\ufe0f"
    assert chat.participants == ["Sam Carter", "Riya Patel", "Zoë Müller", "Jonas Berg"]
    hello = chat.messages[1]
    assert (hello.sender, hello.text) == ("Zoë Müller", "hallo zusammen! \U0001f44b")
    assert hello.meta == {
        "reactions": [
            {"sender": "Riya Patel", "emoji": "\U0001f44b"},
            {"sender": "Jonas Berg", "emoji": "\U0001f602"},
        ]
    }


def test_group_chat_kinds_system_messages_and_skips():
    (chat,) = parse(CREW)
    assert rows(chat) == [
        ("2024-04-02T09:00:00", None, "Sam Carter added Zoë Müller to the group.", "system"),
        ("2024-04-02T09:01:00", "Zoë Müller", "hallo zusammen! \U0001f44b", "text"),
        ("2024-04-02T09:02:00", "Jonas Berg", "", "media"),
        ("2024-04-02T09:03:00", "Riya Patel", "", "media"),
        ("2024-04-02T09:04:00", "Zoë Müller", "Packliste \U0001f3d5\ufe0f", "media"),
        # Looks like a notice but the "reaction" is a word: a real message.
        ("2024-04-02T09:05:30", "Sam Carter", "I reacted badly to your message lol", "text"),
        ("2024-04-02T09:06:00", None, "Jonas Berg left the group.", "system"),
    ]
    assert chat.messages[2].meta == {"attachments": ["2561348_n.gif"]}
    assert chat.messages[3].meta == {"attachments": ["audioclip17120485800004821.mp4"]}
    assert chat.messages[4].meta == {"attachments": ["4411_n.mp4", "packliste.pdf"]}
    assert chat.skipped == [
        Skipped("messages[1].timestamp_ms", "expected epoch milliseconds"),
        Skipped("messages[3]", "a reaction notice; the reaction is kept on the message it answers"),
    ]


def test_instagram_without_thread_path():
    (chat,) = parse(INSTAGRAM)
    assert chat.title == "maya.lin"
    assert chat.source_key is None
    assert rows(chat) == [
        ("2023-11-05T21:14:00", "maya.lin", "omg did you see this", "text"),
        (
            "2023-11-05T21:14:05",
            "maya.lin",
            "maya.lin sent an attachment.\nhttps://www.instagram.com/reel/Cz1AbCdEfGh/",
            "text",
        ),
        ("2023-11-05T21:16:00", "Sam Carter", "naïve question: café or bar?", "text"),
        ("2023-11-05T21:17:00", "maya.lin", "sí, vamos \U0001f389", "text"),
        ("2023-11-05T21:18:00", "Sam Carter", "", "media"),
    ]
    assert chat.messages[3].meta == {
        "reactions": [{"sender": "Sam Carter", "emoji": "\u2764\ufe0f"}]
    }
    assert chat.messages[4].meta == {"attachments": ["402961846_1042.jpg"]}
    assert [s.position for s in chat.skipped] == ["messages[3]"]  # "Liked a message"


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [
        ("caf\u00c3\u00a9", "café"),
        ("\u00f0\u009f\u0098\u0082", "\U0001f602"),
        ("plain ascii", "plain ascii"),
        ("café", "café"),  # a real é: b"caf\xe9" is not UTF-8, so it stays
        ("na\u00efve \u00c3", "na\u00efve \u00c3"),  # mixed: not valid UTF-8 as a whole
        ("already \U0001f602 decoded é", "already \U0001f602 decoded é"),  # above U+00FF
        ("", ""),
    ],
)
def test_repair_only_touches_mojibake(raw: str, fixed: str):
    assert messenger.repair(raw) == fixed


def test_whole_export_folder_gives_one_chat_per_thread():
    chats = parse(FIXTURES)
    assert sorted(c.title for c in chats) == [
        "Riya Patel",
        "Weekend crew \U0001f3d5\ufe0f",
        "maya.lin",
    ]
    assert sum(len(c.messages) for c in chats) == 9 + 7 + 5


def test_zip_of_the_export(tmp_path: Path):
    archive = tmp_path / "facebook-samcarter.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(FIXTURES.rglob("*.json")):
            z.write(
                path,
                "your_activity_across_facebook/messages/" + path.relative_to(FIXTURES).as_posix(),
            )
    chats = by_title(parse(archive))
    assert rows(chats["Riya Patel"]) == rows(parse(RIYA)[0])
    assert chats["Riya Patel"].skipped[0].position == "message_2.json: messages[2]"
    assert chats["maya.lin"].source_key is None


def test_single_message_file_on_its_own():
    (chat,) = parse(RIYA / "message_1.json")
    assert chat.source_key == "messenger:inbox/riyapatel_10158230517364921"
    assert [m.timestamp for m in chat.messages] == [
        "2024-03-01T18:05:00",
        "2024-03-01T18:06:00",
        "2024-03-01T18:07:00",
        "2024-03-01T18:10:00",
        "2024-03-01T18:10:00",
    ]


def test_sniff(tmp_path: Path):
    for path in (FIXTURES, RIYA, INSTAGRAM):
        with Source(path) as source:
            assert messenger.sniff(source), path
    telegram = tmp_path / "result.json"
    telegram.write_text(json.dumps({"name": "Riya", "messages": [{"id": 1, "from": "Riya"}]}))
    text = tmp_path / "chat.txt"
    text.write_text("1/17/20, 8:49 PM - John: sender_name timestamp_ms\n")
    (tmp_path / "empty").mkdir()
    for path in (telegram, text, tmp_path / "empty"):
        with Source(path) as source:
            assert not messenger.sniff(source), path


def test_older_exports_with_seconds_and_odd_records(tmp_path: Path):
    path = tmp_path / "message.json"
    messages = [
        {"sender_name": "Riya Patel", "timestamp": 1528049700, "content": "2018 style"},
        "not an object",
        {"timestamp_ms": 1528049800000, "content": "who?"},
        {"sender_name": "Sam Carter", "timestamp_ms": 1528049900000},
        {"sender_name": "Sam Carter", "timestamp_ms": True, "content": "bool is no time"},
    ]
    path.write_text(json.dumps({"participants": [{"name": "Riya Patel"}], "messages": messages}))
    (chat,) = parse(path)
    assert chat.title == "Riya Patel"
    assert rows(chat) == [("2018-06-03T18:15:00", "Riya Patel", "2018 style", "text")]
    assert chat.skipped == [
        Skipped("messages[1]", "expected a message object"),
        Skipped("messages[2].sender_name", "expected the sender's name"),
        Skipped("messages[3]", "no text, media or sticker"),
        Skipped("messages[4].timestamp_ms", "expected epoch milliseconds"),
    ]


def test_truncated_json_names_file_and_line(tmp_path: Path):
    thread = tmp_path / "inbox" / "riya_1"
    thread.mkdir(parents=True)
    text = (RIYA / "message_2.json").read_text()
    (thread / "message_1.json").write_text((RIYA / "message_1.json").read_text())
    (thread / "message_2.json").write_text(text[: len(text) // 2])
    with pytest.raises(ChatImportError) as error:
        parse(tmp_path)
    message = str(error.value)
    assert str(thread / "message_2.json") in message
    assert "invalid JSON at line" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[{"sender_name": "x"}]', "top level is a JSON list"),
        ('{"participants": [], "messages": {"0": {}}}', 'field "messages" is missing'),
        ('{"participants": []}', 'field "messages" is missing'),
    ],
)
def test_wrong_structure_names_file_and_field(tmp_path: Path, content: str, expected: str):
    path = tmp_path / "message_1.json"
    path.write_text(content)
    with pytest.raises(ChatImportError) as error:
        messenger.parse(Source(path), ImportOptions())
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_folder_without_message_files(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ChatImportError) as error:
        messenger.parse(Source(tmp_path), ImportOptions())
    assert str(error.value).startswith(f"{tmp_path}: no message_N.json file inside")


@pytest.mark.skipif(not CHAT_MINER.is_dir(), reason="shared real-world fixtures not present")
def test_chat_miner_instagram_conformance():
    folder = CHAT_MINER / "instagram"
    (chat,) = parse(folder / "test_export.json")
    target = json.loads((folder / "target.json").read_text())
    expected = [(t["timestamp"], t["author"], t["message"]) for t in reversed(target)]
    assert [(m.timestamp, m.sender, m.text) for m in chat.messages] == expected
    assert chat.source_key is None
