"""SVG snapshots of the main screens and dialogs (pytest-textual-snapshot). After an intended
change to the look of the app, refresh them with `pytest tests/test_snapshots.py
--snapshot-update` and check the new SVGs by eye: the README shows them as screenshots.

Every screen is shot at 80x24, the smallest terminal the app is designed for, so a footer key or
status line cut off there shows up as a changed snapshot. Nothing shown may vary between runs:
the training screen is fed fixed `TrainEvent`s (no training runs), the chat fixed turns."""

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


async def open_chat(pilot, tiny: TinyModel) -> Any:
    """The chat screen with Sam (the tiny model), four fixed turns, autocomplete off."""
    from convsim.core.inference.engine import Engine
    from convsim.tui.app.screens.chat import ChatScreen, Persona

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
    chat.autocomplete_on = False  # any ghost text is fixed text, not the tiny model's
    await pilot.pause()
    return chat


def test_chat(snap_compare, stocked: Path, tiny: TinyModel) -> None:
    async def chatting(pilot) -> None:
        chat = await open_chat(pilot, tiny)
        await pilot.press("f2")
        await pilot.press(*"and dinner bef")
        chat.query_one("#draft").show_ghost("and dinner bef", "ore? the usual place")
        await pilot.pause()

    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=chatting)


def test_chat_edit_dialog(snap_compare, stocked: Path, tiny: TinyModel) -> None:
    async def editing(pilot) -> None:
        chat = await open_chat(pilot, tiny)
        chat.turns.append(("Sam", "cool, [b]thanks[/b]!"))  # shown as typed, not as markup
        chat._redraw()
        await pilot.press("ctrl+t")
        await settle(pilot, lambda: pilot.app.screen is not chat)

    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=editing)


def test_chat_open_dialog(snap_compare, stocked: Path, tiny: TinyModel) -> None:
    from convsim.tui.app.screens.chat import OpenDialog

    names = ["sam-1 2026-11-28 1030.jsonl", "sam-1 2026-11-27 2214.jsonl", "Friend [red].jsonl"]

    async def opening(pilot) -> None:
        chat = await open_chat(pilot, tiny)
        await pilot.app.push_screen(OpenDialog([Path("/transcripts") / n for n in names]))
        await settle(pilot, lambda: pilot.app.screen is not chat)

    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=opening)


def fixed_events(total: int = 60, done: int = 36) -> list[Any]:
    """A run of `total` steps seen up to step `done`: a falling, slightly noisy loss, an
    evaluation with samples every 12 steps."""
    from convsim.core.training.trainer import TrainEvent

    events = [TrainEvent("start", 0, total, 0.0, message="Sam, 1 epoch of 60 steps on cpu")]
    for step in range(1, done + 1):
        loss = 1.6 + 2.0 * 0.93**step + 0.15 * ((step * 7) % 5) / 5
        eta = (total - step) * 2.5
        events.append(
            TrainEvent("step", step, total, step / total, loss=loss, tokens_per_s=118.0, eta_s=eta)
        )
        if step % 12 == 0:
            shown = ("[Sam] yesss see you at 7", "[Sam] haha [b]no[/b] way")
            val = 1.9 + 1.6 * 0.95**step
            evaluation = TrainEvent("eval", step, total, step / total, val_loss=val, samples=shown)
            events.append(evaluation)
    return events


async def training_screen(pilot) -> Any:
    """A training screen that runs nothing, shown with `fixed_events()`."""
    from convsim.tui.app.messages import TrainProgress
    from convsim.tui.app.screens.training import TrainingScreen

    await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
    screen = TrainingScreen(1, "Sam", autostart=False)
    await pilot.app.push_screen(screen)
    events = fixed_events()
    for event in events:
        screen.post_message(TrainProgress(event))
    await settle(pilot, lambda: screen.last_event is events[-1])
    return screen


def test_training(snap_compare, stocked: Path) -> None:
    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=training_screen)


def test_training_light_large(snap_compare, stocked: Path) -> None:
    async def light(pilot) -> None:
        await training_screen(pilot)
        pilot.app.theme = "textual-light"  # the loss chart's colours follow the theme

    assert snap_compare(ConvsimApp(stocked), terminal_size=LARGE, run_before=light)


def listed(screen: Any) -> str:
    """What the forget dialog lists ("" until it has its plan)."""
    items = screen.query("#forget-items")
    return str(items.first().render()) if items else ""


def test_forget_dialog(snap_compare, stocked: Path) -> None:
    async def open_dialog(pilot) -> None:
        await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        await pilot.press("x")
        await settle(pilot, lambda: "model sam-1" in listed(pilot.app.screen))

    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=open_dialog)


def test_memory_panel(snap_compare, stocked: Path) -> None:
    """The memory panel on Riya's facts: the job that changed is flagged (banner, ⚠) and
    selected, so its two source messages show in context."""
    from test_app_memory import seed_facts

    with Workspace.open(stocked) as ws:
        seed_facts(ws, 1)

    async def panel(pilot) -> None:
        await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        await pilot.press("m")
        await settle(pilot, lambda: getattr(pilot.app.screen, "sources_shown", None) is not None)
        screen = pilot.app.screen
        await pilot.press("down")

        def job_shown() -> bool:
            title = str(screen.query_one("#memory-detail-title").render())
            return "job:" in title and screen.sources_shown == screen._sources_key

        await settle(pilot, job_shown)

    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=panel)


