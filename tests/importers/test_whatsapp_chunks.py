"""Large WhatsApp exports read in chunks (`whatsapp_chunks`): the same messages, skipped lines
and store contents as reading the file whole, with the chunk size made tiny here so that
messages, multi-line bodies, CRLFs and multi-byte characters all straddle chunk edges."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from convsim.core.chats.importers import (
    ImportOptions,
    Source,
    parse_export,
    whatsapp,
    whatsapp_chunks,
)
from convsim.core.chats.messages import ChatImportError
from convsim.core.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from whatsapp_gen import generate


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whatsapp_chunks, "STREAM_BYTES", 8 * 1024)
    monkeypatch.setattr(whatsapp_chunks, "CHUNK_BYTES", 3 * 1024 + 7)


def whole_and_streamed(path: Path) -> tuple:
    with Source(path) as source:
        (whole,) = whatsapp.parse(source, ImportOptions())
        stream = whatsapp_chunks.stream(source, ImportOptions())
    assert stream is not None
    streamed = [m for batch in stream.batches() for m in batch]
    return whole, stream, streamed


def test_chunks_give_the_messages_a_whole_read_gives(tiny_chunks, tmp_path: Path) -> None:
    path = tmp_path / "WhatsApp Chat with Big.txt"
    generate(path, 3000, seed=3)
    text = path.read_text(encoding="utf-8")
    long_body = "\n".join(f"line {i} of a very long message ✨" for i in range(400))  # > a chunk
    lines = text.splitlines(keepends=True)
    lines.insert(1500, f"05/06/2019, 10:00 - Tom: {long_body}\n")
    lines.insert(2000, "31/02/2019, 10:00 - Tom: an impossible date\n")
    path.write_bytes(("a stray line before the first header\n" + "".join(lines)).encode())
    whole, stream, streamed = whole_and_streamed(path)
    assert len(streamed) == len(whole.messages) > 3000 - 1
    assert streamed == whole.messages
    assert stream.chat.title == whole.title == "Big"
    assert stream.chat.skipped == whole.skipped
    bad = path.read_text(encoding="utf-8").split("\n").index(lines[2000].rstrip("\n")) + 1
    assert [s.position for s in whole.skipped] == ["line 1", f"line {bad}"]
    assert any(m.text == long_body for m in streamed)
    again = [m for batch in stream.batches() for m in batch]  # a second pass reads it anew
    assert again == streamed and stream.chat.skipped == whole.skipped


def test_crlf_bom_and_a_bad_byte_in_a_later_chunk(tiny_chunks, tmp_path: Path) -> None:
    path = tmp_path / "crlf.txt"
    generate(path, 800, seed=4)
    data = b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n")
    path.write_bytes(data)
    whole, _, streamed = whole_and_streamed(path)
    assert streamed == whole.messages and not any("\r" in m.text for m in streamed)

    cut = data.index(b"\r\n", len(data) * 3 // 4) + 2
    path.write_bytes(data[:cut] + b"\xff" + data[cut:])
    line = data[:cut].count(b"\n") + 1
    with Source(path) as source, pytest.raises(ChatImportError) as caught:
        whatsapp_chunks.stream(source, ImportOptions())  # its pass over the dates finds it
    assert f"crlf.txt: not UTF-8 text (invalid byte at line {line})" in str(caught.value)


def test_a_first_message_longer_than_a_chunk_is_read(tiny_chunks, tmp_path: Path) -> None:
    path = tmp_path / "long start.txt"
    generate(path, 2000, seed=9)
    first = "01/01/2019, 00:00 - Tom: " + "é" * 5000  # no newline in the first chunk
    path.write_text(first + "\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    whole, _, streamed = whole_and_streamed(path)
    assert streamed == whole.messages and len(streamed) == 2001
    assert streamed[0].text == "é" * 5000


def test_small_files_zips_and_utf16_are_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    generate(path, 100, seed=5)
    with Source(path) as source:
        assert whatsapp_chunks.stream(source, ImportOptions()) is None


def test_a_streamed_import_stores_what_a_whole_import_stores(
    tiny_chunks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "WhatsApp Chat with Crowd.txt"
    generate(old, 4000, seed=6)
    newer = tmp_path / "newer" / old.name
    newer.parent.mkdir()
    generate(newer, 5000, seed=6)  # the same chat, a thousand messages on

    def run(home: Path) -> tuple[list, list]:
        with Workspace.open(home) as ws:
            (first,) = ws.import_export(old)
            (same,) = ws.import_export(old)
            (more,) = ws.import_export(newer)
            assert (first.new, same.new, more.new) == (4000, 0, 1000)
            assert {first.chat_id, same.chat_id, more.chat_id} == {1}
            rows = [(m.timestamp, m.sender, m.kind, m.text) for m in ws.store.messages(1)]
            return [r.to_json() for r in (first, same, more)], rows

    streamed = run(tmp_path / "streamed")
    monkeypatch.setattr(whatsapp_chunks, "STREAM_BYTES", 1 << 40)
    assert streamed == run(tmp_path / "whole")


def test_a_streamed_import_reports_its_progress(tiny_chunks, tmp_path: Path) -> None:
    path = tmp_path / "WhatsApp Chat with Crowd.txt"
    generate(path, 2000, seed=7)
    heard: list[tuple[float, int]] = []
    with Workspace.open(tmp_path / "home") as ws:
        (report,) = ws.import_export(path, progress=lambda done, n: heard.append((done, n)))
    assert len(heard) > 10  # one per batch
    assert heard == sorted(heard) and heard[-1] == (1.0, 2000) and report.new == 2000
    assert 0 < heard[0][0] < 0.1


def test_the_wizard_shows_how_far_a_large_import_has_got(
    tiny_chunks, tmp_path: Path, home: Path
) -> None:
    import asyncio

    from textual.widgets import Input, Static

    from convsim.tui.app import ConvsimApp
    from convsim.tui.app.screens.wizard import ImportWizard

    path = tmp_path / "WhatsApp Chat with Crowd.txt"
    generate(path, 2000, seed=8)

    async def drive() -> list[str]:
        app = ConvsimApp(home)
        notes: list[str] = []
        async with app.run_test(size=(100, 34)) as pilot:
            await pilot.press("i")
            while not isinstance(app.screen, ImportWizard):
                await asyncio.sleep(0.02)
            app.screen.query_one("#path", Input).value = str(path)
            await pilot.press("enter")
            for _ in range(1500):
                notes.append(str(app.screen.query_one("#detected", Static).render()))
                if getattr(app.screen, "report", None) is not None:
                    break
                await asyncio.sleep(0.01)
            assert app.screen.report.new == 2000
        return notes

    notes = asyncio.run(drive())
    assert any("Importing… 100% (2,000 messages so far)" in note for note in notes), notes[-3:]


def test_a_cancelled_import_stores_nothing(
    tiny_chunks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled between batches (a large export) or after reading (a small one): nothing of
    the export is in the store, and a later import stores all of it."""
    import threading

    from convsim.core.workspace import ImportCancelled

    big, small = tmp_path / "WhatsApp Chat with Crowd.txt", tmp_path / "small.txt"
    generate(big, 2000, seed=9)
    generate(small, 100, seed=9)
    with Workspace.open(tmp_path / "home") as ws:
        cancel = threading.Event()
        heard: list[float] = []

        def progress(done: float, messages: int) -> None:
            heard.append(done)
            cancel.set()  # after the first batch is stored

        with pytest.raises(ImportCancelled, match=r"Crowd\.txt was cancelled; nothing"):
            ws.import_export(big, progress=progress, cancel=cancel)
        assert len(heard) == 1 and ws.store.chats() == []
        with pytest.raises(ImportCancelled):
            ws.import_export(small, options=ImportOptions(date_order="dmy"), cancel=cancel)
        assert ws.store.chats() == []
        # Cancelled while it is being stored: the check before the commit rolls it back.
        chats = parse_export(small, "whatsapp", ImportOptions(date_order="dmy"))

        def cancelled() -> None:
            raise ImportCancelled(small)

        with pytest.raises(ImportCancelled):
            ws.store.add_import(chats, str(small), cancelled)
        assert ws.store.chats() == []
        # The same through the workspace: cancelled while the chat is being written.
        import convsim.core.store as store_module

        write = store_module.add_chat
        cancel = threading.Event()

        def written_then_cancelled(conn, chat, path):
            report = write(conn, chat, path)
            cancel.set()
            return report

        monkeypatch.setattr(store_module, "add_chat", written_then_cancelled)
        with pytest.raises(ImportCancelled):
            ws.import_export(small, options=ImportOptions(date_order="dmy"), cancel=cancel)
        assert ws.store.chats() == []
        monkeypatch.setattr(store_module, "add_chat", write)
        (report,) = ws.import_export(big, cancel=threading.Event())
        assert report.new == 2000


