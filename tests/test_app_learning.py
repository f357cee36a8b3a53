"""The persona keeps learning, in the app: feedback in the chat (+, -, edits, regenerations,
autocomplete), the feedback view, and the learn screen running real updates ("sleep") on a
tiny persona trained on the sample chat (real store, llama.cpp, torch; nothing mocked).

The tests share one persona and run in file order: nothing to learn on the fresh persona,
then feedback, then the updates that learn it, then a rollback."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from judge_server import Judge, judging
from test_app import SIZE, notifications, run, wait_for

from convsim.core.inference.best_of import PRIOR_REPLIES, TALLY_FILE
from convsim.tui.app import ConvsimApp

pytest.importorskip("peft")

TURNS = [("Riya", "are you coming on friday?"), ("Sam", "yesss"), ("Riya", "great")]


@pytest.fixture(scope="module")
def persona(tiny_persona: tuple[Path, str]) -> tuple[Path, str]:
    return tiny_persona


def settings(**overrides: Any) -> Any:
    """Update settings small enough for the tiny persona (seconds on a CPU)."""
    from convsim.core.learning import LearnSettings

    values = {"batch_size": 2, "seq_len": 64, "slice_items": 4, "threads": 2, "warmup_steps": 1}
    return LearnSettings(**{**values, **overrides})


def items(home: Path, model_id: str) -> list[Any]:
    from convsim.core.learning.feedback import Feedback
    from convsim.core.workspace import Workspace

    with Workspace.open(home) as ws:
        return Feedback(ws.store).items(model_id)


def add_feedback(home: Path, model_id: str, count: int = 4) -> None:
    """Edits that always say "ya" for "yes": something for an update to learn."""
    from convsim.core.learning.feedback import Feedback
    from convsim.core.workspace import Workspace

    with Workspace.open(home) as ws:
        for i in range(count):
            turns = [*TURNS[:1], ("Sam", f"maybe {i}"), ("Riya", "so?")]
            Feedback(ws.store).add(model_id, "better", turns, "yes", better="ya")


async def open_persona_chat(pilot, model_id: str) -> Any:
    from convsim.tui.app.screens.chat import ChatScreen
    from convsim.tui.app.screens.chat_persona import persona_from_model
    from convsim.tui.app.screens.home import HomeScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
    await app.push_screen(ChatScreen(persona_from_model(app, model_id)))
    chat = app.screen
    chat.autocomplete_on = False
    sampling = chat.query_one("#sampling")
    sampling.sampling = replace(sampling.sampling, seed=3, best_of=2)
    return chat


async def reply(pilot, chat, text: str) -> None:
    """Send `text` and wait for a reply with at least one message (asking again if the tiny
    model sent nothing)."""
    chat.query_one("#draft").value = text
    await pilot.press("enter")
    for _ in range(5):
        await wait_for(pilot, lambda: not chat.generating, timeout=120)
        if chat.turns[-1][0] == chat.persona.speaker:
            return
        await pilot.press("ctrl+o")
    raise AssertionError(f"no reply: {chat.turns}")


async def saved(pilot, chat, count: int) -> None:
    try:
        await wait_for(pilot, lambda: len(chat.feedback_saved) >= count, timeout=30)
    except AssertionError:
        raise AssertionError(f"{chat.feedback_saved} {notifications(pilot.app)}") from None


async def open_learn(pilot, model_id: str, **overrides: Any) -> Any:
    from convsim.tui.app.screens.home import HomeScreen
    from convsim.tui.app.screens.learn import LearnScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
    await app.push_screen(LearnScreen(model_id, "Sam", settings(**overrides)))
    screen = app.screen
    await wait_for(pilot, lambda: screen.loaded)
    return screen


def status(screen: Any) -> str:
    return str(screen.query_one("#learn-status").render())


# ------------------------------------------------------------------------ nothing to learn


def test_nothing_to_learn_is_a_line_on_the_screen(persona) -> None:
    home, model_id = persona
    assert items(home, model_id) == []

    async def go() -> None:
        from convsim.tui.app.screens.home import HomeScreen
        from convsim.tui.app.screens.learn import LearnScreen

        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
            await pilot.press("l")  # the selected persona: the only one
            await wait_for(pilot, lambda: isinstance(app.screen, LearnScreen))
            screen = app.screen
            assert screen.model_id == model_id
            await wait_for(pilot, lambda: screen.loaded)
            assert "No new feedback" in str(screen.query_one("#learn-counts").render())
            assert screen.current == 1 and [v.version for v in screen.versions] == [1]
            await pilot.press("s")
            await wait_for(pilot, lambda: screen.nothing is not None, timeout=120)
            assert screen.state == "idle" and "Nothing new to learn" in status(screen)
            assert not [n for n in notifications(app) if "failed" in n]

    run(go())


# ------------------------------------------------------------------------ feedback in the chat


def test_thumbs_edits_and_regenerations_are_stored_with_their_context(persona) -> None:
    from convsim.tui.app.screens.chat import Bubble

    home, model_id = persona

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_persona_chat(pilot, model_id)
            await reply(pilot, chat, "are you coming on friday?")
            index = len(chat.turns) - 1
            bubbles = list(chat.query(Bubble))
            bubbles[index].focus()
            await pilot.press("plus")
            await saved(pilot, chat, 1)
            await pilot.press("minus")
            await saved(pilot, chat, 2)
            good, bad = chat.feedback_saved
            assert (good.kind, bad.kind) == ("good", "bad")
            for item in (good, bad):
                assert item.transcript == chat.turns[:index]
                assert item.reply == chat.turns[index][1] and item.version == 1
                assert item.speaker == "Sam" and item.origin == "chat"
            assert chat.feedback_marks[index] == ("bad", chat.turns[index][1])
            rated = list(chat.query(Bubble))[index]
            assert rated.has_class("-rated-bad") and not rated.has_class("-rated-good")
            assert rated.mark == "👎" and str(rated.render()).endswith("  👎")
            await wait_for(pilot, lambda: "👎 Noted" in " ".join(notifications(app)))

            # Regenerate: the reply it replaces, as a whole, with its best-of-N candidates.
            start = chat._last_reply_start()
            replaced = "\n".join(t for _, t in chat.turns[start:])
            before = list(chat.turns[:start])
            await pilot.press("ctrl+r")
            await saved(pilot, chat, 3)
            regen = chat.feedback_saved[2]
            assert regen.kind == "regenerate" and regen.reply == replaced.strip()
            assert regen.transcript == before and len(regen.candidates) == 2
            assert {"text", "score"} <= set(regen.candidates[0])
            # The candidates' styles are counted in the persona's folder, for the next chat.
            tally = json.loads((home / "models" / model_id / TALLY_FILE).read_text())
            assert tally["tallies"]["Sam"]["total"] > PRIOR_REPLIES
            await wait_for(pilot, lambda: not chat.generating, timeout=120)
            assert index not in chat.feedback_marks  # that message is gone
            if chat.turns[-1][0] != "Sam":
                await pilot.press("ctrl+o")
                await wait_for(pilot, lambda: not chat.generating, timeout=120)

            # Edit the latest message: the edit is the better reply.
            original = chat.turns[-1][1]
            await pilot.press("ctrl+t")
            await wait_for(pilot, lambda: app.screen is not chat)
            app.screen.query_one("#edit").value = "ya see you there"
            await pilot.press("enter")
            await saved(pilot, chat, 4)
            better = chat.feedback_saved[3]
            assert better.kind == "better" and better.reply == original
            assert better.better == "ya see you there"
            assert better.transcript == chat.turns[:-1]
            edited = list(chat.query(Bubble))[-1]
            assert edited.has_class("-rated-better") and edited.mark == "✎"
            assert all(b.mark == "" for b in list(chat.query(Bubble))[:-1])

            # The same text again is no edit: nothing stored.
            await pilot.press("ctrl+t")
            await wait_for(pilot, lambda: app.screen is not chat)
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is chat)
            await pilot.pause(0.2)
            assert len(chat.feedback_saved) == 4

    run(go())
    stored = items(home, model_id)
    assert [i.kind for i in stored] == ["good", "bad", "regenerate", "better"]


def test_autocomplete_suggestions_taken_edited_and_dismissed(persona) -> None:
    from textual import events

    home, model_id = persona
    count = len(items(home, model_id))

    async def suggest(pilot, chat, text: str) -> Any:
        draft = chat.query_one("#draft")
        draft.focus()
        for ch in text:
            draft.post_message(events.Key(ch if ch != " " else "space", ch))
        await wait_for(pilot, lambda: draft.ghost, timeout=60)
        return draft

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_persona_chat(pilot, model_id)
            chat.autocomplete_on = True
            chat.turns = list(TURNS)
            chat._redraw()

            draft = await suggest(pilot, chat, "see you")
            shown = draft.value + draft.ghost
            await pilot.press("escape")
            await saved(pilot, chat, 1)
            dismissed = chat.feedback_saved[0]
            assert (dismissed.kind, dismissed.reply) == ("dismissed", shown.strip())
            assert dismissed.speaker == "Riya" and dismissed.transcript == TURNS

            draft.value = ""
            draft = await suggest(pilot, chat, "ok")
            await pilot.press("tab")
            taken_text = draft.value
            chat.autocomplete_on = False
            await pilot.press("enter")
            await saved(pilot, chat, 2)
            taken = chat.feedback_saved[1]
            assert (taken.kind, taken.reply) == ("taken", taken_text.strip())
            await wait_for(pilot, lambda: not chat.generating, timeout=120)

            chat.autocomplete_on = True
            draft = await suggest(pilot, chat, "we")
            await pilot.press("tab")
            suggested = draft.value
            chat.autocomplete_on = False
            await pilot.press("end", "space", *"yo")
            await pilot.press("enter")
            await saved(pilot, chat, 3)
            edited = chat.feedback_saved[2]
            assert edited.kind == "edited" and edited.reply == suggested.strip()
            assert edited.better == (suggested + " yo").strip()
            await wait_for(pilot, lambda: not chat.generating, timeout=120)

    run(go())
    assert len(items(home, model_id)) == count + 3


# ------------------------------------------------------------------------ the feedback view


def test_the_feedback_view_lists_and_removes_items(persona) -> None:
    from textual.widgets import DataTable

    from convsim.tui.app.screens.feedback import FeedbackScreen
    from convsim.tui.app.screens.learn_widgets import short

    home, model_id = persona
    before = items(home, model_id)
    assert before

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_persona_chat(pilot, model_id)
            await pilot.press("f10")
            await wait_for(pilot, lambda: isinstance(app.screen, FeedbackScreen))
            view = app.screen
            await wait_for(pilot, lambda: view.items is not None)
            table = view.query_one("#feedback-table", DataTable)
            assert table.row_count == len(before)
            first = " ".join(str(c) for c in table.get_row_at(0))
            one_line = short(before[0].reply)  # a cell is one line
            assert "good" in first and "new" in first and one_line[:10] in first
            assert before[0].reply[:10] in str(view.query_one("#feedback-detail").render())
            await pilot.press("delete")
            await wait_for(pilot, lambda: len(view.items or []) == len(before) - 1)
            assert table.row_count == len(before) - 1
            await wait_for(pilot, lambda: "Removed" in " ".join(notifications(app)))
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is chat)

    run(go())
    assert [i.id for i in items(home, model_id)] == [i.id for i in before[1:]]


# ------------------------------------------------------------------------ updates


def test_an_update_runs_to_the_forgetting_table_and_a_new_version(persona) -> None:
    from textual.widgets import DataTable

    from convsim.tui.app.widgets import LossChart

    home, model_id = persona
    add_feedback(home, model_id)

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_learn(pilot, model_id)
            assert "New since the last update" in str(screen.query_one("#learn-counts").render())
            await pilot.press("s")
            await wait_for(pilot, lambda: screen.state != "running", timeout=600)
            assert screen.state == "done", notifications(app)
            outcome = screen.outcome
            assert outcome is not None and outcome["version"] == 2
            table = screen.query_one("#learn-table", DataTable)
            assert table.row_count == len(outcome["forgetting"]) > 0
            row = " ".join(str(c) for c in table.get_row_at(0))
            assert "→" in row and "%" in row
            shown = str(screen.query_one("#learn-verdict").render())
            if outcome["promoted"]:
                assert "Promoted: version 2 is now in use" in shown
            else:
                assert "Not promoted" in shown and screen.has_class("-not-promoted")
            await wait_for(pilot, lambda: len(screen.versions) == 2)
            versions = screen.query_one("#learn-versions", DataTable)
            assert versions.row_count == 2 and str(versions.get_row_at(0)[1]) == "2"
            assert screen.query_one(LossChart).train  # the loss was drawn

    run(go())
    assert all(i.used_in == 2 for i in items(home, model_id))


def test_stop_then_resume_finishes_the_update(persona) -> None:
    from convsim.tui.app.widgets import LossChart

    home, model_id = persona
    add_feedback(home, model_id, 8)

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_learn(pilot, model_id, epochs=40.0)
            await pilot.click("#learn-start")

            def training() -> bool:
                e = screen.last_event
                return e is not None and e.stage == "train" and e.train is not None

            await wait_for(pilot, training, timeout=300)
            await pilot.press("ctrl+x")
            await wait_for(pilot, lambda: screen.state != "running", timeout=300)
            assert screen.state == "cancelled", notifications(app)
            assert screen.outcome is not None and screen.outcome["status"] == "cancelled"
            assert "Stopped" in str(screen.query_one("#learn-verdict").render())
            version = screen.outcome["version"]
            await pilot.click("#learn-resume")
            await wait_for(pilot, lambda: screen.state == "running")
            await wait_for(pilot, lambda: screen.state != "running", timeout=600)
            assert screen.state == "done", notifications(app)
            assert screen.outcome["version"] == version and screen.outcome["status"] == "done"
            steps = [step for step, _ in screen.query_one(LossChart).train]
            assert steps == list(range(1, steps[-1] + 1))  # the whole update, each step once

    run(go())


def test_rollback_and_keep_anyway_choose_the_version_the_chat_uses(persona) -> None:
    from textual.widgets import DataTable

    from convsim.core.training.versions import current, versions
    from convsim.core.workspace import Workspace

    home, model_id = persona

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_learn(pilot, model_id)
            table = screen.query_one("#learn-versions", DataTable)
            assert table.row_count >= 3
            table.move_cursor(row=table.row_count - 1)  # version 1 (newest first)
            await pilot.click("#learn-rollback")
            await wait_for(pilot, lambda: screen.current == 1)
            await wait_for(pilot, lambda: "▶" in str(table.get_row_at(table.row_count - 1)[0]))
            await wait_for(pilot, lambda: "now uses version 1" in " ".join(notifications(app)))
            # Keep anyway: an update that was not promoted becomes the one in use.
            screen.show_outcome({"status": "done", "version": 2, "promoted": False,
                                 "reason": "a slice got worse", "current": 1,
                                 "forgetting": [], "counts": {}})  # fmt: skip
            await pilot.pause()
            await pilot.click("#learn-keep")
            await wait_for(pilot, lambda: screen.current == 2)
            assert not screen.has_class("-not-promoted")

    run(go())
    with Workspace.open(home) as ws:
        assert current(ws.store, model_id).version == 2
        assert [v.kept for v in versions(ws.store, model_id)][:3] == [True, True, False]


# ------------------------------------------------------------------------ the judge

RULES = "Sam never shouts.\nSam runs on Thursdays."


def test_the_constitution_is_written_in_its_dialog_and_the_judge_needs_an_endpoint(
    persona,
) -> None:
    from textual.widgets import Switch, TextArea

    from convsim.core.learning import constitution
    from convsim.core.workspace import Workspace
    from convsim.tui.app.screens.constitution import ConstitutionDialog

    home, model_id = persona

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_learn(pilot, model_id)
            switch = screen.query_one("#learn-judge", Switch)
            assert switch.disabled and not switch.value and screen.endpoint is None
            hint = str(screen.query_one("#learn-judge-hint").render())
            assert "convsim memory endpoint URL" in hint
            await pilot.press("j")  # refused, with the same hint
            assert not switch.value
            await wait_for(pilot, lambda: "convsim memory endpoint" in " ".join(notifications(app)))

            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ConstitutionDialog))
            dialog = app.screen
            await wait_for(pilot, lambda: dialog.loaded)
            editor = dialog.query_one("#constitution-text", TextArea)
            assert editor.text == ""
            await wait_for(pilot, lambda: editor.has_focus)
            editor.load_text("\n".join(f"line {i}" for i in range(41)))
            await pilot.press("ctrl+s")  # too long: refused, the dialog stays with the text
            await wait_for(pilot, lambda: "Constitution not saved" in " ".join(notifications(app)))
            await wait_for(pilot, lambda: not dialog.query_one("#constitution-save").disabled)
            assert app.screen is dialog and "at most 40" in " ".join(notifications(app))
            editor.load_text("Sam never shouts.\n")
            editor.move_cursor(editor.document.end)
            await pilot.press(*"Sam", "space", *"runs", "space", *"on", "space", *"Thursdays.")
            await pilot.click("#constitution-save")
            await wait_for(pilot, lambda: app.screen is screen)
            assert screen.has_constitution
            await wait_for(pilot, lambda: "2 lines kept" in " ".join(notifications(app)))

            await pilot.press("c")  # opens on the stored text; Escape keeps it
            await wait_for(pilot, lambda: isinstance(app.screen, ConstitutionDialog))
            again = app.screen
            await wait_for(pilot, lambda: again.loaded)
            assert again.query_one("#constitution-text", TextArea).text == RULES + "\n"
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen)

    run(go())
    with Workspace.open(home) as ws:
        assert constitution(ws, model_id) == RULES + "\n"


def save_endpoint(home: Path, url: str) -> None:
    from convsim.core.memory import save_endpoint
    from convsim.core.workspace import Workspace

    with Workspace.open(home) as ws:
        save_endpoint(ws.store, url, "judge")


def test_with_the_judge_on_an_update_learns_the_pairs_it_made(persona) -> None:
    from textual.widgets import Switch

    home, model_id = persona
    with socket.socket() as s:  # a port nobody answers on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    save_endpoint(home, f"http://127.0.0.1:{dead}/v1")

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_learn(pilot, model_id)
            switch = screen.query_one("#learn-judge", Switch)
            assert not switch.disabled and f":{dead}/v1 (judge)" in str(screen.endpoint)
            assert "which of two replies" in str(screen.query_one("#learn-judge-hint").render())
            versions_before = len(screen.versions)
            await pilot.press("j")
            assert switch.value
            await pilot.press("s")  # the endpoint does not answer: a line, no new version
            await wait_for(pilot, lambda: screen.state != "running", timeout=300)
            assert screen.state == "failed" and "The judge could not be asked" in status(screen)
            assert screen.query_one("#learn-status").has_class("-failure")

            save_endpoint(home, url)
            await pilot.press("s")
            await wait_for(pilot, lambda: screen.state != "running", timeout=600)
            assert screen.state == "done", (status(screen), notifications(app))
            outcome = screen.outcome
            assert outcome is not None and outcome["counts"]["judged"] > 0
            assert outcome["version"] == versions_before + 1
            assert "pairs the judge made" in str(screen.query_one("#learn-learnt").render())

    with judging() as url:
        run(go())
    assert Judge.asked and all(RULES.split("\n")[0] in p for p in Judge.asked)


def test_marks_stay_on_earlier_messages_and_ctrl_r_with_a_seed_draws_anew(persona) -> None:
    """Ctrl+R redraws the message list: a mark on an earlier message stays on it. With a
    seed set, the reply drawn again is a new draw (the seed moves on), not the same words."""
    from convsim.tui.app.screens.chat import Bubble

    home, model_id = persona

    async def go() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_persona_chat(pilot, model_id)  # seed 3
            await reply(pilot, chat, "are you coming on friday?")
            first = len(chat.turns) - 1
            list(chat.query(Bubble))[first].focus()
            await pilot.press("minus")
            await saved(pilot, chat, 1)
            chat.query_one("#draft").focus()
            await reply(pilot, chat, "so?")
            start = chat._last_reply_start()
            replaced = chat.turns[start:]
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: not chat.generating and len(chat.feedback_saved) == 2)
            await pilot.pause()
            assert chat.turns[start:] != replaced
            bubbles = list(chat.query(Bubble))
            assert len(bubbles) == len(chat.turns)
            assert bubbles[first].mark == "👎" and bubbles[first].has_class("-rated-bad")
            assert all(b.mark == "" for i, b in enumerate(bubbles) if i != first)

    run(go())