def test_chat_steering_panel(snap_compare, stocked: Path, tiny: TinyModel) -> None:
    """The steering panel (F8) with three sliders, two of them moved: the status line shows
    the mix."""
    from test_app_steering import persona_folder

    folder = persona_folder(stocked)

    async def steering(pilot) -> None:
        chat = await open_chat(pilot, tiny)
        chat.persona.model_path = folder
        await pilot.press("f8")
        await settle(pilot, lambda: chat.steer_loaded)
        await pilot.press("right", "right", "right", "right", "right", "tab", "shift+left")
        await settle(pilot, lambda: "happy -0.5" in str(chat.query_one("#chat-status").render()))

    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=steering)


def test_evaluate(snap_compare, stocked: Path) -> None:
    """The Evaluate screen on a saved report (a real `convsim eval --quick` of the sample
    chat's persona, kept as a fixture): a chart per figure, style and forever lines."""
    folder = stocked / "models" / "sam-1"
    folder.mkdir(parents=True, exist_ok=True)
    report = Path(__file__).parent / "fixtures" / "eval_report.json"
    (folder / "eval.json").write_text(report.read_text())

    async def open_screen(pilot) -> None:
        await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        await pilot.press("e")
        await settle(pilot, lambda: getattr(pilot.app.screen, "report", None) is not None)

    assert snap_compare(ConvsimApp(stocked), terminal_size=LARGE, run_before=open_screen)


def test_feedback_view(snap_compare, stocked: Path) -> None:
    """The feedback view (F10 in the chat) on three fixed items: a thumbs up, an edit with
    markup-like text (shown as typed), and a dismissed suggestion an update already learnt."""
    from convsim.core.learning.feedback import Feedback
    from convsim.core.training.versions import add_version, finish_version

    turns = [("Riya", "are you coming to the gig on friday?")]
    with Workspace.open(stocked) as ws:
        feedback = Feedback(ws.store)
        feedback.add("sam-1", "good", turns, "yesss wouldn't miss it")
        feedback.add("sam-1", "better", turns, "Yes, I will attend.", better="ya [b]def[/b]")
        done = feedback.add("sam-1", "dismissed", turns[:0], "see you at 8", speaker="Riya")
        update = {"feedback_ids": [done.id], "promoted": True, "reason": "promoted"}
        add_version(ws.store, "sam-1", update)
        finish_version(ws.store, "sam-1", 2, "done", update, kept=True)
        with ws.store.transaction() as conn:
            conn.execute("UPDATE feedback SET created = '2026-11-28T10:3' || id || ':00'")

    async def open_view(pilot) -> None:
        from convsim.tui.app.screens.feedback import FeedbackScreen

        await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        view = FeedbackScreen("sam-1", "Sam")
        await pilot.app.push_screen(view)
        await settle(pilot, lambda: view.items is not None)
        await pilot.press("down")

    assert snap_compare(ConvsimApp(stocked), terminal_size=SMALL, run_before=open_view)


def test_learn_not_promoted(snap_compare, stocked: Path) -> None:
    """The learn screen after an update that was not promoted: the loss it trained with, the
    verdict, the forgetting table (one slice over the limit), Keep anyway, and the versions.
    The screen reads nothing: it is fed fixed versions, training events and outcome."""
    from convsim.core.learning import LearnEvent, LearnOutcome, SliceScore
    from convsim.core.training.versions import Version
    from convsim.tui.app.messages import LearnLoaded, LearnProgress
    from convsim.tui.app.screens.learn import LearnScreen

    folder = stocked / "models" / "sam-1"
    reason = "the 2026-09 slice's perplexity rose 4.1% (limit 3%)"
    versions = [
        Version("sam-1", 1, "2026-11-22T10:00:00", "done", True, folder,
                {"promoted": True, "reason": "first training"}),
        Version("sam-1", 2, "2026-11-29T21:14:00", "done", True, folder / "versions" / "2",
                {"promoted": True, "reason": "within the limits on every slice"}),
        Version("sam-1", 3, "2026-12-02T09:30:00", "done", False, folder / "versions" / "3",
                {"promoted": False, "reason": reason}),
    ]  # fmt: skip
    table = [
        SliceScore("2026-06", 16, 41.2, 40.8, 0.3125, 0.3125, True),
        SliceScore("2026-09", 16, 38.0, 39.56, 0.25, 0.25, False),
        SliceScore("2026-11", 16, 44.9, 42.1, 0.1875, 0.25, True),
    ]
    counts = {"feedback": 24, "pairs": 9, "unpaired": 15, "judged": 0, "new_messages": 0,
              "replay_pool": 180}  # fmt: skip
    outcome = LearnOutcome("sam-1", 3, "done", False, reason, table, counts, 95.0, 2)

    async def learnt(pilot) -> None:
        await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        screen = LearnScreen("sam-1", "Sam", autoload=False)
        await pilot.app.push_screen(screen)
        screen.post_message(LearnLoaded([], versions, 2))
        events = [LearnEvent("train", train=e) for e in fixed_events(24, 24)]
        for event in events:
            screen.post_message(LearnProgress(event))
        await settle(pilot, lambda: screen.last_event is events[-1] and screen.loaded)
        screen.show_outcome(outcome.to_json())
        await pilot.pause()

    assert snap_compare(ConvsimApp(stocked), terminal_size=LARGE, run_before=learnt)
