"""SMS Backup & Restore importer: conversations, MMS, surrogate-pair references, streaming."""

from __future__ import annotations

import base64
import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from convsim.core.chats.importers import ImportOptions, Source, parse_export, sms
from convsim.core.chats.messages import ChatImportError, Skipped

BACKUP = Path(__file__).parents[1] / "fixtures" / "sms" / "sms-20240302083000.xml"
OPTIONS = ImportOptions(me_name="Alex")


def parse(path: Path, options: ImportOptions = OPTIONS) -> dict:
    return {chat.title: chat for chat in parse_export(path, format="sms", options=options)}


def rows(chat) -> list[tuple]:
    return [(m.timestamp, m.sender, m.text, m.kind) for m in chat.messages]


def test_one_chat_per_conversation():
    chats = parse(BACKUP)
    assert list(chats) == ["Riya", "Riya, Sam", "+15555550199"]
    assert [c.source_key for c in chats.values()] == [
        "sms:5555550123",
        "sms:5555550123~5555550177",
        "sms:5555550199",
    ]
    assert [c.participants for c in chats.values()] == [["Riya"], ["Riya", "Sam"], ["+15555550199"]]
    assert {c.me for c in chats.values()} == {"Alex"}
    assert {c.format for c in chats.values()} == {"sms"}


def test_sent_and_received_with_surrogate_pairs_decoded():
    riya = parse(BACKUP)["Riya"]
    assert rows(riya) == [
        ("2024-03-01T18:00:00", "Riya", "hey are we still on for tonight? \U0001f606", "text"),
        # "(555) 555-0123" and "+15555550123" are one conversation; &#10; stays a newline.
        (
            "2024-03-01T18:01:00",
            "Alex",
            "yes! 7pm\nat the usual place \U0001f469\u200d\U0001f4bb",
            "text",
        ),
        ("2024-03-01T18:03:00", "Riya", "hex refs too \U0001f44d & <3", "text"),
        ("2024-03-01T18:04:00", "Riya", "half an emoji \ufffd here", "text"),
        ("2024-03-01T18:05:00", "Riya", "look at the menu \U0001f913", "media"),
    ]


def test_mms_with_text_and_image():
    mms = parse(BACKUP)["Riya"].messages[-1]
    assert mms.kind == "media"
    assert mms.text == "look at the menu \U0001f913"  # the SMIL layout part is not text
    assert mms.meta == {"attachments": ["IMG_20240301_180455.jpg"]}


def test_group_mms_sent_and_received():
    group = parse(BACKUP)["Riya, Sam"]
    assert rows(group) == [
        ("2024-03-01T18:06:00", "Alex", "who's coming?", "text"),
        ("2024-03-01T18:07:00", "Sam", "me! \U0001f606", "media"),
    ]
    assert group.messages[0].meta is None
    assert group.messages[1].meta == {"attachments": ["PXL_20240301_180630.png"]}


def test_unusable_records_are_skipped_in_their_conversation():
    chats = parse(BACKUP)
    assert chats["Riya"].skipped == [
        Skipped("record 3", "sms box 3: a draft, outbox or failed message, never delivered")
    ]
    assert chats["+15555550199"].skipped == [Skipped("record 7", "empty message body")]
    assert rows(chats["+15555550199"]) == [
        ("2024-03-02T08:15:00", "+15555550199", "Your verification code is 482913", "text")
    ]


def test_me_name_defaults_to_me():
    chats = parse(BACKUP, ImportOptions())
    assert chats["Riya"].me == "Me"
    assert chats["Riya"].messages[1].sender == "Me"


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [
        (b"a &#55357;&#56838; b", b"a &#128518; b"),
        (b"&#xD83D;&#xDE06;", b"&#128518;"),
        (b"&#xd83d;&#xde06;", b"&#128518;"),
        (b"&#55357;&#xDE06;", b"&#128518;"),  # mixed decimal and hex halves
        (b"&#55357;", b"&#65533;"),  # lone high
        (b"x&#56838;y", b"x&#65533;y"),  # lone low
        (b"&#55357;&#55357;&#56838;", b"&#65533;&#128518;"),  # high, then a full pair
        (b"&#55357; &#56838;", b"&#65533; &#65533;"),  # halves not adjacent
        (b"&#55000;&#128518;&#57344;&amp;#55357;", b"&#55000;&#128518;&#57344;&amp;#55357;"),
        (b"no references", b"no references"),
    ],
)
def test_fix_surrogate_refs(raw: bytes, fixed: bytes):
    assert sms.fix_surrogate_refs(raw) == fixed


