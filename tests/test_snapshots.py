"""SVG snapshots of the main screens (pytest-textual-snapshot). After an intended change to the
look of the app, refresh them with `pytest tests/test_snapshots.py --snapshot-update` and check
the new SVGs by eye: the README shows them as screenshots."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tinymodels import TinyModel

from convsim.core.store.records import ModelRecord
from convsim.core.workspace import SAMPLE_CHAT, Workspace
from convsim.tui.app import ConvsimApp

pytest.importorskip("pytest_textual_snapshot")

SMALL = (80, 24)  # the smallest terminal the app is designed for
LARGE = (120, 36)


@pytest.fixture
def stocked(home: Path) -> Path:
    """A home with the sample chat and one trained persona on record."""
    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        ws.store.set_me(report.chat_id, "Riya")
        ws.store.add_model(
            ModelRecord(
                "sam-1", report.chat_id, None, "Sam", "/models/gemma-3-270m-it-Q4_K_M.gguf",
                "0" * 64, "2026-11-22T10:00:00", "ready", str(home / "models" / "sam-1"),
                {"val_loss": 3.42, "steps": 36},
            )
        )  # fmt: skip
    return home


async def settle(pilot, condition, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            break
        await asyncio.sleep(0.05)
    await pilot.pause()


def test_home(snap_compare, stocked: Path) -> None:
    async def loaded(pilot) -> None:
        await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))

    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=loaded)


def test_home_light_large(snap_compare, stocked: Path) -> None:
    async def loaded(pilot) -> None:
        await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        pilot.app.theme = "textual-light"

    assert snap_compare(ConvsimApp(stocked), terminal_size=LARGE, run_before=loaded)


async def open_wizard(pilot) -> Any:
    """The import wizard on the stocked sample chat, at its people step."""
    from convsim.tui.app.screens.wizard import ImportWizard

    await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
    wizard = ImportWizard(chat_id=1)
    await pilot.app.push_screen(wizard)
    await settle(pilot, lambda: wizard.report is not None)
    return wizard


def test_wizard_people_step(snap_compare, stocked: Path) -> None:
    assert snap_compare(ConvsimApp(stocked), terminal_size=LARGE, run_before=open_wizard)


def test_wizard_dataset_step(snap_compare, stocked: Path) -> None:
    async def dataset(pilot) -> None:
        wizard = await open_wizard(pilot)
        await pilot.press("ctrl+n")
        await settle(pilot, lambda: wizard.dataset is not None)

    assert snap_compare(ConvsimApp(stocked), terminal_size=LARGE, run_before=dataset)


def test_chat(snap_compare, stocked: Path, tiny: TinyModel) -> None:
    from convsim.core.inference.engine import Engine
    from convsim.tui.app.screens.chat import ChatScreen, Persona

    async def chatting(pilot) -> None:
        await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        persona = Persona(Engine(tiny.gguf_path), "Sam", "Riya", "Sam (sam-1)", "sam-1")
        chat = ChatScreen(persona)
        await pilot.app.push_screen(chat)
        chat.turns = [
            ("Riya", "are you coming to the gig on friday?"),
            ("Sam", "yesss"),
            ("Sam", "wouldn't miss it"),
            ("Riya", "ok I'll get the tickets"),
        ]
        chat._redraw()
        chat.autocomplete_on = False  # the ghost below is fixed text, not the tiny model's
        await pilot.press("f2")
        await pilot.press(*"and dinner bef")
        chat.query_one("#draft").show_ghost("and dinner bef", "ore? the usual place")
        await pilot.pause()

    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=chatting)
