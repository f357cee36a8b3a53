"""The Textual app, driven with Textual's pilot on a real store, real importers, real training
on a tiny model and real llama.cpp generation (nothing mocked)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tinymodels import TinyModel

from convsim.tui.app import ConvsimApp, smoke_test

FIXTURES = Path(__file__).parent / "fixtures"
WHATSAPP = FIXTURES / "whatsapp" / "WhatsApp Chat with Riya.txt"
SIZE = (100, 34)


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 60.0) -> None:
    """Let the app run until `condition()` is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        await asyncio.sleep(0.02)  # not pilot.pause: that also waits for an idle event loop


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
    from convsim.tui.app.screens.home import HomeScreen

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

    from convsim.tui.app.screens.wizard import ImportWizard

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


def shown_text(widget) -> str:
    """What `widget` draws, as plain text (each line of its render)."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def test_names_and_errors_that_look_like_markup_are_shown_as_typed(
    home: Path, tmp_path: Path
) -> None:
    from textual.widgets import DataTable, Input, Label, Select, Static
    from textual.widgets._toast import Toast

    from convsim.tui.app.screens.home import HomeScreen
    from convsim.tui.app.screens.wizard import ImportWizard

    export = tmp_path / "WhatsApp Chat with Bob.txt"
    lines = [f"14/02/2021, 10:0{i} - {who}: message {i}" for i, who in
             enumerate(["[b]Bob[/b]", "[red]x", "[b]Bob[/b]", "[red]x"])]  # fmt: skip
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    broken = tmp_path / "broken [red]x[b].json"
    broken.write_text('{"name": "x", "messages": [')

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, ImportWizard))
            wizard = app.screen
            wizard.query_one("#path", Input).value = str(export)
            await pilot.press("enter")
            await wait_for(pilot, lambda: wizard.query_one("#wizard").current == "people")
            await pilot.pause()
            report = shown_text(wizard.query_one("#report", Static))
            assert "[b]Bob[/b]: 2 messages" in report and "[red]x: 2 messages" in report
            tags = [str(label.render()) for label in wizard.query(".tag-name").results(Label)]
            assert tags == ["[b]Bob[/b]", "[red]x"]
            target = wizard.query_one("#target", Select)
            assert target.value in ("[b]Bob[/b]", "[red]x")
            assert shown_text(target.query_one("#label")).strip() == target.value

            # An error whose message quotes a file name with brackets in it.
            await pilot.press("escape")  # back to the file step
            wizard.query_one("#path", Input).value = str(broken)
            wizard.query_one("#path", Input).focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: notifications(app))
            await pilot.pause()
            (toast,) = app.screen.query(Toast)
            drawn = shown_text(toast)
            assert "Could not import broken [red]x[b].json" in drawn
            # The toast wraps where the temporary path's length puts its line ends.
            squashed = "".join(drawn.split())
            assert "broken[red]x[b].json:invalidJSONatline1" in squashed
            assert "[red]x[b]" in shown_text(wizard.query_one("#detected", Static))

            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
            await pilot.pause()
            table = app.screen.query_one("#chats", DataTable)
            assert "[b]Bob[/b], [red]x" in shown_text(table)
            assert app.is_running

    run(drive())


# ---------------------------------------------------------------- the wizard, end to end


def test_the_time_estimate_names_the_precision_and_its_budget(monkeypatch) -> None:
    from convsim.tui.app.screens import wizard_info
    from convsim.tui.app.screens.wizard_info import estimate_text

    monkeypatch.setattr(wizard_info.os, "cpu_count", lambda: 2)
    bf16 = str(estimate_text("cpu", 400_000, None, 512, None, True, bf16=True))
    assert "Training on cpu (bf16): 68 steps (CPU time budget of 140,000 tokens" in bf16
    fp32 = str(estimate_text("cpu", 400_000, None, 512, None, True))
    assert "Training on cpu: 48 steps (CPU time budget of 100,000 tokens" in fp32
    assert "at 210 tokens/s (from a typical CPU)" in bf16 and "at 140 tokens/s" in fp32


def test_wizard_imports_trains_and_opens_a_chat(home: Path, tiny: TinyModel) -> None:
    from textual.widgets import Input, Select, Static

    from convsim.core.workspace import Workspace
    from convsim.tui.app.screens.chat import ChatScreen
    from convsim.tui.app.screens.training import TrainingScreen
    from convsim.tui.app.screens.wizard import ImportWizard

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
            # Epochs left empty: the recipe picks the length from the data size (recipe.py).
            assert wizard.query_one("#epochs", Input).value == ""
            assert "steps (small chat: " in str(wizard.query_one("#estimate").render())
            wizard.query_one("#base", Select).value = "custom"
            wizard.query_one("#base-path", Input).value = str(tiny.gguf_path)
            wizard.query_one("#epochs", Input).value = "2"
            await wait_for(
                pilot, lambda: "passes as set" in str(wizard.query_one("#estimate").render())
            )
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
            training = app.screen
            await wait_for(pilot, lambda: training.state == "done", timeout=300)
            assert training.query_one("#open-chat").display
            chart = training.query_one("#loss")
            assert chart.train and chart.validation
            await pilot.pause()
            assert await pilot.click("#open-chat")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), timeout=60)
            chat = app.screen
            assert (chat.persona.speaker, chat.persona.me) == ("Sam", "Riya")
            # Let the new screen finish mounting before the app shuts down: Textual's Header
            # updates its title in a callback that fails if its widgets are already gone.
            await pilot.pause()

    run(drive())
    with Workspace.open(home) as ws:
        (model,) = ws.store.models()
        assert model.status == "ready" and model.person == "Sam"
        (riya,) = [p for p in ws.store.participants() if p.name == "Riya"]
        assert riya.is_me


# ---------------------------------------------------------------- the chat screen


async def open_chat(pilot, model: Path, speaker: str = "Sam", me: str = "Riya"):
    """Show the chat screen for `model` (no adapter) speaking as `speaker`; returns it."""
    from convsim.core.inference.engine import Engine
    from convsim.tui.app.screens.chat import ChatScreen, Persona
    from convsim.tui.app.screens.home import HomeScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
    persona = Persona(Engine(model, n_ctx=1024), speaker, me, f"{speaker} (test)")
    await app.push_screen(ChatScreen(persona))
    await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
    return app.screen


async def send(pilot, text: str) -> None:
    chat = pilot.app.screen
    await pilot.press(*text)
    await pilot.press("enter")
    await wait_for(pilot, lambda: not chat.generating)


def test_chat_streams_replies_regenerates_and_edits(home: Path, tiny: TinyModel) -> None:
    from textual.widgets import Input

    from convsim.tui.app.screens.chat import Bubble

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(pilot, tiny.gguf_path)
            chat.query_one("#sampling").sampling.seed = 3
            await send(pilot, "hey are we going")
            assert chat.turns[0] == ("Riya", "hey are we going")
            assert chat.turns[-1][0] == "Sam" and len(chat.turns) >= 2
            bubbles = list(chat.query(Bubble))
            assert [b.speaker for b in bubbles] == [s for s, _ in chat.turns]
            assert "prompt tokens from cache" in str(chat.query_one("#chat-status").render())

            # Regenerate replaces the persona's latest reply, nothing before it.
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: not chat.generating)
            assert chat.turns[0] == ("Riya", "hey are we going")
            assert chat.turns[-1][0] == "Sam"
            assert len(list(chat.query(Bubble))) == len(chat.turns)

            # Edit the reply: the transcript continues from the user's version.
            await pilot.press("ctrl+t")
            await wait_for(pilot, lambda: app.screen is not chat)
            edit = app.screen.query_one("#edit", Input)
            edit.value = "sure, at eight"
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is chat)
            assert chat.turns[-1] == ("Sam", "sure, at eight")
            assert list(chat.query(Bubble))[-1].text == "sure, at eight"

            # More: the persona adds another message of its own.
            before = len(chat.turns)
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: not chat.generating)
            assert all(s == "Sam" for s, _ in chat.turns[before - 1 :])

    run(drive())


def test_autocomplete_shows_ghost_text_that_tab_accepts(home: Path, tiny: TinyModel) -> None:
    from textual import events

    from convsim.tui.app.widgets import GhostInput

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(pilot, tiny.gguf_path)
            draft = chat.query_one("#draft", GhostInput)
            chat.query_one("#sampling").sampling.seed = 1
            for ch in "we are":  # typed faster than the debounce delay
                draft.post_message(events.Key(ch if ch != " " else "space", ch))
            await wait_for(pilot, lambda: draft.ghost)
            ghost = draft.ghost
            assert draft.value == "we are" and "\n" not in ghost
            assert chat.completions == 1  # debounced: six keystrokes, one completion
            await pilot.press("tab")
            assert draft.value == "we are" + ghost and draft.has_focus
            # Typing again drops the old suggestion at once; Escape dismisses a new one.
            await pilot.press("x")
            assert draft.ghost == ""
            await wait_for(pilot, lambda: draft.ghost)
            await pilot.press("escape")
            assert draft.ghost == "" and draft.value.endswith("x")
            # Switched off, no suggestion stays behind for Tab to take.
            await pilot.press("y")
            await wait_for(pilot, lambda: draft.ghost)
            typed = draft.value
            await pilot.press("f3")
            assert not chat.autocomplete_on and draft.ghost == ""
            await pilot.press("tab")
            assert draft.value == typed

    run(drive())


def test_forever_mode_alternates_until_switched_off(home: Path, tiny: TinyModel) -> None:

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(pilot, tiny.gguf_path)
            chat.turns = [("Riya", "so what now"), ("Sam", "we wait")]
            chat._redraw()
            await pilot.press("ctrl+f")
            await wait_for(pilot, lambda: len(chat.turns) >= 8)
            await pilot.press("ctrl+f")
            await wait_for(pilot, lambda: not chat.generating)
            speakers = [s for s, _ in chat.turns[2:8]]
            assert speakers == ["Riya", "Sam"] * 3
            assert not chat.forever_on

    run(drive())


def test_transcripts_save_and_reopen_and_sampling_panel(home: Path, tiny: TinyModel) -> None:
    from textual.widgets import Input

    from convsim.tui.app.screens.chat import OpenDialog, SamplingPanel

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(pilot, tiny.gguf_path)
            turns = [("Riya", "hi [there]"), ("Sam", "yo"), ("Sam", "what's up")]
            chat.turns = list(turns)
            await pilot.press("ctrl+s")  # saved by a worker: the file appears shortly
            await wait_for(pilot, lambda: list((home / "transcripts").glob("*.jsonl")))
            (saved,) = (home / "transcripts").glob("*.jsonl")
            assert saved.read_text().count("\n") == 3
            chat.turns = []
            chat._redraw()
            await pilot.press("ctrl+l")
            await wait_for(pilot, lambda: isinstance(app.screen, OpenDialog))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is chat)
            assert chat.turns == turns

            panel = chat.query_one(SamplingPanel)
            assert not panel.display
            await pilot.press("f2")
            assert panel.display
            temperature = next(i for i in panel.query(Input) if i.name == "temperature")
            temperature.value = "abc"
            await pilot.pause()
            assert temperature.has_class("-invalid") and panel.sampling.temperature == 1.0
            temperature.value = "0.2"
            await pilot.pause()
            assert not temperature.has_class("-invalid") and panel.sampling.temperature == 0.2
            # Not a number, or out of range: marked, said why, and the last good value kept.
            fields = {i.name: i for i in panel.query(Input)}
            for name, bad in [("temperature", "nan"), ("temperature", "inf"), ("top_p", "7"),
                              ("min_p", "1.5"), ("seed", "-2"), ("best_of", "0"),
                              ("top_k", "0.5"), ("max_tokens", "9" * 400),
                              ("temperature", "9" * 400)]:  # fmt: skip
                fields[name].value = bad
                await pilot.pause()
                assert fields[name].has_class("-invalid"), (name, bad)
                assert str(fields[name].tooltip).startswith(name.replace("_", " ") + " must be")
            assert panel.sampling.temperature == 0.2 and panel.sampling.top_p == 1.0
            fields["top_p"].value = "0.9"
            fields["seed"].value = "-1"  # random, as on the command line
            await pilot.pause()
            assert panel.sampling.top_p == 0.9 and fields["top_p"].tooltip is None
            assert panel.sampling.seed is None and not fields["seed"].has_class("-invalid")

    run(drive())
    assert (home / "transcripts").stat().st_mode & 0o777 == 0o700


# ------------------------------------------------------------- training: stop, resume, responsive


async def handling_time(pilot, message_target, event) -> float:
    """Seconds from posting `event` to `message_target` until the app has handled it and
    drawn nothing in between it could not. (Pilot's own `press` also waits for the event loop
    to go idle, which never happens while a worker streams updates, so it cannot time this.)"""
    done = asyncio.Event()
    started = time.perf_counter()
    message_target.post_message(event)
    pilot.app.call_later(done.set)  # runs after the app has processed what was queued before
    await asyncio.wait_for(done.wait(), timeout=10)
    return time.perf_counter() - started


@contextlib.contextmanager
def settled_heap() -> Iterator[list[float]]:
    """Collect garbage, then keep the test process's own heap out of the collector while a
    responsiveness check runs: after hundreds of tests this process holds far more objects than
    the app ever does, and one full collection of them on the UI thread takes longer than the
    bounds checked. Yields the durations of the collections that still ran, for the message."""
    pauses: list[float] = []
    started: list[float] = []

    def timing(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append(time.perf_counter() - started.pop())

    gc.collect()
    gc.freeze()
    gc.callbacks.append(timing)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(timing)
        gc.unfreeze()


async def loop_lag(samples: int = 10) -> float:
    """The worst delay of the app's event loop beyond a 20 ms sleep: a blocked UI shows here."""
    worst = 0.0
    for _ in range(samples):
        started = time.perf_counter()
        await asyncio.sleep(0.02)
        worst = max(worst, time.perf_counter() - started - 0.02)
    return worst


