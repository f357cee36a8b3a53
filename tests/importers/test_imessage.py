"""iMessage importer: chat.db files are built per test by `imessage_db` (real schema subset)."""

from __future__ import annotations

import hashlib
import sqlite3
import zipfile
from contextlib import closing
from pathlib import Path

import pytest
from imessage_db import ChatDb, apple_ns, apple_s, attributed_body

from convsim.core.chats.importers import ImportOptions, Source, imessage, parse_export
from convsim.core.chats.messages import ChatImportError, ParsedChat, Skipped

ALICE, BOB, CAROL = "+15551234567", "bob@example.com", "+447700900123"
ONE_TO_ONE = f"iMessage;-;{ALICE}"
GROUP = "iMessage;+;chat884201945613"
WALK = "Yes! On my way \U0001f6b2 \U0001f469\u200d\U0001f469\u200d\U0001f467"


def ns(clock: str, day: str = "2024-03-01") -> int:
    return apple_ns(f"{day}T{clock}")


def build_standard(tmp_path: Path) -> Path:
    """A one-to-one chat with every message variant, a group chat, and an empty chat."""
    db = ChatDb(tmp_path / "chat.db")
    alice, bob, carol = db.handle(ALICE), db.handle(BOB, "iMessage"), db.handle(CAROL, "SMS")
    me, her = {"is_from_me": 1}, {"handle_id": alice}
    dm = db.chat(ONE_TO_ONE, ALICE, handles=(alice,))
    db.message(dm, "A1", ns("09:15:00"), text="Hey, are you around?", **her)
    db.message(dm, "A2", ns("09:16:30"), attributedBody=attributed_body(WALK), **me)
    photo = db.message(dm, "A3", ns("09:17:00"), text="\ufffc", cache_has_attachments=1, **her)
    db.attachment(photo, "IMG_0042.HEIC", "~/Library/Messages/Attachments/4a/10/X/IMG_0042.HEIC")
    view = db.message(dm, "A4", ns("09:18:00"), text="\ufffcLook at this\nview", **her)
    db.attachment(view, None, "~/Library/Messages/Attachments/9c/12/Y/IMG_0043.HEIC")
    db.message(dm, "A5", ns("09:19:00"), text="See you at 10", date_edited=ns("09:20:00"), **me)
    db.message(dm, "A6", ns("09:21:00"), text="Great", thread_originator_guid="A1", **her)
    db.message(dm, "A7", ns("09:22:00"), **her)  # no text, no body, no attachment
    unsent = {"date_edited": ns("09:23:40"), "date_retracted": ns("09:23:40")}
    db.message(dm, "A8", ns("09:23:00"), **unsent, **me)
    # Inserted late (higher ROWID) but sent first: must still come out first.
    db.message(dm, "A0", ns("09:00:00"), text="Morning!", **me)
    db.tapback(dm, "T1", ns("09:30:00"), "p:0/A1", 2000, text="Loved \u201cHey\u201d", **me)
    db.tapback(dm, "T2", ns("09:31:00"), "p:0/A2", 2001, text="Liked \u201cYes!\u201d", **her)
    db.tapback(dm, "T3", ns("09:32:00"), "p:0/A2", 2003, text="Laughed at \u201cYes\u201d", **her)
    db.tapback(dm, "T4", ns("09:33:00"), "p:0/A1", 3000, text="Removed a heart", **me)
    db.tapback(dm, "T5", ns("09:34:00"), "p:1/A4", 2004, text="Emphasized an image", **me)
    db.tapback(dm, "T6", ns("09:35:00"), "p:0/GONE", 2000, text="Loved a message", **her)
    group = db.chat(GROUP, "chat884201945613", "Climbing crew", handles=(alice, bob, carol))
    db.message(group, "G1", ns("18:00:00"), handle_id=bob, item_type=2, group_title="Climbing crew")
    db.message(group, "G2", ns("18:01:00"), item_type=1, other_handle=carol, **me)
    db.message(group, "G3", ns("18:02:00"), text="thanks for adding me", handle_id=carol)
    db.message(group, "G4", ns("18:03:00"), handle_id=bob, item_type=3, group_action_type=0)
    db.tapback(
        group, "G5", ns("18:04:00"), "bp:G3", 2005, text="Questioned \u201cthanks\u201d", **her
    )
    db.chat("iMessage;-;+15550000000", "+15550000000")  # a chat without messages
    return db.close()


