"""The Textual app, driven with Textual's pilot on a real store, real importers, real training
on a tiny model and real llama.cpp generation (nothing mocked)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tinymodels import TinyModel, build_tiny

from convsim.tui.app import ConvsimApp, smoke_test

FIXTURES = Path(__file__).parent / "fixtures"
WHATSAPP = FIXTURES / "whatsapp" / "WhatsApp Chat with Riya.txt"
SIZE = (100, 34)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_tiny("gemma3", tmp_path_factory.mktemp("tiny-app"))


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 60.0) -> None:
    """Let the app run until `condition()` is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        await pilot.pause(0.05)


def run(coro) -> None:
    asyncio.run(coro)


def notifications(app: ConvsimApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


# ---------------------------------------------------------------- home and smoke


def test_smoke_test_reports_the_home_screen(home: Path) -> None:
    from convsim.core.workspace import SAMPLE_CHAT, Workspace

    with Workspace.open(home) as ws:
        ws.import_export(SAMPLE_CHAT)
    line = smoke_test(home)
    assert "home screen shows 1 chats and 0 personas" in line


def test_home_lists_chats_and_theme_toggle_is_remembered(home: Path) -> None:
    from textual.widgets import DataTable

    from convsim.core.workspace import Workspace
    from convsim.tui.screens.home import HomeScreen

    with Workspace.open(home) as ws:
        ws.import_export(WHATSAPP)

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
            table = app.screen.query_one("#chats", DataTable)
            assert table.row_count == 1
            row = table.get_row_at(0)
            assert row[1] == "Riya" and row[2] == "whatsapp"
            assert not app.screen.query_one("#welcome").display
            assert app.theme == "textual-dark"
            await pilot.press("f5")
            assert app.theme == "textual-light"
        again = ConvsimApp(home)
        async with again.run_test(size=SIZE) as pilot:
            await pilot.pause(0.2)
            assert again.theme == "textual-light"

    run(drive())


def test_a_bad_export_is_a_notification_and_the_app_keeps_running(
    home: Path, tmp_path: Path
) -> None:
    from textual.widgets import Input

    from convsim.tui.screens.wizard import ImportWizard

    bad = tmp_path / "broken.json"
    bad.write_text('{"name": "x", "messages": [')

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, ImportWizard))
            app.screen.query_one("#path", Input).value = str(bad)
            await pilot.press("enter")
            await wait_for(pilot, lambda: notifications(app))
            (shown,) = notifications(app)
            assert (
                "Could not import broken.json" in shown and "broken.json" in shown.split(":", 1)[1]
            )
            assert app.screen.query_one("#wizard").current == "file"
            assert app.is_running

    run(drive())


# ---------------------------------------------------------------- the wizard, end to end


def test_wizard_imports_trains_and_opens_a_chat(home: Path, tiny: TinyModel) -> None:
    from textual.widgets import Input, Select, Static

    from convsim.core.workspace import Workspace
    from convsim.tui.screens.chat import ChatScreen
    from convsim.tui.screens.training import TrainingScreen
    from convsim.tui.screens.wizard import ImportWizard

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, ImportWizard))
            wizard = app.screen
            await pilot.click("#path")
            await pilot.press(*str(WHATSAPP))
            await wait_for(pilot, lambda: "whatsapp" in str(wizard.query_one("#detected").render()))
            await pilot.press("enter")
            await wait_for(pilot, lambda: wizard.query_one("#wizard").current == "people")
            report = str(wizard.query_one("#report", Static).render())
            assert "Riya" in report and "Sam" in report and "messages" in report
            wizard.query_one("#target", Select).value = "Sam"
            wizard.query_one("#me", Select).value = "Riya"
            tag = next(i for i in wizard.query(".tag").results(Input) if i.name == "Riya")
            tag.value = "R"
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: wizard.dataset is not None)
            samples = str(wizard.query_one("#dataset-samples", Static).render())
            assert "[Sam]" in samples and "[R]" in samples and "[Riya]" not in samples
            await pilot.press("ctrl+n")
            assert wizard.query_one("#wizard").current == "settings"
            await wait_for(pilot, lambda: "tokens/s" in str(wizard.query_one("#estimate").render()))
            wizard.query_one("#base", Select).value = "custom"
            wizard.query_one("#base-path", Input).value = str(tiny.gguf_path)
            wizard.query_one("#epochs", Input).value = "2"
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
            training = app.screen
            await wait_for(pilot, lambda: training.state == "done", timeout=300)
            assert training.query_one("#open-chat").display
            chart = training.query_one("#loss")
            assert chart.train and chart.validation
            await pilot.click("#open-chat")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), timeout=60)
            chat = app.screen
            assert (chat.persona.speaker, chat.persona.me) == ("Sam", "Riya")

    run(drive())
    with Workspace.open(home) as ws:
        (model,) = ws.store.models()
        assert model.status == "ready" and model.person == "Sam"
        (riya,) = [p for p in ws.store.participants() if p.name == "Riya"]
        assert riya.is_me