async def start_training(pilot, home: Path, tiny: TinyModel, steps: int, eval_every: int):
    """Import the sample chat, open a training screen for Sam on the tiny model, and wait for
    its second step; returns the screen."""
    from convsim.core.workspace import SAMPLE_CHAT, Workspace
    from convsim.tui.app.screens.home import HomeScreen
    from convsim.tui.app.screens.training import TrainingScreen

    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
    overrides = {"steps": steps, "seq_len": 256, "eval_every": eval_every, "checkpoint_every": 0}
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, HomeScreen))
    screen = TrainingScreen(report.chat_id, "Sam", base=str(tiny.gguf_path), overrides=overrides)
    await pilot.app.push_screen(screen)
    await wait_for(pilot, lambda: screen.last_event and screen.last_event.step >= 2)
    return screen


def test_training_stops_resumes_and_the_ui_stays_responsive(home: Path, tiny: TinyModel) -> None:
    from convsim.core.workspace import Workspace

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = await start_training(pilot, home, tiny, steps=30, eval_every=10)
            # A worker is training: the event loop never stalls and keys are handled at once.
            from textual import events

            with settled_heap() as gc_pauses:
                assert await loop_lag() < 0.2
                key = events.Key("tab", None)
                latencies = sorted([await handling_time(pilot, app, key) for _ in range(7)])
            assert screen.state == "training"
            assert latencies[3] < 0.1 and latencies[-1] < 0.5, (latencies, gc_pauses)
            await pilot.press("ctrl+x")
            await wait_for(pilot, lambda: screen.state in ("cancelled", "failed"))
            assert screen.state == "cancelled", notifications(app)
            stopped_at = screen.last_event.step
            assert 2 <= stopped_at < 30 and screen.query_one("#resume").display
            await pilot.pause()  # let the Resume button be laid out before clicking it
            assert await pilot.click("#resume")
            await wait_for(pilot, lambda: screen.state in ("done", "failed"), timeout=300)
            assert screen.state == "done", notifications(app)
            assert screen.last_event.step == 30
            assert "validation loss" in str(screen.query_one("#train-title").render())

    run(drive())
    with Workspace.open(home) as ws:
        (model,) = ws.store.models()
    assert model.status == "ready" and model.metrics["steps"] == 30


