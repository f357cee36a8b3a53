"""WhatsApp importer: layouts, locales, markers, zips, date order and bad input."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

from convsim.core.chats.importers import parse_export, whatsapp
from convsim.core.chats.importers.base import AmbiguousDateOrder, ImportOptions, Source
from convsim.core.chats.messages import ChatImportError, ParsedChat, Skipped

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "whatsapp"
LRM, NBSP, NNBSP = "\u200e", "\u00a0", "\u202f"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man, ZWJ, woman, ZWJ, girl
THUMB = "\U0001f44d\U0001f3fd"  # thumbs up, medium skin tone


def parse_file(path: Path, **options: str | None) -> ParsedChat:
    with Source(path) as source:
        chats = whatsapp.parse(source, ImportOptions(**options))  # type: ignore[arg-type]
    assert len(chats) == 1
    return chats[0]


def parse_text(
    tmp_path: Path, text: str, name: str = "chat.txt", **options: str | None
) -> ParsedChat:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return parse_file(path, **options)


def rows(chat: ParsedChat) -> list[tuple]:
    return [(m.timestamp, m.sender, m.text, m.kind, m.meta) for m in chat.messages]


def sniff(path: Path) -> bool:
    with Source(path) as source:
        return whatsapp.sniff(source)


# --- whole exports -------------------------------------------------------------------------


def test_android_export_with_system_lines_markers_and_multiline_bodies() -> None:
    chat = parse_file(FIXTURES / "WhatsApp Chat with Riya.txt")
    assert chat.format == "whatsapp"
    assert chat.title == "Riya"
    assert chat.source_key is None
    assert chat.skipped == []
    assert rows(chat) == [
        (
            "2021-02-14T09:58:00",
            None,
            "Messages and calls are end-to-end encrypted. No one outside of this chat, not even "
            "WhatsApp, can read or listen to them. Tap to learn more.",
            "system",
            None,
        ),
        ("2021-02-14T10:02:00", "Riya", "Happy Valentine's Day!! \u2764\ufe0f", "text", None),
        (
            "2021-02-14T10:03:00",
            "Sam",
            "Aww thank you \U0001f618\ndid you get the flowers?\n\nthey said delivery before 11",
            "text",
            None,
        ),
        ("2021-02-14T10:05:00", "Riya", "<Media omitted>", "media", None),
        ("2021-02-14T10:05:00", "Riya", f"They're beautiful {FAMILY} jk {THUMB}", "text", None),
        ("2021-02-14T10:07:00", "Sam", "This message was deleted", "deleted", None),
        ("2021-02-14T10:08:00", "Riya", "Dinner at 8?", "text", {"edited": True}),
        ("2021-02-14T10:09:00", "Sam", "Sure: the usual place", "text", None),
        (
            "2021-02-14T10:10:00",
            None,
            'Sam changed the subject from "Us: v1" to "Us"',
            "system",
            None,
        ),
        ("2021-02-15T21:15:00", None, "Riya:.", "system", None),
        ("2021-02-15T21:16:00", "Riya", "You deleted this message", "deleted", None),
        ("2021-02-15T21:17:00", "Sam", f"night {FAMILY}", "text", None),
    ]


def test_zwj_and_skin_tone_emoji_survive_unnormalised() -> None:
    chat = parse_file(FIXTURES / "WhatsApp Chat with Riya.txt")
    text = chat.messages[4].text
    assert FAMILY in text and THUMB in text
    assert text.count("\u200d") == 2  # the zero-width joiners are still there
    assert len(text) == len(f"They're beautiful {FAMILY} jk {THUMB}")


def test_spanish_android_12h_with_attachments_captions_and_localised_markers() -> None:
    chat = parse_file(FIXTURES / "Chat de WhatsApp con Familia.txt")
    assert chat.title == "Familia"
    assert rows(chat)[1:] == [
        ("2022-01-03T20:06:00", "Mamá", "Hola hijos \U0001f44b", "text", None),
        ("2022-01-03T20:07:00", "Luis", "<Multimedia omitido>", "media", None),
        (
            "2022-01-03T20:07:00",
            "Luis",
            "IMG-20220103-WA0004.jpg (archivo adjunto)\nLa playa hoy \u2600\ufe0f",
            "media",
            {"attachments": ["IMG-20220103-WA0004.jpg"]},
        ),
        ("2022-01-03T20:09:00", "Mamá", "Se eliminó este mensaje.", "deleted", None),
        ("2022-01-03T20:10:00", "Mamá", "Eliminaste este mensaje.", "deleted", None),
        ("2022-01-04T00:10:00", "Luis", "ya es medianoche", "text", {"edited": True}),
        (
            "2022-01-14T12:20:00",
            "Luis",
            "STK-20220114-WA0007.webp (archivo adjunto)",
            "sticker",
            {"attachments": ["STK-20220114-WA0007.webp"]},
        ),
        ("2022-01-14T23:59:00", None, "Mamá añadió a Ana", "system", None),
    ]
    assert chat.messages[0].kind == "system" and chat.messages[0].sender is None


IOS_ROWS = [
    (
        "2024-01-02T10:00:00",
        None,
        "Messages and calls are end-to-end encrypted. No one outside of this chat, not even "
        "WhatsApp, can read or listen to them.",
        "system",
        None,
    ),
    ("2024-01-02T10:15:32", "Riya", "morning!", "text", None),
    (
        "2024-01-02T10:16:01",
        "Riya",
        "<attached: 00000012-PHOTO-2024-01-02-10-16-01.jpg>",
        "media",
        {"attachments": ["00000012-PHOTO-2024-01-02-10-16-01.jpg"]},
    ),
    ("2024-01-02T10:16:30", "Riya", "image omitted", "media", None),
    ("2024-01-02T10:16:45", "Riya", "sticker omitted", "sticker", None),
    ("2024-01-02T10:20:00", f"+1{NBSP}(555){NBSP}123-4567", "who is this?", "text", None),
    ("2024-01-02T12:05:09", "Riya", "see you at 8", "text", {"edited": True}),
    ("2024-01-02T12:06:00", "Riya", "This message was deleted.", "deleted", None),
    ("2024-01-02T12:07:00", "Riya", "Missed voice call", "call", None),
    (
        "2024-01-02T12:08:00",
        "Riya",
        "Trip plan.pdf \u2022 3 pages document omitted",
        "media",
        {"attachments": ["Trip plan.pdf"]},
    ),
    ("2024-01-13T00:10:00", "Riya", "up late\na second line", "text", None),
]


def test_ios_zip_with_media_finds_chat_by_content_and_titles_from_zip(tmp_path: Path) -> None:
    archive = tmp_path / "WhatsApp Chat - Riya.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("00000012-PHOTO-2024-01-02-10-16-01.jpg", b"\xff\xd8\xff\xe0fake jpeg")
        # An attached document that looks like a chat: the app's own _chat.txt must win.
        zf.writestr("00000013-old chat.txt", "31/12/2019, 10:00 - Old: not this one\n")
        zf.write(FIXTURES / "_chat.txt", "_chat.txt")
    assert sniff(archive)
    chat = parse_file(archive)
    assert chat.title == "Riya"
    assert rows(chat) == IOS_ROWS


def test_ios_chat_txt_alone_takes_its_stem_as_title() -> None:
    chat = parse_file(FIXTURES / "_chat.txt")
    assert chat.title == "_chat"
    assert rows(chat) == IOS_ROWS


def test_android_zip_without_media_and_with_generic_names(tmp_path: Path) -> None:
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FIXTURES / "WhatsApp Chat with Riya.txt", "WhatsApp Chat with Riya.txt")
    assert parse_file(archive).title == "Riya"
    plain = tmp_path / "backup.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.write(FIXTURES / "_chat.txt", "_chat.txt")
    chat = parse_file(plain)
    assert chat.title == "backup"
    assert len(chat.messages) == len(IOS_ROWS)


def test_unzipped_export_folder(tmp_path: Path) -> None:
    folder = tmp_path / "WhatsApp Chat - Riya"
    folder.mkdir()
    (folder / "_chat.txt").write_bytes((FIXTURES / "_chat.txt").read_bytes())
    (folder / "00000012-PHOTO-2024-01-02-10-16-01.jpg").write_bytes(b"\xff\xd8\xff")
    assert sniff(folder)
    chat = parse_file(folder)
    assert chat.title == "Riya"
    assert rows(chat) == IOS_ROWS


@pytest.mark.parametrize("packed", ["zip", "folder"])
def test_a_zip_or_folder_of_several_exports_imports_every_chat(tmp_path: Path, packed) -> None:
    exports = {
        "WhatsApp Chat with Ana.txt": "25/01/2024, 09:00 - Ana: hi\n25/01/2024, 09:01 - Me: yo\n",
        "WhatsApp Chat with Bo.txt": "13/01/2024, 10:00 - Bo: hey\n",
        "notes.txt": "13/01/2024, 11:00 - Cy: an attachment that looks alike\n",
    }
    where = tmp_path / "chats"
    if packed == "zip":
        where = where.with_suffix(".zip")
        with zipfile.ZipFile(where, "w") as zf:
            for name, text in exports.items():
                zf.writestr(name, text)
    else:
        where.mkdir()
        for name, text in exports.items():
            (where / name).write_text(text, encoding="utf-8")
    chats = parse_export(where)
    assert [(c.title, len(c.messages)) for c in chats] == [("Ana", 2), ("Bo", 1)]


def test_a_folder_of_ios_exports_titles_each_chat_from_its_folder(tmp_path: Path) -> None:
    top = tmp_path / "backups"
    for name, who in (("WhatsApp Chat - Sam", "Sam"), ("WhatsApp Chat - Bo", "Bo")):
        (top / name).mkdir(parents=True)
        (top / name / "_chat.txt").write_text(
            f"[25/01/2024, 09:00:00] {who}: hi\n[25/01/2024, 09:01:00] Me: yo\n", encoding="utf-8"
        )
    assert sorted(c.title for c in parse_export(top)) == ["Bo", "Sam"]


def test_zip_without_a_chat_is_refused_naming_the_archive(tmp_path: Path) -> None:
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("IMG-20200101-WA0001.jpg", b"\xff\xd8\xff")
        zf.writestr("readme.txt", "just some notes\n")
    assert not sniff(archive)
    with pytest.raises(ChatImportError, match=r"photos\.zip: no WhatsApp chat found"):
        parse_file(archive)


def test_a_zip_cut_short_is_called_a_damaged_zip_not_text(tmp_path: Path) -> None:
    whole = tmp_path / "chat.zip"
    with zipfile.ZipFile(whole, "w") as zf:
        zf.writestr("WhatsApp Chat with Riya.txt", "12/01/2024, 09:00 - Riya: hey\n" * 50)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[:120])
    with pytest.raises(ChatImportError, match=r"cut\.zip: a damaged or incomplete zip archive"):
        parse_export(cut)


def test_parse_export_detects_whatsapp(tmp_path: Path) -> None:
    chats = parse_export(FIXTURES / "WhatsApp Chat with Riya.txt")
    assert chats[0].format == "whatsapp" and len(chats[0].messages) == 12


# --- header layouts in every locale variant ------------------------------------------------

HEADERS = [
    # Android, 24 h, 2- and 4-digit years, slashes, dots, dashes, with and without the comma
    ("31/12/20, 23:59 - Ana: hi", "2020-12-31T23:59:00"),
    ("31/12/2020, 23:59 - Ana: hi", "2020-12-31T23:59:00"),
    ("31.12.20, 23:59 - Ana: hi", "2020-12-31T23:59:00"),
    ("31-12-2020 23:59 - Ana: hi", "2020-12-31T23:59:00"),
    ("2020/12/31, 23:59 - Ana: hi", "2020-12-31T23:59:00"),
    ("2020-12-31 23:59 - Ana: hi", "2020-12-31T23:59:00"),
    # Android, 12 h: AM/PM, am/pm, a. m./p. m., with plain, no-break and narrow no-break spaces
    ("12/31/20, 11:59 PM - Ana: hi", "2020-12-31T23:59:00"),
    ("31/12/2020, 11:59 pm - Ana: hi", "2020-12-31T23:59:00"),
    (f"12/31/20, 11:59{NNBSP}PM - Ana: hi", "2020-12-31T23:59:00"),
    ("31/12/2020, 12:10 a. m. - Ana: hi", "2020-12-31T00:10:00"),
    (f"31/12/2020, 12:10{NBSP}p.{NBSP}m. - Ana: hi", "2020-12-31T12:10:00"),
    (f"31/12/2020,{NBSP}12:10{NNBSP}p.{NNBSP}m.{NBSP}-{NBSP}Ana: hi", "2020-12-31T12:10:00"),
    ("31/12/2020, 00:08 a. m. - Ana: hi", "2020-12-31T00:08:00"),
    ("12/31/2020, 12:10 PM - Ana: hi", "2020-12-31T12:10:00"),
    ("12/31/2020, 9:05 am - Ana: hi", "2020-12-31T09:05:00"),
    # Finnish `klo` and H.MM times
    ("31.12.2020 klo 23.59 - Ana: hi", "2020-12-31T23:59:00"),
    ("[31.12.2020 klo 23.59.58] Ana: hi", "2020-12-31T23:59:58"),
    # iOS: brackets, seconds or none, with or without the comma, 12 h with U+202F
    ("[31/12/2020, 23:59:58] Ana: hi", "2020-12-31T23:59:58"),
    ("[31/12/20 23:59] Ana: hi", "2020-12-31T23:59:00"),
    (f"[12/31/20, 11:59:58{NNBSP}PM] Ana: hi", "2020-12-31T23:59:58"),
    ("[2020-12-31, 23:59] Ana: hi", "2020-12-31T23:59:00"),
    ("[31.12.20, 23:59:58] Ana: hi", "2020-12-31T23:59:58"),
    (f"{LRM}[31/12/2020, 23:59:58] Ana: hi", "2020-12-31T23:59:58"),
    # old iOS: `date, time: Name: text`
    ("12/31/20, 11:59:58 PM: Ana: hi", "2020-12-31T23:59:58"),
]


@pytest.mark.parametrize(("line", "stamp"), HEADERS)
def test_header_layouts(tmp_path: Path, line: str, stamp: str) -> None:
    path = tmp_path / "chat.txt"
    path.write_text(line + "\n", encoding="utf-8")
    assert sniff(path)
    assert rows(parse_file(path)) == [(stamp, "Ana", "hi", "text", None)]


def test_old_ios_layout_with_system_lines(tmp_path: Path) -> None:
    text = (
        "7/1/16, 4:56:55 PM: Sophia H. created this group\n"
        "7/13/16, 5:13:36 PM: Sophia H.: So hier mal die Gruppe \U0001f609\n"
    )
    assert rows(parse_text(tmp_path, text)) == [
        ("2016-07-01T16:56:55", None, "Sophia H. created this group", "system", None),
        ("2016-07-13T17:13:36", "Sophia H.", "So hier mal die Gruppe \U0001f609", "text", None),
    ]


def test_single_digit_fields_and_two_messages(tmp_path: Path) -> None:
    chat = parse_text(tmp_path, "1/2/2020, 9:05 - Ana: one\n13/2/2020, 9:06 - Bo: two\n")
    assert [(m.timestamp, m.sender) for m in chat.messages] == [
        ("2020-02-01T09:05:00", "Ana"),
        ("2020-02-13T09:06:00", "Bo"),
    ]


# --- day/month order -----------------------------------------------------------------------


def test_day_over_12_means_dmy_and_overrides_the_option(tmp_path: Path) -> None:
    text = "01/02/20, 10:00 - Ana: a\n13/02/20, 10:00 - Ana: b\n"
    chat = parse_text(tmp_path, text, date_order="mdy")
    assert [m.timestamp[:10] for m in chat.messages] == ["2020-02-01", "2020-02-13"]


def test_second_field_over_12_means_mdy(tmp_path: Path) -> None:
    chat = parse_text(tmp_path, "01/02/20, 10:00 - Ana: a\n02/13/20, 10:00 - Ana: b\n")
    assert [m.timestamp[:10] for m in chat.messages] == ["2020-01-02", "2020-02-13"]


def test_ambiguous_dates_take_the_order_that_never_goes_back(tmp_path: Path) -> None:
    # dmy: 1 Feb, 3 Feb, 5 Feb, 2 Mar; mdy: 2 Jan, 2 Mar, 2 May, 3 Feb (goes back).
    lines = ["01/02/20", "03/02/20", "05/02/20", "02/03/20"]
    text = "".join(f"{d}, 10:00 - Ana: x\n" for d in lines)
    chat = parse_text(tmp_path, text)
    assert [m.timestamp[:10] for m in chat.messages] == [
        "2020-02-01",
        "2020-02-03",
        "2020-02-05",
        "2020-03-02",
    ]


def test_undecidable_order_uses_the_option_or_raises(tmp_path: Path) -> None:
    text = "01/02/20, 10:00 - Ana: a\n01/03/20, 10:00 - Ana: b\n"
    path = tmp_path / "chat.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AmbiguousDateOrder) as info:
        parse_file(path)
    assert str(path) in str(info.value)
    assert parse_file(path, date_order="dmy").messages[1].timestamp == "2020-03-01T10:00:00"
    assert parse_file(path, date_order="mdy").messages[1].timestamp == "2020-01-03T10:00:00"


def test_dates_reading_the_same_both_ways_need_no_order(tmp_path: Path) -> None:
    chat = parse_text(tmp_path, "01/01/20, 10:00 - Ana: a\n02/02/20, 10:00 - Ana: b\n")
    assert [m.timestamp for m in chat.messages] == ["2020-01-01T10:00:00", "2020-02-02T10:00:00"]


def test_impossible_date_is_skipped_with_its_line(tmp_path: Path) -> None:
    text = "13/02/21, 10:00 - Ana: a\nmore\n31/02/21, 10:00 - Ana: b\n14/02/21, 10:00 - Ana: c\n"
    chat = parse_text(tmp_path, text)
    assert [m.text for m in chat.messages] == ["a\nmore", "c"]
    assert chat.skipped == [Skipped("line 3", "impossible date or time in header")]


def test_an_impossible_time_is_skipped_too_not_read_as_the_line_before(tmp_path: Path) -> None:
    text = (
        "14/02/22, 10:00 - Wil: first\n14/02/22, 25:61 - Xia: bad\n"
        "14/02/22, 10:61 - Xia: bad minutes\n14/02/22, 10:02 - Wil: ok\n"
    )
    chat = parse_text(tmp_path, text)
    assert [(m.sender, m.text) for m in chat.messages] == [("Wil", "first"), ("Wil", "ok")]
    assert [s.position for s in chat.skipped] == ["line 2", "line 3"]


# --- names, invisible marks, bodies --------------------------------------------------------


def test_invisible_marks_leave_names_but_not_text_bodies(tmp_path: Path) -> None:
    ios_line = f"{LRM}[31/12/2020, 23:59:58] \u202a+44 7700 900123\u202c: Hi \u202bשלום\u202c\n"
    ios = parse_text(tmp_path, ios_line, "a.txt")
    assert rows(ios) == [
        ("2020-12-31T23:59:58", "+44 7700 900123", "Hi \u202bשלום\u202c", "text", None)
    ]
    android_line = f"\u200f31/12/2020, 23:59 - \u2066Ana\u2069: {LRM}\u200fمرحبا\n"
    android = parse_text(tmp_path, android_line, "b.txt")
    assert rows(android) == [("2020-12-31T23:59:00", "Ana", f"{LRM}\u200fمرحبا", "text", None)]


def test_ios_notices_are_system_but_user_locations_are_not(tmp_path: Path) -> None:
    text = (
        f"[31/12/2020, 10:00:00] Fam: {LRM}Ana added Bo\n"
        f"[31/12/2020, 10:01:00] Ana: {LRM}Location: https://maps.google.com/?q=1,2\n"
    )
    chat = parse_text(tmp_path, text)
    assert rows(chat) == [
        ("2020-12-31T10:00:00", None, "Ana added Bo", "system", None),
        (
            "2020-12-31T10:01:00",
            "Ana",
            f"{LRM}Location: https://maps.google.com/?q=1,2",
            "text",
            None,
        ),
    ]


def test_ios_call_records_and_lost_messages_keep_their_sender(tmp_path: Path) -> None:
    """iOS writes calls, view-once media and undecryptable messages with the invisible mark
    its notices start with: they are the person's, of the kind they are, not notices."""
    bodies = [
        (f"{LRM}Voice call, {LRM}12 min", "call"),
        (f"{LRM}Video call, {LRM}No answer", "call"),
        (f"{LRM}Missed voice call", "call"),
        (f"{LRM}View once voice message omitted", "media"),
        (f"{LRM}Waiting for this message. This may take a while.", "deleted"),
        (f"{LRM}Fay changed their phone number", "system"),
    ]
    text = "".join(f"[18/01/2023, 10:0{i}:00] Fay: {b}\n" for i, (b, _) in enumerate(bodies))
    chat = parse_text(tmp_path, text)
    got = [(m.sender, m.kind) for m in chat.messages]
    assert got == [(None if k == "system" else "Fay", k) for _, k in bodies]


