"""Export variants real users sent that older versions failed on: WhatsApp group notices written
as if the group sent them, media placeholders in any case and language, Central European dates,
older Telegram Desktop exports, and files whose day/month order only the locale can tell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convsim.core.chats.importers import AmbiguousDateOrder, ImportOptions, parse_export
from convsim.core.chats.importers.base import system_date_order
from convsim.core.chats.messages import MEDIA, SYSTEM, TEXT, ParsedChat
from convsim.core.workspace import Workspace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WHATSAPP, TELEGRAM = FIXTURES / "whatsapp", FIXTURES / "telegram"


def only(path: Path, **options: object) -> ParsedChat:
    (chat,) = parse_export(path, None, ImportOptions(**options))  # type: ignore[arg-type]
    return chat


def rows(chat: ParsedChat) -> list[tuple[str, str | None, str, str]]:
    return [(m.timestamp, m.sender, m.kind, m.text) for m in chat.messages]


def test_group_encryption_notice_is_a_system_message_not_a_participant() -> None:
    chat = only(WHATSAPP / "WhatsApp Chat with Hiking Club.txt")
    assert chat.format == "whatsapp" and chat.title == "Hiking Club"
    first = chat.messages[0]
    assert (first.sender, first.kind) == (None, SYSTEM)
    assert first.text.startswith("Messages and calls are end-to-end encrypted.")
    assert {m.sender for m in chat.messages} == {None, "Ana", "Bojan"}
    # The group's name inside a real message is only text.
    assert chat.messages[-1].text == "me! Hiking Club: best club"


def test_media_placeholders_in_any_case_and_language_are_media() -> None:
    chat = only(WHATSAPP / "WhatsApp Chat with Hiking Club.txt")
    media = [(m.sender, m.kind, m.text) for m in chat.messages if m.kind == MEDIA]
    assert media == [
        ("Bojan", MEDIA, "<media omitted>"),
        ("Ana", MEDIA, "<Multimedia omitido>"),
        ("Bojan", MEDIA, "<Médias omis>"),
        ("Ana", MEDIA, "<MEDIA OMITTED>"),
    ]


def test_ios_placeholders_and_attachments_are_media() -> None:
    chat = only(WHATSAPP / "ios-placeholders.txt")
    assert [(m.sender, m.kind) for m in chat.messages] == [
        ("Leo", MEDIA),
        ("Leo", MEDIA),
        ("Mia", MEDIA),
        ("Mia", MEDIA),
        ("Leo", TEXT),
    ]
    assert chat.messages[2].meta == {"attachments": ["00000012-PHOTO-2021-03-02-10-01-00.jpg"]}


def test_spaced_dotted_dates_without_separator_before_the_name() -> None:
    chat = only(WHATSAPP / "central-european.txt")
    assert rows(chat) == [
        ("2018-06-13T21:25:15", "Marko", TEXT, "jesi doma?"),
        ("2018-06-13T21:26:02", "Iva", TEXT, "jesam, dođi\nnosi kruh"),
        ("2018-06-13T21:26:40", "Marko", MEDIA, "<Media omitted>"),
        # A message that only starts like a notice is the sender's own words.
        ("2018-06-14T08:03:00", "Iva", TEXT, "Messages and calls are end-to-end encrypted — "
         "kidding, morning!"),
    ]  # fmt: skip
    assert chat.skipped == []


@pytest.mark.parametrize("name", ["old_desktop.json", "tool_written.json"])
def test_older_telegram_shapes_are_detected(name: str) -> None:
    assert parse_export(TELEGRAM / name)[0].format == "telegram"


def test_old_telegram_desktop_export_integer_ids_and_iso_dates() -> None:
    chat = only(TELEGRAM / "old_desktop.json")
    assert chat.title == "Lena" and chat.source_key == "telegram:90210"
    assert chat.me == "Kai"  # matched by the integer from_id of personal_information
    assert rows(chat) == [
        ("2017-03-05T18:30:12", "Lena", TEXT, "hallo!"),
        ("2017-03-05T18:31:00", "Kai", TEXT, "na du"),
        ("2017-03-05T18:32:09", "Lena", MEDIA, "<photo>"),
        ("2017-03-05T18:33:00", None, SYSTEM, "Kai pinned a message"),
    ]


def test_tool_written_telegram_with_fractional_z_dates() -> None:
    chat = only(TELEGRAM / "tool_written.json")
    assert rows(chat) == [
        ("2020-12-31T23:59:59", "Ola", TEXT, "first"),
        ("2021-01-01T00:00:01", "Per", TEXT, "second"),
    ]


# --- the day/month order nobody gave ---------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "order"),
    [
        ({"LC_ALL": "", "LC_TIME": "", "LANG": "en_US.UTF-8"}, "mdy"),
        ({"LC_ALL": "", "LC_TIME": "de_DE.UTF-8", "LANG": "en_US.UTF-8"}, "dmy"),
        ({"LC_ALL": "fil_PH", "LC_TIME": "", "LANG": ""}, "mdy"),
        ({"LC_ALL": "", "LC_TIME": "", "LANG": "en_GB.UTF-8"}, "dmy"),
        ({"LC_ALL": "", "LC_TIME": "", "LANG": "sr_RS.UTF-8@latin"}, "dmy"),
    ],
)
def test_system_date_order_reads_the_locale(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], order: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert system_date_order()[0] == order


def test_ambiguous_dates_raise_unless_a_fallback_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = WHATSAPP / "ambiguous.txt"
    with pytest.raises(AmbiguousDateOrder):
        parse_export(path)
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    chat = only(path, locale_fallback=True)
    assert chat.messages[0].timestamp == "2020-01-02T10:00:00"
    (warning,) = chat.warnings
    assert "month first" in warning and "en_US.UTF-8" in warning
    monkeypatch.setenv("LC_ALL", "de_AT.UTF-8")
    assert only(path, locale_fallback=True).messages[0].timestamp == "2020-02-01T10:00:00"
    # An order the user gave wins over the locale, and needs no warning.
    given = only(path, locale_fallback=True, date_order="dmy")
    assert given.warnings == [] and given.messages[0].timestamp == "2020-02-01T10:00:00"


def test_json_import_falls_back_with_a_warning_in_the_report(tmp_path: Path) -> None:
    env = {**os.environ, "CONVSIM_HOME": str(tmp_path), "LC_ALL": "en_GB.UTF-8"}
    path = str(WHATSAPP / "ambiguous.txt")
    command = [sys.executable, "-m", "convsim.tui.cli", "import", path]
    done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["first"] == "2020-02-01T10:00:00"
    assert "day first" in report["warnings"][0]
    # Without --json and without a terminal to ask in, the order must be given.
    plain = subprocess.run(
        command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert plain.returncode != 0 and "--date-order" in plain.stderr
    with Workspace.open(tmp_path) as ws:
        assert [c.messages for c in ws.store.chats()] == [3]


def test_the_app_falls_back_to_the_locale_and_says_so(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from textual.widgets import Input, Static

    from convsim.tui.app import ConvsimApp
    from convsim.tui.app.screens.wizard import ImportWizard

    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=(100, 34)) as pilot:
            await pilot.press("i")
            while not isinstance(app.screen, ImportWizard):
                await asyncio.sleep(0.02)
            app.screen.query_one("#path", Input).value = str(WHATSAPP / "ambiguous.txt")
            await pilot.press("enter")
            for _ in range(1500):
                if getattr(app.screen, "report", None) is not None:
                    break
                await asyncio.sleep(0.02)
            report = app.screen.report
            assert report.first == "2020-01-02T10:00:00"  # month first, as en_US writes
            shown = str(app.screen.query_one("#report", Static).render())
            assert "Warning: every date reads both as day/month" in shown
            notes = [(n.title, n.message) for n in app._notifications]
            assert any(title == "Check the import" and "en_US" in text for title, text in notes)

    asyncio.run(drive())