# ---------------------------------------------------------------- the real default model (slow)


@pytest.mark.slow
def test_real_model_streams_never_blocks_typing_and_stops_on_escape(home: Path) -> None:
    from textual import events

    from convsim.core.bases.prepare import default_base
    from convsim.core.locations import Locations
    from convsim.tui.app.screens.chat import Bubble
    from convsim.tui.app.widgets import GhostInput

    base = default_base(Locations.from_env(home))

    def shown() -> int:
        return sum(len(b.text) for b in chat.query(Bubble))

    async def drive() -> None:
        nonlocal chat
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(pilot, base, speaker="Friend", me="You")
            chat.query_one("#sampling").sampling.seed = 0
            draft = chat.query_one("#draft", GhostInput)

            # A reply streams: the screen shows it growing piece by piece.
            await pilot.press(*"hey, how was your weekend?")
            await draft.action_submit()  # posts Submitted; pilot.press would wait the reply out
            seen = set()
            deadline = time.monotonic() + 60
            while not (len(chat.query(Bubble)) >= 2 and not chat.generating):
                assert time.monotonic() < deadline, "no reply within 60 s"
                seen.add(shown())
                await asyncio.sleep(0.005)
            assert len(seen) >= 3, seen
            assert chat.turns[-1][0] == "Friend"

            # Forever mode keeps the engine busy; typing is handled at once all the while.
            await pilot.press("ctrl+f")
            latencies, sizes = [], []
            with settled_heap() as gc_pauses:
                for ch in "abcdefgh":
                    await wait_for(pilot, lambda: chat.generating)
                    latencies.append(await handling_time(pilot, draft, events.Key(ch, ch)))
                    sizes.append(len(chat.turns))
                    await asyncio.sleep(0.3)
                lag = await loop_lag()
            assert draft.value == "abcdefgh"
            assert max(latencies) < 0.25, (latencies, gc_pauses)
            assert lag < 0.2, (lag, gc_pauses)
            assert sizes[-1] > sizes[0], sizes
            await pilot.press("escape")
            await wait_for(pilot, lambda: not chat.generating, timeout=5)
            assert not chat.forever_on

    chat = None
    run(drive())