def parse(path: Path, **options: str) -> list[ParsedChat]:
    with Source(path) as source:
        return imessage.parse(source, ImportOptions(**options))


def rows(chat: ParsedChat) -> list[tuple[str, str | None, str, str]]:
    return [(m.timestamp, m.sender, m.text, m.kind) for m in chat.messages]


def test_sniff_accepts_the_database_and_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "Messages copy #2 (100%)?"  # characters that mean something in a URI
    folder.mkdir()
    path = build_standard(folder)
    for candidate in (path, folder, tmp_path):  # tmp_path: chat.db one level down
        with Source(candidate) as source:
            assert imessage.sniff(source)
    assert parse_export(folder)[0].source_key == f"imessage:{ONE_TO_ONE}"


def test_chats_titles_keys_participants(tmp_path: Path) -> None:
    dm, group = parse(build_standard(tmp_path), me_name="Sam")
    assert (dm.format, dm.title, dm.source_key, dm.me) == (
        "imessage",
        ALICE,
        f"imessage:{ONE_TO_ONE}",
        "Sam",
    )
    assert (group.title, group.source_key) == ("Climbing crew", f"imessage:{GROUP}")
    assert dm.participants == [ALICE]
    assert group.participants == [ALICE, BOB, CAROL]


def test_one_to_one_messages_in_order(tmp_path: Path) -> None:
    dm = parse(build_standard(tmp_path), me_name="Sam")[0]
    assert rows(dm) == [
        ("2024-03-01T09:00:00", "Sam", "Morning!", "text"),
        ("2024-03-01T09:15:00", ALICE, "Hey, are you around?", "text"),
        ("2024-03-01T09:16:30", "Sam", WALK, "text"),
        ("2024-03-01T09:17:00", ALICE, "", "media"),
        ("2024-03-01T09:18:00", ALICE, "Look at this\nview", "text"),
        ("2024-03-01T09:19:00", "Sam", "See you at 10", "text"),
        ("2024-03-01T09:21:00", ALICE, "Great", "text"),
        ("2024-03-01T09:23:00", "Sam", "", "deleted"),
    ]


def test_meta_attachments_edits_replies(tmp_path: Path) -> None:
    by_id = {m.meta["source_id"]: m.meta for m in parse(build_standard(tmp_path))[0].messages}
    assert by_id["A3"] == {"source_id": "A3", "attachments": ["IMG_0042.HEIC"]}
    assert by_id["A4"]["attachments"] == ["IMG_0043.HEIC"]  # no transfer_name: file's own name
    assert by_id["A5"] == {"source_id": "A5", "edited": True}
    assert by_id["A6"] == {"source_id": "A6", "reply_to": "A1"}
    assert by_id["A8"] == {"source_id": "A8", "edited": True}


def test_tapbacks_attach_replace_and_remove(tmp_path: Path) -> None:
    dm, group = parse(build_standard(tmp_path), me_name="Sam")
    by_id = {m.meta["source_id"]: m.meta for m in dm.messages}
    assert "reactions" not in by_id["A1"]  # loved, then the love was removed
    assert by_id["A2"]["reactions"] == [{"sender": ALICE, "emoji": "\U0001f602"}]  # like -> laugh
    assert by_id["A4"]["reactions"] == [{"sender": "Sam", "emoji": "\u203c\ufe0f"}]
    assert group.messages[2].meta["reactions"] == [{"sender": ALICE, "emoji": "\u2753"}]
    assert all(not m.text.startswith(("Loved", "Liked", "Laughed")) for m in dm.messages)


def test_unplaceable_rows_are_skipped(tmp_path: Path) -> None:
    dm = parse(build_standard(tmp_path))[0]
    assert dm.skipped == [
        Skipped("message ROWID 7", "no text"),
        Skipped("message ROWID 15", "reaction to unknown message GONE"),
    ]