def test_system_lines_that_look_like_name_colon(tmp_path: Path) -> None:
    long_notice = "Your security code with Bo changed and more words to pass fifty chars"
    text = (
        "31/12/2020, 10:00 - You changed the subject from “Trip: day 1” to “Trip”\n"
        f"31/12/2020, 10:01 - {long_notice}: tap to learn more\n"
        "31/12/2020, 10:02 - You were added\n"
        "31/12/2020, 10:03 - Ana: ok\n"
    )
    chat = parse_text(tmp_path, text)
    assert [(m.sender, m.kind) for m in chat.messages] == [
        (None, "system"),
        (None, "system"),
        (None, "system"),
        ("Ana", "text"),
    ]
    assert chat.messages[0].text == "You changed the subject from “Trip: day 1” to “Trip”"
    assert chat.messages[1].text == f"{long_notice}: tap to learn more"


@pytest.mark.parametrize(
    ("body", "kind", "text", "meta"),
    [
        ("<Medien ausgeschlossen>", "media", "<Medien ausgeschlossen>", None),
        ("<Médias omis>", "media", "<Médias omis>", None),
        (f"{LRM}GIF omitted", "media", "GIF omitted", None),
        ("audio omitted", "media", "audio omitted", None),
        ("video omitted", "media", "video omitted", None),
        (
            "IMG-20200101-WA0001.jpg (file attached)",
            "media",
            "IMG-20200101-WA0001.jpg (file attached)",
            {"attachments": ["IMG-20200101-WA0001.jpg"]},
        ),
        (
            "PTT-20200101-WA0002.opus (Datei angehängt)",
            "media",
            "PTT-20200101-WA0002.opus (Datei angehängt)",
            {"attachments": ["PTT-20200101-WA0002.opus"]},
        ),
        ("a.pdf (fichier joint)", "media", "a.pdf (fichier joint)", {"attachments": ["a.pdf"]}),
        ("b.mp4 (file allegato)", "media", "b.mp4 (file allegato)", {"attachments": ["b.mp4"]}),
        (
            "c.jpg (arquivo anexado)\nlegenda",
            "media",
            "c.jpg (arquivo anexado)\nlegenda",
            {"attachments": ["c.jpg"]},
        ),
        ("Diese Nachricht wurde gelöscht.", "deleted", "Diese Nachricht wurde gelöscht.", None),
        ("Ce message a été supprimé", "deleted", "Ce message a été supprimé", None),
        (
            "Questo messaggio è stato eliminato",
            "deleted",
            "Questo messaggio è stato eliminato",
            None,
        ),
        (f"{LRM}Esta mensagem foi apagada", "deleted", "Esta mensagem foi apagada", None),
        ("<This message was edited>", "text", "", {"edited": True}),
        (
            f"wie geht's {LRM}<Diese Nachricht wurde bearbeitet>",
            "text",
            "wie geht's",
            {"edited": True},
        ),
        ("a <b> c (d)", "text", "a <b> c (d)", None),
        ("see you :)", "text", "see you :)", None),
    ],
)
def test_markers(tmp_path: Path, body: str, kind: str, text: str, meta: dict | None) -> None:
    chat = parse_text(tmp_path, f"31/12/2020, 10:00 - Ana: {body}\n")
    assert rows(chat) == [("2020-12-31T10:00:00", "Ana", text, kind, meta)]