def test_loss_chart_columns_cover_every_step_without_gaps() -> None:
    from convsim.tui.app.widgets import _bucket

    points = [(1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0)]
    assert _bucket(points, 4, 8) == [4.0, 4.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0]
    assert _bucket(points, 4, 2) == [3.5, 1.5]
    # Steps not trained yet leave their columns empty.
    assert _bucket(points[:2], 4, 4) == [4.0, 3.0, None, None]


def stored_model(home: Path, model_id: str, person: str, status: str) -> Path:
    """A model row with `status` and an empty folder (no base or adapter file): its folder."""
    from convsim.core.store.records import ModelRecord
    from convsim.core.workspace import Workspace

    with Workspace.open(home) as ws:
        folder = ws.locations.models / model_id
        folder.mkdir(parents=True)
        ws.store.add_model(
            ModelRecord(model_id, None, None, person, str(home / "missing.gguf"), "0" * 64,
                        "2026-11-22T10:00:00", status, str(folder))
        )  # fmt: skip
    return folder


def test_a_persona_with_a_missing_model_file_is_a_notification(home: Path) -> None:
    from textual.widgets import DataTable

    from convsim.tui.app.screens.home import HomeScreen

    stored_model(home, "gone-1", "Gone", "ready")

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
            app.screen.query_one("#personas", DataTable).focus()
            await pilot.press("o")
            await wait_for(pilot, lambda: notifications(app))
            (shown,) = notifications(app)
            assert shown.startswith("Could not open gone-1: ")
            assert "adapter.gguf: the adapter of model gone-1 is missing" in shown
            assert isinstance(app.screen, HomeScreen) and app.is_running

    run(drive())