class Trickle(io.RawIOBase):
    """A stream that hands out at most `step` bytes per read."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step, self._pos = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data[self._pos : self._pos + self._step]
        self._pos += len(chunk)
        return chunk


def test_reader_handles_references_split_across_chunks():
    data = (
        b'<sms body="&#55357;&#56838;&#xD83D;&#xDC4D;x&#55357;&#56425;&#8205;&#55357;&#56507;'
        b'&#55357;" />&#55357;'
    )
    expected = sms.fix_surrogate_refs(data)
    assert expected.count(b"&#65533;") == 2
    for step in range(1, len(data) + 1):
        reader = sms.SurrogateFixingReader(Trickle(data, step))  # type: ignore[arg-type]
        out = b""
        while chunk := reader.read(3):
            out += chunk
        assert out == expected, step


def test_zip_and_folder_of_backups(tmp_path: Path):
    archive = tmp_path / "backup.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(BACKUP, "SMSBackupRestore/" + BACKUP.name)
        z.writestr("SMSBackupRestore/calls-20240302083000.xml", "<calls count='0'></calls>")
    assert [rows(c) for c in parse(archive).values()] == [rows(c) for c in parse(BACKUP).values()]
    assert parse(archive)["Riya"].skipped[0].position == "record 3"


def test_sniff(tmp_path: Path):
    calls = tmp_path / "calls-20240302.xml"
    calls.write_text("<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n<calls count='0'/>")
    table = tmp_path / "chat.csv"
    table.write_text("timestamp,sender,text\n2024-03-01T18:00:00,a,<smses> is a tag\n")
    with Source(BACKUP) as source:
        assert sms.sniff(source)
    with Source(BACKUP.parent) as source:
        assert sms.sniff(source)
    for path in (calls, table, tmp_path):
        with Source(path) as source:
            assert not sms.sniff(source), path


def test_truncated_backup_names_file_and_line(tmp_path: Path):
    lines = BACKUP.read_bytes().splitlines(keepends=True)
    path = tmp_path / "sms-truncated.xml"
    path.write_bytes(b"".join(lines[:12]) + lines[12][:200])
    with pytest.raises(ChatImportError) as error:
        parse(path)
    message = str(error.value)
    assert message.startswith(f"{path}: invalid XML at line 13, column ")
    assert "expected a complete SMS Backup & Restore backup" in message


def test_invalid_bytes_name_the_line(tmp_path: Path):
    path = tmp_path / "sms-latin1.xml"
    data = BACKUP.read_bytes().replace(b"tonight?", "tonight\u00bf".encode("latin-1"))
    path.write_bytes(data)
    with pytest.raises(ChatImportError, match=r"invalid XML at line 7, column \d+"):
        parse(path)


def test_wrong_root_element(tmp_path: Path):
    path = tmp_path / "calls.xml"
    path.write_text("<?xml version='1.0' encoding='UTF-8' ?>\n<calls count='1'><call/></calls>\n")
    with pytest.raises(ChatImportError) as error:
        parse(path)
    assert str(error.value).startswith(f"{path}: the root element is <calls>; expected <smses>")


def test_empty_file(tmp_path: Path):
    path = tmp_path / "sms.xml"
    path.write_bytes(b"")
    with pytest.raises(ChatImportError, match=r"invalid XML at line 1, column 0 \(no element"):
        parse(path)


def test_mms_without_address_attribute_uses_addrs(tmp_path: Path):
    path = tmp_path / "sms.xml"
    path.write_text(
        '<smses count="2">\n'
        '<mms date="1717214460000" msg_box="2"><parts><part ct="text/plain" text="hi both"/>'
        '</parts><addrs><addr address="+15550000009" type="137"/>'
        '<addr address="+15550000002" type="151"/><addr address="+15550000003" type="151"/>'
        "</addrs></mms>\n"
        '<mms date="1717214520" msg_box="1"><parts><part ct="text/plain" text="hey"/></parts>'
        '<addrs><addr address="+15550000002" type="137"/><addr address="+15550000009" '
        'type="151"/><addr address="+15550000003" type="151"/></addrs></mms>\n'
        "</smses>\n"
    )
    (chat,) = parse(path).values()
    assert chat.source_key == "sms:5550000002~5550000003"
    # The second date is in seconds, as some converters write it.
    assert rows(chat) == [
        ("2024-06-01T04:01:00", "Alex", "hi both", "text"),
        ("2024-06-01T04:02:00", "+15550000002", "hey", "text"),
    ]


def test_large_backup_is_streamed(tmp_path: Path):
    """~20 MB of base64 attachments must not be held in memory at once."""
    path = tmp_path / "sms-big.xml"
    blob = base64.b64encode(bytes(range(256)) * 1200).decode()  # ~400 KB per MMS
    with path.open("w", encoding="utf-8") as out:
        out.write("<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n<smses count='0'>\n")
        for i in range(2000):
            body = f"message {i} &#55357;&#56838;" + "x" * (i % 17)
            out.write(
                f'<sms protocol="0" address="+1555555{i % 7:04d}" date="{1709316000000 + i * 1000}"'
                f' type="{1 + i % 2}" body="{body}" contact_name="Friend {i % 7}" />\n'
            )
        for i in range(50):
            out.write(
                f'<mms date="{1709318000000 + i}" msg_box="1" address="+15555550000" '
                'contact_name="Friend 0"><parts><part ct="image/jpeg" name="IMG_'
                f'{i}.jpg" data="{blob}"/></parts><addrs><addr address="+15555550000" '
                'type="137"/></addrs></mms>\n'
            )
        out.write("</smses>\n")
    assert path.stat().st_size > 20_000_000
    tracemalloc.start()
    try:
        chats = parse(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000
    assert len(chats) == 7
    assert sum(len(c.messages) for c in chats.values()) == 2050
    texts = [m.text for c in chats.values() for m in c.messages if m.kind == "text"]
    assert all(t.startswith("message ") and "\U0001f606" in t for t in texts)
    assert chats["Friend 0"].messages[-1].meta == {"attachments": ["IMG_49.jpg"]}