def test_only_the_files_final_newline_is_stripped(tmp_path: Path) -> None:
    chat = parse_text(tmp_path, "31/12/2020, 10:00 - Ana: hi\n\n")
    assert chat.messages[0].text == "hi\n"
    chat = parse_text(tmp_path, "31/12/2020, 10:00 - Ana: hi", "no_newline.txt")
    assert chat.messages[0].text == "hi"


def test_crlf_bom_and_utf16_exports(tmp_path: Path) -> None:
    text = "31/12/2020, 10:00 - Ana: line one\nline two\n31/12/2020, 10:01 - Bo: ok\n"
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes(text.encode("utf-16"))
    for path in (crlf, utf16):
        assert sniff(path)
        chat = parse_file(path)
        assert [m.text for m in chat.messages] == ["line one\nline two", "ok"]


# --- bad input -----------------------------------------------------------------------------


def test_text_before_the_first_header_is_skipped_by_line(tmp_path: Path) -> None:
    text = "garbage\n\nmore garbage\n31/12/2020, 10:00 - Ana: hi\n"
    chat = parse_text(tmp_path, text)
    assert [m.text for m in chat.messages] == ["hi"]
    assert chat.skipped == [
        Skipped("line 1", "text before the first message header"),
        Skipped("line 3", "text before the first message header"),
    ]