def test_group_events_are_system_messages(tmp_path: Path) -> None:
    group = parse(build_standard(tmp_path), me_name="Sam")[1]
    assert rows(group) == [
        ("2024-03-01T18:00:00", None, f'{BOB} named the conversation "Climbing crew"', "system"),
        ("2024-03-01T18:01:00", None, f"Sam added {CAROL} to the conversation", "system"),
        ("2024-03-01T18:02:00", CAROL, "thanks for adding me", "text"),
        ("2024-03-01T18:03:00", None, f"{BOB} left the conversation", "system"),
    ]


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("ok \U0001f44c", b"\x07"),  # 7 bytes: one length byte
        ("\u00e9" * 100, b"\x81\xc8\x00"),  # 200 UTF-8 bytes
        ("long \U0001f600 " + "x" * 70_000, b"\x82\x7a\x11\x01\x00"),  # 70010 bytes
    ],
    ids=["short", "medium", "long"],
)
def test_attributed_body_length_forms(tmp_path: Path, text: str, prefix: bytes) -> None:
    blob = attributed_body(text)
    assert blob[blob.index(b"\x01+") + 2 :].startswith(prefix)
    assert imessage.decode_attributed_body(blob) == text
    db = ChatDb(tmp_path / "chat.db")
    chat = db.chat(ONE_TO_ONE, ALICE)
    db.message(chat, "B1", ns("10:00:00"), attributedBody=blob, handle_id=db.handle(ALICE))
    assert parse(db.close())[0].messages[0].text == text


def test_attributed_body_decoder_edge_cases() -> None:
    medium = "m" * 40_000  # a 2-byte length above int16 range still reads as unsigned
    wide = attributed_body(medium, b"\x81" + (40_000).to_bytes(2, "little"))
    assert imessage.decode_attributed_body(wide) == medium
    assert (
        imessage.decode_attributed_body(attributed_body("\ufffc\ufffcpics")) == "\ufffc\ufffcpics"
    )
    blob = attributed_body("hello")
    assert imessage.decode_attributed_body(blob[: blob.index(b"hello") + 3]) is None  # truncated
    assert imessage.decode_attributed_body(b"bplist00\x00\x01") is None
    assert imessage.decode_attributed_body(attributed_body("x", b"\x85")) is None  # nil tag
    assert imessage.decode_attributed_body(None) is None


def test_undecodable_body_and_placeholder_only_text(tmp_path: Path) -> None:
    db = ChatDb(tmp_path / "chat.db")
    chat, alice = db.chat(ONE_TO_ONE, ALICE), db.handle(ALICE)
    db.message(
        chat, "B1", ns("10:00:00"), attributedBody=b"\x04\x0bstreamtyped junk", handle_id=alice
    )
    db.message(
        chat, "B2", ns("10:01:00"), attributedBody=attributed_body("\ufffc"), handle_id=alice
    )
    db.message(chat, "B3", ns("10:02:00"), text="still here", handle_id=alice)
    db.message(chat, "B4", ns("10:03:00"), cache_has_attachments=1, handle_id=alice)
    result = parse(db.close())[0]
    assert rows(result) == [
        ("2024-03-01T10:02:00", ALICE, "still here", "text"),
        ("2024-03-01T10:03:00", ALICE, "", "media"),  # attachment rows already purged
    ]
    assert result.messages[1].meta == {"source_id": "B4"}
    assert result.skipped == [
        Skipped("message ROWID 1", "attributedBody could not be decoded"),
        Skipped("message ROWID 2", "no text"),
    ]


def test_seconds_epoch_and_old_schema(tmp_path: Path) -> None:
    """Pre-10.13 databases store seconds and lack the newer optional columns."""
    drop = ("date_edited", "date_retracted", "thread_originator_guid", "associated_message_emoji")
    db = ChatDb(tmp_path / "chat.db", drop=drop)
    chat, alice = db.chat(ONE_TO_ONE, ALICE), db.handle(ALICE)
    db.message(chat, "S1", apple_s("2014-06-02T21:05:09"), text="old times", handle_id=alice)
    reacted = "Reacted \U0001fae1 to \u201cold times\u201d"
    db.tapback(
        chat, "S2", apple_s("2014-06-02T21:06:00"), "p:0/S1", 2006, text=reacted, is_from_me=1
    )
    result = parse(db.close())[0]
    assert rows(result) == [("2014-06-02T21:05:09", ALICE, "old times", "text")]
    assert result.messages[0].meta["reactions"] == [{"sender": "Me", "emoji": "\U0001fae1"}]