def test_a_run_killed_mid_training_shows_stopped_and_one_still_running_is_not_resumed(
    home: Path,
) -> None:
    """A status of "training" is also what a killed run leaves: Home tells the two apart by
    whether a trainer holds the run's lock (here, as `convsim train` in another terminal)."""
    from textual.widgets import DataTable

    from convsim.core import locks
    from convsim.core.workspace import TRAINING_LOCK
    from convsim.tui.app.screens.home import HomeScreen

    folder = stored_model(home, "sam-1", "Sam", "training")

    async def drive(running: bool) -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
            table = app.screen.query_one("#personas", DataTable)
            assert str(table.get_row_at(0)[2]) == ("training" if running else "stopped")
            table.focus()
            await pilot.press("o")
            await wait_for(pilot, lambda: notifications(app))
            assert notifications(app)[-1] == (
                ": sam-1 is training now: it opens when it has finished."
                if running
                else ": sam-1 is stopped; press r to resume its training."
            )
            if running:
                await pilot.press("r")
                await wait_for(pilot, lambda: len(notifications(app)) == 2)
                assert notifications(app)[-1] == ": sam-1 is training now."
                assert isinstance(app.screen, HomeScreen)

    run(drive(running=False))
    with locks.acquire(folder / TRAINING_LOCK):
        run(drive(running=True))


