"""The "why did it say that?" dialog (`ExplainScreen`), driven with Textual's pilot over a tiny
persona trained on the sample chat with planted phrases (real store, llama.cpp and MiniLM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_app import SIZE, run, wait_for
from test_explain import PLANTED, REPRODUCED, TURNS, train_planted

from convsim.tui.app import ConvsimApp

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def persona(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    home = tmp_path_factory.mktemp("app-explain") / "home"
    model_id, planted = train_planted(tiny, home)
    return home, model_id, planted


def test_explain_lists_the_planted_message_first_and_opens_it_in_the_chat(persona) -> None:
    from textual.widgets import OptionList, Static

    from convsim.tui.app.screens.explain import ExplainScreen
    from convsim.tui.app.screens.home import HomeScreen

    home, model_id, planted = persona
    text = PLANTED[0][1]
    turns = [*TURNS, ("Sam", REPRODUCED[0])]  # the reply itself ends the turns: left out

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=(80, 24)) as pilot:  # the smallest screen it is made for
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
            await app.push_screen(ExplainScreen(model_id, REPRODUCED[0], turns))
            screen = app.screen
            assert isinstance(screen, ExplainScreen) and screen.turns == TURNS
            await wait_for(pilot, lambda: screen.explanation is not None, timeout=120)
            found = screen.explanation
            assert found.matches[0].message.id == planted[text]
            matches = screen.query_one("#explain-matches", OptionList)
            assert matches.option_count == len(found.matches) and matches.highlighted == 0
            first = str(matches.get_option_at_index(0).prompt)
            assert text in first and "score" in first and "replying to" in first
            note = str(screen.query_one("#explain-note", Static).render())
            assert "training messages" in note and "meaning and persona" in note
            await pilot.press("o")
            await wait_for(pilot, lambda: screen.opened == planted[text])
            lines = screen.query(".context-line")
            shown = [str(line.render()) for line in lines]
            sources = [str(line.render()) for line in screen.query(".context-line.-source")]
            assert len(sources) == 1 and text in sources[0] and "Sam" in sources[0]
            assert len(shown) > 1  # the messages around it too
            # On screen: the opened message (scrolled to), inside its box, and the keys line.
            box = screen.query_one("#explain-context")
            source = screen.query_one(".context-line.-source")
            await wait_for(pilot, lambda: box.region.contains_region(source.region))
            assert source.region.height > 0 and screen.query_one("#explain-keys").region.height
            assert box.region.bottom <= screen.query_one("#explain").region.bottom
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))

    run(go())


def test_explain_has_nothing_to_say_for_the_plain_base(persona) -> None:
    from textual.widgets import Static

    from convsim.tui.app.screens.explain import NO_PERSONA, ExplainScreen
    from convsim.tui.app.screens.home import HomeScreen

    home, _, _ = persona

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
            await app.push_screen(ExplainScreen("base", "hello there", []))
            screen = app.screen
            await pilot.pause()
            note = screen.query_one("#explain-note", Static)
            assert str(note.render()) == NO_PERSONA and note.has_class("-failure")
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))

    run(go())