def test_not_a_chat_is_not_sniffed_and_parse_names_file_and_line() -> None:
    path = FIXTURES / "not_a_chat.txt"
    assert not sniff(path)
    with pytest.raises(ChatImportError, match=r"not_a_chat\.txt: line 1: no WhatsApp message"):
        parse_file(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("", encoding="utf-8")
    assert not sniff(path)
    with pytest.raises(ChatImportError, match=r"empty\.txt: line 1: empty file"):
        parse_file(path)


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(
        "31/12/2020, 10:00 - Ana: hi\n31/12/2020, 10:01 - Ana: caf\xe9\n".encode("latin-1")
    )
    with pytest.raises(
        ChatImportError, match=r"latin1\.txt: not UTF-8 text \(invalid byte at line 2"
    ):
        parse_file(path)


@pytest.mark.parametrize(
    "content",
    [
        "timestamp,sender,text\n2020-12-31 10:00:00,Ana,hi\n2020-12-31 10:01:00,Bo,yo\n",
        '{"messages": [{"date": "2020-12-31T10:00:00", "from": "Ana"}]}\n',
        "Dear diary, 31/12/2020 was long.\n",
        # signal-export's chat.md: markdown hard breaks after every message
        "[2023-05-01 14:03:12] Jane: around later?  \n(- Me: \U0001f44d -)\n\n"
        "[2023-05-01 14:05:00] Me: yes!  \n",
    ],
)
def test_sniff_refuses_csv_json_prose_and_markdown(tmp_path: Path, content: str) -> None:
    path = tmp_path / "file.txt"
    path.write_text(content, encoding="utf-8")
    assert not sniff(path)


def test_sniff_never_raises_on_binary(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 10)
    assert not sniff(path)


# --- scale -----------------------------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location(
        "whatsapp_gen", ROOT / "benchmarks" / "whatsapp_gen.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_export_parses_to_exactly_the_generated_count(tmp_path: Path) -> None:
    path = tmp_path / "WhatsApp Chat with Bench.txt"
    count = _generator().generate(path, 5000, seed=3)
    chat = parse_file(path)
    assert count == 5000
    assert len(chat.messages) == 5000
    assert chat.skipped == []
    kinds = {m.kind for m in chat.messages}
    assert kinds == {"text", "media", "deleted", "system"}
    stamps = [m.timestamp for m in chat.messages]
    assert stamps == sorted(stamps)
    assert any("\n" in m.text for m in chat.messages)
    assert all(m.sender is None for m in chat.messages if m.kind == "system")