def test_escape_cancels_a_large_import_in_the_wizard(
    tiny_chunks, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import time

    from textual.widgets import Input, Static

    from convsim.tui.app import ConvsimApp
    from convsim.tui.app.screens.home import HomeScreen
    from convsim.tui.app.screens.wizard import ImportWizard

    path = tmp_path / "WhatsApp Chat with Crowd.txt"
    generate(path, 4000, seed=10)
    real = Workspace.import_export

    def paced(self, path, format=None, options=None, progress=None, cancel=None):
        def slowly(done: float, messages: int) -> None:
            time.sleep(0.05)  # batches that take a while, as a large export's do
            progress(done, messages)

        return real(self, path, format, options, slowly, cancel)

    monkeypatch.setattr(Workspace, "import_export", paced)

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=(100, 34), notifications=True) as pilot:
            await pilot.press("i")
            while not isinstance(app.screen, ImportWizard):
                await asyncio.sleep(0.02)
            wizard = app.screen
            note = wizard.query_one("#detected", Static)
            wizard.query_one("#path", Input).value = str(path)
            await pilot.press("enter")
            for _ in range(1500):  # the first batch is in
                if "% (" in str(note.render()):
                    break
                await asyncio.sleep(0.005)
            await pilot.press("escape")
            assert app.screen is wizard  # the first Esc cancels, and stays to say so
            for _ in range(1500):
                if "Import cancelled" in str(note.render()):
                    break
                await asyncio.sleep(0.01)
            assert str(note.render()) == "Import cancelled: nothing of it was stored."
            assert not app._notifications  # asked for: not an error
            assert wizard.report is None
            await pilot.press("escape")
            assert isinstance(app.screen, HomeScreen)

    asyncio.run(drive())
    with Workspace.open(home) as ws:
        assert ws.store.chats() == []
