"""The steering panel of the chat screen (F8), driven with Textual's pilot on the tiny model
with real control-vector files and real llama.cpp generation (nothing mocked)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_app import SIZE, notifications, wait_for
from tinymodels import TinyModel

from convsim.convert.control_vector import ControlVector, write_control_vector
from convsim.tui.app import ConvsimApp


def write_vector(
    model_path: Path,
    name: str,
    poles: tuple[str, str],
    scale: float = 1.0,
    ranges: tuple[float, float] = (2.0, 2.0),
    seed: int = 0,
    n_embd: int = 64,
) -> Path:
    """A calibrated control vector for the tiny gemma3 model (2 blocks: block 1 steered), with
    random direction of length about 8 * `scale`; `ranges`: (at +1, at -1)."""
    rows = np.zeros((2, n_embd), dtype=np.float32)
    rows[1] = np.random.default_rng(seed).normal(0, scale, n_embd)
    meta = {
        "name": name, "positive": poles[0], "negative": poles[1], "band": [1, 1],
        "range_positive": ranges[0], "range_negative": ranges[1],
        "baseline_perplexity": 10.0, "sweep": [],
    }  # fmt: skip
    path = model_path / "steering" / f"{name}.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_control_vector(path, ControlVector("gemma3", rows, meta))


def persona_folder(home: Path) -> Path:
    """A persona folder with three vectors: brief, happy (strong) and warm."""
    folder = home / "models" / "sam-1"
    write_vector(folder, "brief", ("brief", "chatty"), ranges=(1.0, 1.5), seed=1)
    write_vector(folder, "happy", ("happy", "sad"), scale=3.0, ranges=(4.0, 4.0), seed=2)
    write_vector(folder, "warm", ("warm", "cold"), seed=3)
    return folder


def run(coro: Any) -> None:
    asyncio.run(coro)


async def open_chat(
    pilot: Any, tiny: TinyModel, folder: Path | None, model_id: str | None = None
) -> Any:
    """The chat screen on the tiny model whose persona folder is `folder`."""
    from convsim.core.inference.engine import Engine
    from convsim.tui.app.screens.chat import ChatScreen, Persona
    from convsim.tui.app.screens.home import HomeScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
    engine = Engine(tiny.gguf_path, n_ctx=1024)
    persona = Persona(engine, "Sam", "Riya", "Sam (test)", model_id, None, folder)
    await app.push_screen(ChatScreen(persona))
    await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
    chat = app.screen
    chat.autocomplete_on = False
    return chat


async def greedy_chat(pilot: Any, tiny: TinyModel, folder: Path) -> tuple[Any, Any, Any]:
    """The chat screen replying greedily, after a first message: (chat, a coroutine function
    that writes the reply again and returns it, that first reply)."""
    chat = await open_chat(pilot, tiny, folder)
    sampling = chat.query_one("#sampling")
    sampling.sampling = replace(sampling.sampling, temperature=0.0, seed=0)

    async def reply() -> list[tuple[str, str]]:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not chat.generating)
        return chat.turns[chat._last_reply_start() :]

    chat.query_one("#draft").focus()
    await pilot.press(*"hey are we going", "enter")
    await wait_for(pilot, lambda: not chat.generating)
    return chat, reply, chat.turns[chat._last_reply_start() :]


async def open_panel(pilot: Any, chat: Any) -> Any:
    from convsim.tui.app.screens.steering import SteeringPanel

    await pilot.press("f8")
    panel = chat.query_one(SteeringPanel)
    await wait_for(pilot, lambda: chat.steer_loaded or chat.persona.model_path is None)
    await pilot.pause()
    assert panel.display and not panel.has_class("-hidden")
    return panel


def status(chat: Any) -> str:
    return str(chat.query_one("#chat-status").render())


def shown(widget: Any) -> str:
    return str(widget.render())


def test_panel_lists_sliders_that_keys_move_and_presets_and_reset_set(
    home: Path, tiny: TinyModel
) -> None:
    from textual.widgets import Button

    from convsim.tui.app.screens.steering_widgets import SteerSlider

    folder = persona_folder(home)
    # A vector of another model (another width) is refused, named in the panel, not loaded.
    write_vector(folder, "other", ("x", "y"), n_embd=32)

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(pilot, tiny, folder, "sam-1")
            panel = await open_panel(pilot, chat)
            sliders = panel.sliders()
            assert [s.key for s in sliders] == ["brief", "happy", "warm"]
            assert sliders[0].poles == ("brief", "chatty")
            assert "other.gguf" in shown(panel.query_one("#steer-note"))
            assert "(convsim steer remove sam-1 other removes it)" in shown(
                panel.query_one("#steer-note")
            )
            assert panel.query_one("#steer-note").has_class("-failure")
            first = shown(sliders[0]).splitlines()
            assert first[0].startswith("brief 0.0") and first[0].endswith("-1.5…+1.0")
            assert first[1].startswith("chatty ") and first[1].endswith(" brief")
            assert "●" in first[1] and "±4.0" in shown(sliders[1])
            assert app.focused is sliders[0]
            assert "steer:" not in status(chat)

            # Right moves by 0.1, shift+right by 0.5; left back; the status line shows the mix.
            await pilot.press("right", "right", "right")
            assert sliders[0].value == 0.3
            assert status(chat).endswith("steer: brief +0.3")
            await pilot.press("shift+right", "shift+right")
            assert sliders[0].value == 1.0  # stops at +1
            await pilot.press("tab", "left", "shift+left")
            assert app.focused is sliders[1] and sliders[1].value == -0.6
            # Sizes summing past 1: the mix scales both (1 / (1 + 0.6)).
            assert status(chat).endswith("steer: brief +1.0 happy -0.6 ×0.62")
            assert chat.steer_values == {"brief": 1.0, "happy": -0.6, "warm": 0.0}
            assert "brief +1.0" in shown(sliders[0]).splitlines()[0]

            # Presets: only those whose vectors exist; each replaces the whole mix.
            assert panel.query_one("#steer-preset-formal", Button).disabled
            assert not panel.query_one("#steer-preset-cheerful", Button).disabled
            await pilot.click("#steer-preset-cheerful")
            assert [s.value for s in sliders] == [0.0, 0.6, 0.4]
            assert status(chat).endswith("steer: happy +0.6 warm +0.4")
            await pilot.click("#steer-preset-short")
            assert status(chat).endswith("steer: brief +1.0")

            # Reset puts every slider at 0 and the status line loses the mix.
            await pilot.click("#steer-reset")
            assert [s.value for s in sliders] == [0.0, 0.0, 0.0]
            assert "steer" not in status(chat)
            await pilot.pause()

            # A click on the bar puts the slider there; F8 closes the panel, focus goes back.
            warm = sliders[2]
            width = warm.content_region.width
            await pilot.click(warm, offset=(len("cold ") + width - 11, 1))  # the bar's last cell
            assert warm.value == 1.0 and app.focused is warm
            await pilot.click(warm, offset=(len("cold "), 1))  # its first
            assert warm.value == -1.0
            assert status(chat).endswith("steer: warm -1.0")
            await pilot.press("0")
            assert warm.value == 0.0
            await pilot.press("f8")
            await pilot.pause()
            assert not panel.display and app.focused is chat.query_one("#draft")
            assert chat.steering_applied is None  # nothing was generated yet
            assert all(isinstance(s, SteerSlider) for s in sliders)

    run(drive())


def test_a_moved_slider_steers_the_next_reply(home: Path, tiny: TinyModel) -> None:
    """Greedy replies: the same without steering, another with happy at +1, the first again
    after Reset; the mix reaches the engine only when the next reply starts."""
    folder = persona_folder(home)

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat, reply, plain = await greedy_chat(pilot, tiny, folder)
            assert plain and chat.steering_applied is None
            assert await reply() == plain  # greedy: the same reply again

            panel = await open_panel(pilot, chat)
            happy = panel.sliders()[1]
            happy.focus()
            await pilot.press("shift+right", "shift+right")
            assert happy.value == 1.0
            assert chat.steering_applied is None  # pending until the next reply starts
            steered = await reply()
            rows, first, last = chat.steering_applied
            assert (rows.shape, first, last) == ((1, 64), 1, 1)
            assert steered != plain
            assert status(chat).endswith("steer: happy +1.0")
            assert "prompt tokens from cache" in status(chat)

            await pilot.click("#steer-reset")
            assert await reply() == plain
            assert chat.steering_applied is None

    run(drive())


def test_delete_removes_a_slider_and_its_vector_after_asking(home: Path, tiny: TinyModel) -> None:
    """Delete on a slider asks; Cancel keeps it; Remove deletes the file, takes the slider away
    and the next (greedy) reply is as unsteered; removing the last says there are none."""
    from convsim.tui.app.screens.steering import NO_VECTORS
    from convsim.tui.app.widgets import ConfirmDialog

    folder = persona_folder(home)
    happy_file = folder / "steering" / "happy.gguf"

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            chat, reply, plain = await greedy_chat(pilot, tiny, folder)
            panel = await open_panel(pilot, chat)
            brief, happy, warm = panel.sliders()
            happy.focus()
            await pilot.press("shift+right", "shift+right")
            assert await reply() != plain
            assert status(chat).endswith("steer: happy +1.0")

            happy.focus()
            await pilot.press("delete")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            assert "happy (sad ← → happy)" in shown(app.screen.query_one("#confirm-body"))
            await pilot.press("escape")  # cancel: nothing changes
            await wait_for(pilot, lambda: app.screen is chat)
            assert happy_file.exists() and [s.key for s in panel.sliders()] == [
                "brief", "happy", "warm"
            ]  # fmt: skip

            happy.focus()
            await pilot.press("delete")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.click("#confirm-yes")
            await wait_for(pilot, lambda: "happy" not in chat.steer_vectors)
            await pilot.pause()
            assert not happy_file.exists()
            assert [s.key for s in panel.sliders()] == ["brief", "warm"]
            assert app.focused is warm  # the next slider
            assert chat.steer_values == {"brief": 0.0, "warm": 0.0}
            assert "steer" not in status(chat)
            assert "Removed the steering slider happy" in " ".join(notifications(app))
            assert await reply() == plain  # the next reply is not steered any more
            assert chat.steering_applied is None

            for slider in (warm, brief):  # the last one goes too: the panel says so
                slider.focus()
                await pilot.press("delete")
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
                await pilot.click("#confirm-yes")
                await wait_for(pilot, lambda s=slider: s.key not in chat.steer_vectors)
            await pilot.pause()
            assert panel.sliders() == [] and not list((folder / "steering").glob("*.gguf"))
            assert shown(panel.query_one("#steer-note")) == NO_VECTORS
            assert app.focused is chat.query_one("#draft")

    run(drive())


def test_new_axis_errors_are_shown_in_the_panel(home: Path, tiny: TinyModel) -> None:
    from textual.widgets import Button, Input, ProgressBar

    folder = persona_folder(home)

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            # A persona that is not on record cannot build.
            chat = await open_chat(pilot, tiny, folder)
            panel = await open_panel(pilot, chat)
            panel.query_one("#steer-positive", Input).value = "playful"
            panel.query_one("#steer-negative", Input).value = "serious"
            await pilot.click("#steer-build")
            note = panel.query_one("#steer-build-note")
            assert "needs a trained persona" in shown(note) and note.has_class("-failure")
            await app.pop_screen()

            # A bad pole or name: the build worker stops with the library's sentence.
            chat = await open_chat(pilot, tiny, folder, model_id="sam-1")
            panel = await open_panel(pilot, chat)
            note = panel.query_one("#steer-build-note")
            panel.query_one("#steer-positive", Input).value = "playful"
            panel.query_one("#steer-negative", Input).focus()
            await pilot.press("enter")  # Enter in the last field builds
            await wait_for(pilot, lambda: not chat.steer_building and shown(note) != "")
            assert "negative pole must be a short description" in shown(note)
            assert note.has_class("-failure")
            assert not panel.query_one("#steer-build", Button).disabled
            assert panel.query_one("#steer-stop", Button).disabled
            assert panel.query_one("#steer-progress", ProgressBar).has_class("-hidden")

            panel.query_one("#steer-name", Input).value = "Bad Name"
            panel.query_one("#steer-negative", Input).value = "serious"
            await pilot.click("#steer-build")
            await wait_for(pilot, lambda: "not a usable vector name" in shown(note))
            assert [s.key for s in panel.sliders()] == ["brief", "happy", "warm"]
            # No name, and a pole that makes none: asked for one, before anything runs.
            panel.query_one("#steer-name", Input).value = ""
            panel.query_one("#steer-positive", Input).value = "!!!"
            await pilot.click("#steer-build")
            assert shown(note) == "Give the slider a name: this pole makes none."
            assert not chat.steer_building and panel.query_one("#steer-name", Input).has_focus

            # The plain base model has no sliders and no form.
            await app.pop_screen()
            chat = await open_chat(pilot, tiny, None)
            panel = await open_panel(pilot, chat)
            assert "trained persona" in shown(panel.query_one("#steer-note"))
            assert panel.query_one("#steer-build", Button).disabled
            assert not panel.sliders()

    run(drive())


@pytest.fixture
def on_record(home: Path, tiny: TinyModel, adapter: Path) -> Path:
    """A home where sam-1 is a ready persona on record: the sample chat, Sam's dataset, the
    tiny base and a random LoRA (what `build_vector` needs)."""
    import shutil

    from convsim.core.data.dataset import DatasetConfig
    from convsim.core.store.records import ModelRecord
    from convsim.core.workspace import SAMPLE_CHAT, Workspace

    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        dataset = ws.build_dataset(report.chat_id, DatasetConfig(target="Sam"))
        folder = ws.locations.models / "sam-1"
        folder.mkdir(parents=True)
        shutil.copy(adapter, folder / "adapter.gguf")
        ws.store.add_model(
            ModelRecord("sam-1", report.chat_id, dataset.id, "Sam", str(tiny.gguf_path),
                        "0" * 64, "2026-01-01T00:00:00", "ready", str(folder))
        )  # fmt: skip
    return folder


def test_a_build_reports_progress_and_stop_cancels_it(
    on_record: Path, tiny: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real build job on the tiny persona, stopped at its first progress: nothing is
    saved. (A whole build takes about 20 s on the tiny model, mostly calibration: too long
    for this suite, so a finished build is shown below with a vector written here.) The job
    waits for Stop before it loads the model, so the click never comes after the end."""
    from textual.widgets import Button, Input, ProgressBar

    from convsim.core.steering import build

    stopped = threading.Event()
    real_load = build.load_persona

    def load_after_stop(*args: Any) -> Any:
        stopped.wait(60)
        return real_load(*args)

    monkeypatch.setattr(build, "load_persona", load_after_stop)

    async def drive() -> None:
        app = ConvsimApp(on_record.parent.parent)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(pilot, tiny, on_record, model_id="sam-1")
            panel = await open_panel(pilot, chat)
            assert "No sliders yet" in shown(panel.query_one("#steer-note"))
            panel.query_one("#steer-positive", Input).value = "very playful"
            panel.query_one("#steer-negative", Input).value = "serious"
            await pilot.click("#steer-build")
            assert chat.steer_building
            assert panel.query_one("#steer-build", Button).disabled
            note = panel.query_one("#steer-build-note")
            await wait_for(pilot, lambda: shown(note).startswith(("contrast pairs", "directions")))
            bar = panel.query_one("#steer-progress", ProgressBar)
            assert bar.display and bar.total is not None
            await pilot.click("#steer-stop")
            stopped.set()
            await wait_for(pilot, lambda: not chat.steer_building)
            assert "'very-playful' was stopped; nothing was saved" in shown(note)
            assert note.has_class("-failure") and not bar.display
            assert not (on_record / "steering" / "very-playful.gguf").exists()
            assert not panel.sliders()

    run(drive())