@pytest.mark.parametrize(
    ("kind", "emoji"),
    [
        (2000, "\u2764\ufe0f"),
        (2001, "\U0001f44d"),
        (2002, "\U0001f44e"),
        (2003, "\U0001f602"),
        (2004, "\u203c\ufe0f"),
        (2005, "\u2753"),
        (2006, "\U0001f979"),
    ],
)
def test_tapback_types(tmp_path: Path, kind: int, emoji: str) -> None:
    db = ChatDb(tmp_path / "chat.db")
    chat, alice = db.chat(ONE_TO_ONE, ALICE), db.handle(ALICE)
    db.message(chat, "M1", ns("11:00:00"), text="news", is_from_me=1)
    custom = {"associated_message_emoji": "\U0001f979"} if kind == 2006 else {}
    db.tapback(
        chat, "R1", ns("11:01:00"), "p:0/M1", kind, text="Reacted", handle_id=alice, **custom
    )
    [result] = parse(db.close())
    assert len(result.messages) == 1
    assert result.messages[0].meta["reactions"] == [{"sender": ALICE, "emoji": emoji}]


def test_custom_emoji_without_an_emoji_is_skipped(tmp_path: Path) -> None:
    db = ChatDb(tmp_path / "chat.db")
    chat = db.chat(ONE_TO_ONE, ALICE)
    db.message(chat, "M1", ns("11:00:00"), text="news", is_from_me=1)
    db.tapback(chat, "R1", ns("11:01:00"), "p:0/M1", 2006, handle_id=db.handle(ALICE))
    assert parse(db.close())[0].skipped == [
        Skipped("message ROWID 2", "custom emoji reaction without an emoji")
    ]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_database_is_never_written(tmp_path: Path) -> None:
    path = build_standard(tmp_path)
    with sqlite3.connect(path) as db:  # Messages keeps chat.db in WAL mode
        db.execute("PRAGMA journal_mode=WAL")
    before, mtime = digest(path), path.stat().st_mtime_ns
    assert len(parse(path)) == 2
    assert (digest(path), path.stat().st_mtime_ns) == (before, mtime)
    with closing(imessage._connect(path)) as db, pytest.raises(sqlite3.OperationalError):
        db.execute("CREATE TABLE scribble (x)")


def test_other_sqlite_database_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("CREATE TABLE message (ROWID INTEGER PRIMARY KEY, text TEXT)")
    with Source(path) as source:
        assert not imessage.sniff(source)
    with pytest.raises(ChatImportError) as error:
        parse(path)
    assert str(path) in str(error.value)
    assert "no `handle` table" in str(error.value)


def test_missing_message_column_is_named(tmp_path: Path) -> None:
    path = ChatDb(tmp_path / "chat.db", drop=("is_from_me",)).close()
    with pytest.raises(ChatImportError, match=r"table `message` has no `is_from_me` column"):
        parse(path)


@pytest.mark.parametrize("content", [b"", b"SQLite format 2\x00" + b"\x00" * 100, b"hello"])
def test_non_sqlite_files_are_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "chat.db"
    path.write_bytes(content)
    with Source(path) as source:
        assert not imessage.sniff(source)
    with pytest.raises(ChatImportError) as error:
        parse(path)
    assert f"{path}: not a SQLite database (bad header at byte 0)" in str(error.value)


def test_corrupt_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with Source(path) as source:
        assert not imessage.sniff(source)
    with pytest.raises(ChatImportError, match=r"chat\.db: unreadable SQLite database"):
        parse(path)


def test_folders_and_zips_without_a_database(tmp_path: Path) -> None:
    (tmp_path / "Attachments").mkdir()
    with Source(tmp_path) as source:
        assert not imessage.sniff(source)
        with pytest.raises(ChatImportError, match=r"no chat\.db in this folder"):
            imessage.parse(source, ImportOptions())
    elsewhere = tmp_path.parent / f"{tmp_path.name}-db"
    elsewhere.mkdir()
    archive = tmp_path / "messages.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("chat.db", build_standard(elsewhere).read_bytes())
    with Source(archive) as source:
        assert not imessage.sniff(source)
