"""Telegram Desktop JSON exports: single-chat and full-account shapes."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from convsim.core.chats.importers import ImportOptions, Source, parse_export, telegram
from convsim.core.chats.messages import (
    CALL,
    MEDIA,
    STICKER,
    SYSTEM,
    TEXT,
    ChatImportError,
    ParsedChat,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "telegram"


def parse(path: Path) -> list[ParsedChat]:
    with Source(path) as source:
        return telegram.parse(source, ImportOptions())


def sniff(path: Path) -> bool:
    with Source(path) as source:
        return telegram.sniff(source)


@pytest.fixture(scope="module")
def single() -> ParsedChat:
    (chat,) = parse(FIXTURES / "single_chat.json")
    return chat


def by_id(chat: ParsedChat, source_id: str):
    (message,) = [m for m in chat.messages if (m.meta or {}).get("source_id") == source_id]
    return message


def test_single_chat_identity(single: ParsedChat) -> None:
    assert single.format == "telegram"
    assert single.title == "Jane Doe"
    assert single.source_key == "telegram:4815162342"
    assert len(single.messages) == 15


def test_messages_are_chronological(single: ParsedChat) -> None:
    stamps = [m.timestamp for m in single.messages]
    assert stamps == sorted(stamps)


def test_local_date_is_preferred_over_unixtime(single: ParsedChat) -> None:
    # date_unixtime of this message is 20:49 UTC; the export's local wall clock says 21:49.
    first = by_id(single, "101")
    assert first.timestamp == "2020-01-17T21:49:00"
    assert (first.sender, first.text, first.kind) == (
        "Jane Doe",
        "hey! are we still on for tonight? 🙂",
        TEXT,
    )


def test_unixtime_only_is_utc_and_text_entities_are_used(single: ParsedChat) -> None:
    message = by_id(single, "118")
    assert message.timestamp == "2020-01-17T21:50:00"
    assert message.text == "only entities"


def test_entity_parts_are_concatenated_exactly(single: ParsedChat) -> None:
    assert by_id(single, "102").text == "yes, see you at https://example.org/bar — ask @janedoe!"


def test_newlines_and_zwj_emoji_are_kept(single: ParsedChat) -> None:
    assert by_id(single, "103").text == "line one\nline two\n\nline four 👩\u200d👩\u200d👧"


def test_reply_edit_and_forward_meta(single: ParsedChat) -> None:
    assert by_id(single, "104").meta == {"source_id": "104", "reply_to": "103", "edited": True}
    forwarded = by_id(single, "105")
    assert forwarded.meta == {"source_id": "105", "forwarded_from": "Cat Facts"}
    assert forwarded.text == "Cats sleep 16 hours a day."


def test_sticker_is_its_emoji(single: ParsedChat) -> None:
    sticker = by_id(single, "106")
    assert (sticker.kind, sticker.text, sticker.sender) == (STICKER, "😂", "John Smith")
    assert sticker.meta is not None
    assert sticker.meta["attachments"] == ["sticker.webp"]


def test_media_caption_placeholder_and_attachments(single: ParsedChat) -> None:
    captioned, bare, voice, excluded = (by_id(single, i) for i in ("107", "108", "109", "110"))
    assert (captioned.kind, captioned.text) == (MEDIA, "the view from here")
    assert captioned.meta is not None
    assert captioned.meta["attachments"] == ["photo_1@17-01-2020_21-57-00.jpg"]
    assert (bare.kind, bare.text) == (MEDIA, "<photo>")
    assert (voice.kind, voice.text) == (MEDIA, "<voice message>")
    # A file left out of the export has a description, not a name: no attachment is listed.
    assert (excluded.kind, excluded.text, excluded.meta) == (MEDIA, "<file>", {"source_id": "110"})


def test_phone_calls_are_calls_by_the_actor(single: ParsedChat) -> None:
    answered, missed = by_id(single, "111"), by_id(single, "112")
    assert (answered.kind, answered.sender, answered.text) == (
        CALL,
        "John Smith",
        "Call (2 min 5 s)",
    )
    assert (missed.kind, missed.sender, missed.text) == (CALL, "Jane Doe", "Missed call")


def test_pin_is_a_system_message_pointing_at_the_pinned_one(single: ParsedChat) -> None:
    pin = by_id(single, "113")
    assert (pin.kind, pin.sender, pin.text) == (SYSTEM, None, "Jane Doe pinned a message")
    assert pin.meta == {"source_id": "113", "reply_to": "107"}


def test_reactions_name_recent_reactors_only(single: ParsedChat) -> None:
    assert by_id(single, "114").meta == {
        "source_id": "114",
        "reactions": [
            {"sender": "John Smith", "emoji": "❤️"},
            {"sender": None, "emoji": "❤️"},
        ],
    }


def test_bad_records_are_skipped_with_their_position(single: ParsedChat) -> None:
    assert [(s.position, s.reason) for s in single.skipped] == [
        ("messages[14]", "a message Telegram could not export (type unsupported)"),
        ("messages[15]", 'no usable "date" or "date_unixtime"'),
        ("messages[16].text", "expected a string or a list of text parts"),
    ]


def test_a_sender_that_is_not_a_name_is_skipped_not_called_deleted(tmp_path: Path) -> None:
    def message(i: int, sender: object) -> dict:
        return {"id": i, "type": "message", "date": f"2024-01-0{i}T10:00:00", "from": sender,
                "from_id": "user1", "text": f"m{i}"}  # fmt: skip

    export = {"name": "Ana", "type": "personal_chat", "id": 5,
              "messages": [message(1, "Ana"), message(2, ["x"]), message(3, None)]}  # fmt: skip
    path = tmp_path / "result.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    (chat,) = parse(path)
    assert [m.sender for m in chat.messages] == ["Ana", "Deleted Account"]
    assert [(s.position, s.reason) for s in chat.skipped] == [
        ("messages[1].from", "expected a name (a string), or null")
    ]


def test_full_export_gives_one_chat_per_chat_including_left_ones() -> None:
    chats = parse(FIXTURES / "full_export.json")
    assert [(c.title, c.source_key) for c in chats] == [
        ("Jane Doe", "telegram:4815162342"),
        ("Hiking Club", "telegram:777000111"),
        ("Old Neighbours", "telegram:1234567890"),
    ]
    # personal_information names the exporting user.
    assert {c.me for c in chats} == {"John Smith"}
    assert [m.text for m in chats[2].messages] == ["moving out next week"]


def test_group_service_messages_read_as_sentences() -> None:
    group = parse(FIXTURES / "full_export.json")[1]
    assert [(m.kind, m.sender, m.text) for m in group.messages] == [
        (SYSTEM, None, 'John Smith created the group "Hiking" with Jane Doe, Ravi Patel'),
        (SYSTEM, None, 'John Smith changed the group name to "Hiking Club"'),
        (SYSTEM, None, "John Smith added Mei Chen, Deleted Account"),
        (TEXT, "Deleted Account", "hi all"),
        (SYSTEM, None, "Ravi Patel left the group"),
        (CALL, "Mei Chen", "Group call (10 min)"),
        (SYSTEM, None, "Mei Chen: send premium gift"),
    ]


def test_minimal_shape_falls_back_to_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "holiday_chat.json"
    minimal = {
        "messages": [
            {"type": "message", "date_unixtime": "1544006350", "from": "A", "text": "Hi"},
            {
                "type": "message",
                "date_unixtime": "1544006964",
                "from": "B",
                "text": [{"type": "bold", "text": "Link:"}, {"type": "link", "text": "x.org"}],
            },
        ]
    }
    path.write_text(json.dumps(minimal), encoding="utf-8")
    (chat,) = parse(path)
    assert (chat.title, chat.source_key) == ("holiday_chat", None)
    assert [(m.timestamp, m.sender, m.text) for m in chat.messages] == [
        ("2018-12-05T10:39:10", "A", "Hi"),
        ("2018-12-05T10:49:24", "B", "Link:x.org"),
    ]


def test_sniff_accepts_exports_and_rejects_others(tmp_path: Path) -> None:
    assert sniff(FIXTURES / "single_chat.json")
    assert sniff(FIXTURES / "full_export.json")
    assert not sniff(FIXTURES.parent / "discord" / "dm.json")
    assert not sniff(FIXTURES.parent / "signal" / "text_export.txt")
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    assert not sniff(empty)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff\xfe\x00garbage\x00" * 100)
    assert not sniff(junk)
    assert not sniff(tmp_path)


def test_folder_and_zip_exports(tmp_path: Path) -> None:
    export = tmp_path / "Telegram Desktop" / "ChatExport_2020-01-18"
    export.mkdir(parents=True)
    shutil.copy(FIXTURES / "single_chat.json", export / "result.json")
    (export / "photos").mkdir()
    (export / "photos" / "photo_1.jpg").write_bytes(b"\xff\xd8\xff")
    assert sniff(tmp_path)
    (chat,) = parse(tmp_path)
    assert (chat.title, len(chat.messages)) == ("Jane Doe", 15)

    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(export / "result.json", "ChatExport_2020-01-18/result.json")
    assert sniff(archive)
    assert parse(archive)[0].source_key == "telegram:4815162342"


def test_parse_export_with_format() -> None:
    chats = parse_export(FIXTURES / "single_chat.json", format="telegram")
    assert chats[0].title == "Jane Doe"


def test_truncated_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    text = (FIXTURES / "single_chat.json").read_text(encoding="utf-8")
    path.write_text(text[:700], encoding="utf-8")
    with pytest.raises(
        ChatImportError, match=r"result\.json: invalid JSON at line \d+, column \d+"
    ):
        parse(path)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"about": "x", "contacts": {}}, r'no "messages" or "chats" field'),
        ({"chats": {"about": "x", "list": {}}}, r'"chats\.list" is not a list'),
        ({"chats": {"list": [[]]}}, r"chats\.list\[0\] is not an object"),
        ({"chats": {"list": [{"name": "A", "messages": {}}]}}, r'"chats\.list\[0\]\.messages"'),
        ({"name": "A", "messages": "none"}, r'"messages" is not a list'),
        ([1, 2], r"top level is not a JSON object"),
    ],
)
def test_wrong_structure_names_the_expected_field(
    tmp_path: Path, document: object, expected: str
) -> None:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ChatImportError, match=expected) as err:
        parse(path)
    assert str(path) in str(err.value)


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text("  \n", encoding="utf-8")
    with pytest.raises(ChatImportError, match=r"result\.json: empty file"):
        parse(path)
