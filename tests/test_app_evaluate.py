"""The Evaluate screen, driven with Textual's pilot: a real quick run of the suite on a tiny
persona trained on the sample chat (real SQLite, llama.cpp and files), stopping a run, and the
charts read back from the saved report."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_app import SIZE, notifications, wait_for
from tinymodels import TinyModel

from convsim.tui.app import ConvsimApp

OPTIONS = {"best_of": 2, "items": 8, "forever_turns": 6, "threads": 2}


@pytest.fixture(scope="module")
def persona(tiny_persona: tuple[Path, str]) -> tuple[Path, str]:
    return tiny_persona


async def open_screen(pilot, model_id: str):
    from convsim.tui.app.screens.evaluate import EvaluateScreen
    from convsim.tui.app.screens.home import HomeScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
    await app.push_screen(EvaluateScreen(model_id, "Sam", OPTIONS))
    screen = app.screen
    await wait_for(pilot, lambda: screen.folder is not None)
    return screen


def test_a_quick_run_shows_charts_and_saves_the_report(persona) -> None:
    from convsim.tui.app.screens.evaluate_widgets import FigureBars

    home, model_id = persona
    report_file = home / "models" / model_id / "eval.json"
    report_file.unlink(missing_ok=True)

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, model_id)
            assert screen.report is None and "Not evaluated yet" in str(
                screen.query_one("#eval-status").render()
            )
            await pilot.press("q")
            await wait_for(pilot, lambda: screen.running)
            await wait_for(pilot, lambda: not screen.running, timeout=600)
            assert screen.report is not None, notifications(app)
            assert report_file.is_file()
            assert json.loads(report_file.read_text()) == screen.report
            chart = screen.query_one("#chart-hits_at_1_others", FigureBars)
            shown = str(chart.render())
            assert "tuned" in shown and "best-of-N" in shown
            value = screen.report["tuned"]["hits_at_1_others"]
            assert f"{value:.2f}" in shown
            style = str(screen.query_one("#eval-style").render())
            assert "messages_per_turn" in style
            ks = screen.report["tuned"]["style_ks"]["length"]
            lo, hi = screen.report["tuned"]["intervals"]["style_ks"]["length"]
            assert f"{ks:.2f} ({lo:.2f}-{hi:.2f})" in style
            assert "Tuned persona against base + their messages as a prompt: closer" in style
            await wait_for(pilot, lambda: "Evaluated: Saved" in " ".join(notifications(app)))

    asyncio.run(go())


def test_a_report_reads_at_80_columns_and_says_n_a_for_a_figure_not_measured(
    persona, monkeypatch, capsys
) -> None:
    """A forever conversation of one-word messages has no word pairs: its distinct-2 is saved as
    null and reads "n/a" on the screen, in the terminal and in report.html, instead of crashing
    them. On an 80-column screen the style table keeps every row on one line."""
    from convsim.core.evaluation.report import render
    from convsim.tui.app.screens.evaluate_widgets import StyleTable
    from convsim.tui.cli import main

    home, model_id = persona
    report_file = home / "models" / model_id / "eval.json"
    if not report_file.is_file():  # this file's first test saves one
        monkeypatch.setenv("CONVSIM_HOME", str(home))
        assert main(["eval", model_id, "--quick", "--items", "8", "--best-of", "2",
                     "--forever-turns", "6", "--threads", "2"]) == 0  # fmt: skip
    saved = report_file.read_text()
    report = json.loads(saved)
    report["forever"] = {**report["forever"], "seeds": 1, "distinct_2": None}
    report_file.write_text(json.dumps(report))
    try:

        async def go() -> None:
            app = ConvsimApp(home)
            async with app.run_test(size=(80, 24)) as pilot:
                screen = await open_screen(pilot, model_id)
                await wait_for(pilot, lambda: screen.report is not None)
                await pilot.pause()
                forever = str(screen.query_one("#eval-forever").render())
                assert "distinct-2 n/a (" in forever and "exact repeats" in forever
                table = screen.query_one(StyleTable)
                rows = str(table.render()).splitlines()
                width = table.content_region.width
                assert rows[2].strip().startswith("length") and "best-of-N" in rows[1]
                assert all(len(row) <= width for row in rows[1:9]), (width, rows)
                ks = report["tuned"]["style_ks"]["length"]
                assert f"{ks:.2f} (." in rows[2] or f"{ks:.2f} (1" in rows[2]

        asyncio.run(go())
        monkeypatch.setenv("CONVSIM_HOME", str(home))
        assert main(["eval", model_id, "--last"]) == 0
        assert "Forever conversation (6 turns × 1), real chat in brackets: distinct-2 n/a (" in (
            capsys.readouterr().out
        )
        assert "<td>distinct 2</td><td>n/a</td>" in render(report)
    finally:
        report_file.write_text(saved)


def test_stopping_a_run_keeps_the_last_report(persona) -> None:
    home, model_id = persona
    report_file = home / "models" / model_id / "eval.json"
    before = report_file.read_text() if report_file.is_file() else None

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, model_id)
            await pilot.press("f")
            # Under way: some stage has reported progress ("ranking base: 1 of 8"...).
            await wait_for(pilot, lambda: " of " in str(screen.query_one("#eval-status").render()))
            await pilot.press("ctrl+x")
            await wait_for(pilot, lambda: not screen.running, timeout=300)
            assert "Stopped" in str(screen.query_one("#eval-status").render())

    asyncio.run(go())
    after = report_file.read_text() if report_file.is_file() else None
    assert after == before


def test_f9_asks_why_of_the_focused_persona_message(persona, tiny: TinyModel) -> None:
    from convsim.core.inference.engine import Engine
    from convsim.tui.app.screens.chat import Bubble, ChatScreen, Persona
    from convsim.tui.app.screens.explain import ExplainScreen
    from convsim.tui.app.screens.home import HomeScreen

    home, model_id = persona
    turns = [("Riya", "run club thursday?"), ("Sam", "ya im in"), ("Riya", "6pm?"),
             ("Sam", "see u there")]  # fmt: skip

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
            engine = Engine(tiny.gguf_path, n_ctx=512)
            chat = ChatScreen(Persona(engine, "Sam", "Riya", "Sam (test)", model_id))
            await app.push_screen(chat)
            chat.turns = list(turns)
            chat._redraw()
            await pilot.pause()
            bubbles = list(chat.query(Bubble))
            assert [b.can_focus for b in bubbles] == [False, True, False, True]
            bubbles[1].focus()
            await pilot.press("f9")
            await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen))
            why = app.screen
            assert (why.reply, why.turns) == ("ya im in", turns[:1])
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is chat)
            chat.set_focus(None)
            await pilot.press("f9")  # nothing focused: the latest persona message
            await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen))
            assert (app.screen.reply, app.screen.turns) == ("see u there", turns[:3])
            await pilot.press("escape")  # stops its index build
            await wait_for(pilot, lambda: app.screen is chat)
            # The same words said twice in a row: only the one asked about is left out.
            chat.turns = [("Riya", "coming?"), ("Sam", "ya"), ("Sam", "ya")]
            chat._redraw()
            await pilot.pause()
            list(chat.query(Bubble))[2].focus()
            await pilot.press("f9")
            await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen))
            assert app.screen.turns == [("Riya", "coming?"), ("Sam", "ya")]
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is chat)

    asyncio.run(go())