def test_quitting_mid_training_leaves_a_resumable_run(home: Path, tiny: TinyModel) -> None:
    from convsim.core.workspace import Workspace

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            await start_training(pilot, home, tiny, steps=500, eval_every=0)
            await pilot.press("ctrl+q")

    started = time.monotonic()
    run(drive())
    assert time.monotonic() - started < 60
    deadline = time.monotonic() + 60
    while True:  # the worker finishes its step and writes a checkpoint after the app is gone
        with Workspace.open(home) as ws:
            (model,) = ws.store.models()
        if model.status != "training" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert model.status == "cancelled"
    assert (Path(model.path) / "checkpoint").is_dir()
    stopped_at = model.metrics["steps"]

    async def resume() -> None:
        """Resumed, the chart starts with the steps the stopped run had done."""
        from convsim.tui.app.screens.training import TrainingScreen
        from convsim.tui.app.widgets import LossChart

        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = TrainingScreen(resume=model.id)
            await pilot.app.push_screen(screen)
            await wait_for(pilot, lambda: screen.state != "starting")
            chart = screen.query_one(LossChart)
            assert [step for step, _ in chart.train][:stopped_at] == list(range(1, stopped_at + 1))
            await pilot.press("ctrl+q")

    run(resume())


def test_cli_app_smoke_and_no_command_without_a_terminal(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convsim.tui.cli import main

    assert main(["app", "--smoke"]) == 0
    assert "home screen shows 0 chats and 0 personas" in capsys.readouterr().out
    # Without a terminal (a pipe, a script) the bare command prints help instead of the app.
    assert main([]) == 0
    assert "usage: convsim" in capsys.readouterr().out