def test_a_built_vector_becomes_a_slider(home: Path, tiny: TinyModel) -> None:
    """What the build worker posts when it has saved a vector: its slider appears, focused,
    and moves the next reply like the others."""
    from convsim.core.steering import library
    from convsim.tui.app.messages import SteerBuildEnded

    folder = persona_folder(home)

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(pilot, tiny, folder, model_id="sam-1")
            panel = await open_panel(pilot, chat)
            path = write_vector(folder, "playful", ("playful", "serious"), seed=4)
            chat.post_message(SteerBuildEnded(library.load(path, ("gemma3", 64, 2)), None))
            await wait_for(pilot, lambda: len(panel.sliders()) == 4)
            await pilot.pause()
            assert [s.key for s in panel.sliders()] == ["brief", "happy", "warm", "playful"]
            assert app.focused is panel.sliders()[3]
            assert "New slider: playful" in shown(panel.query_one("#steer-build-note"))
            await pilot.press("right")
            assert status(chat).endswith("steer: playful +0.1")

            # A vector built again under the same name replaces its slider.
            chat.post_message(SteerBuildEnded(library.load(path, ("gemma3", 64, 2)), None))
            await wait_for(pilot, lambda: chat.steer_values["playful"] == 0.0)
            await pilot.pause()
            assert [s.key for s in panel.sliders()] == ["brief", "happy", "warm", "playful"]
            assert "steer" not in status(chat)

    run(drive())
