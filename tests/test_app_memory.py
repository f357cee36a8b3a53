"""The memory panel, driven with Textual's pilot on a real store holding the sample chat and a
few facts (search in keyword mode: no embedding model is loaded)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_app import SIZE, notifications, wait_for
from tinymodels import TinyModel

from convsim.core.memory import Facts
from convsim.core.workspace import SAMPLE_CHAT, Workspace
from convsim.tui.app import ConvsimApp


def message_ids(ws: Workspace, chat_id: int, *needles: str) -> list[int]:
    """The store ids of the first message holding each of `needles`."""
    messages = ws.store.messages(chat_id)
    return [next(m.id for m in messages if needle in m.text) for needle in needles]


# (person, key, value, origin, the messages it came from, when it was seen), oldest job first.
FACTS = [
    ("Riya", "job", "waiting to hear back after an interview", "chat",
     ("Next Monday at 10", "straight from the interview"), "2025-02-17T19:14:00"),
    ("Riya", "job", "started a new job; Helen is her manager", "chat",
     ("They offered me the job", "Helen told us today"), "2025-03-24T20:10:00"),
    ("Riya", "running", "joined Sam's Thursday run club", "chat",
     ("I'll come. But if I die",), "2025-02-03T20:36:00"),
    ("Riya", "colleague", "Tomasz, on her team for six years", "chat",
     ("a guy called Tomasz",), "2025-03-10T18:50:00"),
    ("Riya", "birthday", "14 June", "user", (), "2025-06-01T10:00:00"),
    ("Sam", "run club", "Thursdays at 7, the bandstand in the park", "chat",
     ("7 at the bandstand",), "2025-02-03T20:21:00"),
]  # fmt: skip


def seed_facts(ws: Workspace, chat_id: int) -> None:
    """`FACTS`, with fixed dates: a job that changed (a flagged conflict), a pinned fact
    (running), one entered by the user, one about Sam."""
    facts = Facts(ws.store)
    for person, key, value, origin, needles, seen in FACTS:
        sources = message_ids(ws, chat_id, *needles)
        added, _ = facts.add(person, key, value, chat_id=chat_id, origin=origin,
                             sources=sources, seen=seen)  # fmt: skip
        if key == "running":
            facts.pin(added.id)


@pytest.fixture
def remembered(home: Path) -> Path:
    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        ws.store.set_me(report.chat_id, "Riya")
        seed_facts(ws, report.chat_id)
    return home


def run(coro: Any) -> None:
    asyncio.run(coro)


def table_rows(screen: Any) -> list[list[str]]:
    from textual.widgets import DataTable

    table = screen.query_one("#memory-facts", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def values(screen: Any) -> list[str]:
    """The values of the facts in the table, in its order (the cells may be cut short)."""
    return [f.value for f in screen.shown]


def detail(screen: Any) -> list[tuple[str, bool]]:
    """The lines of the sources pane: (text, is a source message)."""
    return [(str(s.render()), s.has_class("-source")) for s in screen.query(".context-line")]


async def open_panel(pilot: Any) -> Any:
    from convsim.tui.app.screens.home import HomeScreen
    from convsim.tui.app.screens.memory import MemoryScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
    await pilot.press("m")
    await wait_for(pilot, lambda: isinstance(app.screen, MemoryScreen) and app.screen.loaded)
    screen = app.screen
    screen.search_mode = "keyword"
    await wait_for(pilot, lambda: screen.sources_shown is not None)
    return screen


async def select_fact(pilot: Any, screen: Any, value: str) -> Any:
    """Put the table's cursor on the fact whose value starts with `value`; returns the fact."""
    from textual.widgets import DataTable

    table = screen.query_one("#memory-facts", DataTable)
    at = next(i for i, v in enumerate(values(screen)) if v.startswith(value))
    table.focus()
    table.move_cursor(row=at)
    chosen = screen.shown[at]
    await wait_for(
        pilot,
        lambda: (
            str(screen.query_one("#memory-detail-title").render()).endswith(chosen.value)
            and screen.sources_shown == screen._sources_key
        ),
    )
    return chosen


def history(home: Path, fact_id: int) -> list[str]:
    with Workspace.open(home) as ws:
        return [e.action for e in Facts(ws.store).history(fact_id)]


def fact(home: Path, fact_id: int) -> Any:
    with Workspace.open(home) as ws:
        return Facts(ws.store).get(fact_id)


def test_panel_opens_from_home_and_lists_a_persons_facts_by_filter(remembered: Path) -> None:
    from textual.widgets import Select

    async def drive() -> None:
        app = ConvsimApp(remembered)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_panel(pilot)
            person = screen.query_one("#memory-person", Select)
            assert person.value == "Riya"  # the person with the most facts comes first
            assert values(screen) == [
                "14 June", "started a new job; Helen is her manager",
                "Tomasz, on her team for six years", "joined Sam's Thursday run club",
            ]  # fmt: skip
            header = [str(c.label) for c in screen.query_one("#memory-facts").columns.values()]
            assert header == ["key", "value", "status", "origin", "last seen", "src"]
            assert table_rows(screen)[1][:2] == ["job", "started a new job; Helen is h…"]
            assert table_rows(screen)[3][2:] == ["pinned", "chat", "2025-02-03", "1"]

            person.value = "Sam"
            await pilot.pause()
            assert values(screen) == ["Thursdays at 7, the bandstand in the park"]
            person.value = "Riya"
            screen.query_one("#memory-status", Select).value = "all"
            await pilot.pause()
            assert "waiting to hear back after an interview" in values(screen)
            screen.query_one("#memory-origin", Select).value = "user"
            await pilot.pause()
            assert values(screen) == ["14 June"]
            assert table_rows(screen)[0][3] == "you"
            screen.query_one("#memory-origin", Select).value = "live"
            await pilot.pause()
            assert values(screen) == []
            assert "No facts match" in str(screen.query_one("#memory-empty").render())

            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is not screen)

    run(drive())


def test_sources_show_the_source_messages_in_context(remembered: Path) -> None:
    async def drive() -> None:
        app = ConvsimApp(remembered)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_panel(pilot)
            await select_fact(pilot, screen, "started a new job")
            lines = detail(screen)
            sources = [text for text, is_source in lines if is_source]
            assert len(sources) == 2
            assert sources[0].startswith("2025-02-25 18:27  Riya: They offered me the job!!")
            assert "Helen told us today" in sources[1]
            around = [text for text, is_source in lines if not is_source]
            assert any("Sam: wait what" in text for text in around)  # the reply after it
            title = str(screen.query_one("#memory-detail-title").render())
            assert title == "Riya · job: started a new job; Helen is her manager"
            assert "History: added" in str(screen.query_one("#memory-history").render())

            await select_fact(pilot, screen, "14 June")
            assert detail(screen) == []
            assert "No source messages" in str(
                screen.query_one("#memory-context").children[0].render()
            )

    run(drive())


def test_add_edit_pin_and_remove_change_the_fact_and_its_history(remembered: Path) -> None:
    from textual.widgets import DataTable, Input, Select

    from convsim.tui.app.screens.memory_widgets import FactDialog
    from convsim.tui.app.widgets import ConfirmDialog

    async def drive() -> None:
        app = ConvsimApp(remembered)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_panel(pilot)

            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, FactDialog))
            dialog = app.screen
            assert dialog.query_one("#fact-person").value == "Riya"
            await pilot.press(*"sister")
            await pilot.press("enter")  # on to the value
            await pilot.press(*"Priya, a nurse")
            loads = screen.loads
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.loads > loads)
            added = screen._current_fact()
            assert (added.key, added.value, added.origin) == ("sister", "Priya, a nurse", "user")
            assert "Priya, a nurse" in values(screen)
            assert history(remembered, added.id) == ["added"]

            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, FactDialog))
            app.screen.query_one("#fact-value", Input).value = "Priya, a nurse in Leeds"
            loads = screen.loads
            await pilot.click("#fact-save")
            await wait_for(pilot, lambda: screen.loads > loads)
            assert fact(remembered, added.id).value == "Priya, a nurse in Leeds"
            assert screen._current_fact().id == added.id

            loads = screen.loads
            await pilot.press("p")
            await wait_for(pilot, lambda: screen.loads > loads)
            assert fact(remembered, added.id).status == "pinned"
            loads = screen.loads
            await pilot.press("p")
            await wait_for(pilot, lambda: screen.loads > loads)
            assert fact(remembered, added.id).status == "active"

            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("escape")  # cancelled: nothing changes
            await wait_for(pilot, lambda: app.screen is screen)
            assert fact(remembered, added.id).status == "active"
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            loads = screen.loads
            await pilot.click("#confirm-yes")
            await wait_for(pilot, lambda: screen.loads > loads)
            assert fact(remembered, added.id).status == "removed"
            assert "Priya, a nurse in Leeds" not in values(screen)
            assert history(remembered, added.id) == [
                "added", "edited", "pinned", "unpinned", "removed",
            ]  # fmt: skip
            shown = notifications(app)
            assert any(n.startswith("Removed:") for n in shown), shown

            # Shown again (every status): removed means wrong, so it is added anew, not pinned
            # or edited back, and the panel says so instead of failing.
            screen.query_one("#memory-status", Select).value = "all"
            await wait_for(pilot, lambda: "Priya, a nurse in Leeds" in values(screen))
            table = screen.query_one("#memory-facts", DataTable)
            table.move_cursor(row=table.get_row_index(str(added.id)))
            assert screen._current_fact().id == added.id
            for key in "pe":
                await pilot.press(key)
                await pilot.pause()
                assert app.screen is screen
                assert notifications(app)[-1].endswith("add it again (a) to keep it."), key
            assert history(remembered, added.id)[-1] == "removed"
            assert not any("Could not" in n for n in notifications(app))

    run(drive())


def test_a_conflict_is_flagged_and_resolved(remembered: Path) -> None:
    from convsim.tui.app.screens.memory_widgets import ConflictDialog

    async def drive() -> None:
        app = ConvsimApp(remembered)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_panel(pilot)
            banner = screen.query_one("#memory-conflicts")
            assert banner.display and "1 conflict to settle" in str(banner.render())
            job = await select_fact(pilot, screen, "started a new job")
            row = table_rows(screen)[values(screen).index(job.value)]
            assert row[2] == "⚠ active"
            (conflict,) = screen.conflicts
            assert (conflict.old.status, conflict.new.id) == ("superseded", job.id)

            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ConflictDialog))
            dialog = app.screen
            assert str(dialog.query_one("#conflict-old").render()).startswith("waiting to hear")
            loads = screen.loads
            await pilot.click("#keep-old")
            await wait_for(pilot, lambda: screen.loads > loads)
            assert not screen.conflicts and not banner.display
            assert fact(remembered, conflict.old.id).status == "active"
            assert fact(remembered, job.id).status == "contradicted"
            assert history(remembered, job.id)[-1] == "resolved"
            assert "waiting to hear back after an interview" in values(screen)
            await pilot.press("c")
            await wait_for(pilot, lambda: "No conflicts to settle." in " ".join(notifications(app)))

    run(drive())


def test_search_lists_hits_best_first_and_shows_their_sources(remembered: Path) -> None:
    from textual.widgets import OptionList

    async def drive() -> None:
        app = ConvsimApp(remembered)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_panel(pilot)
            await pilot.press("slash")
            await pilot.press(*"tomasz team")
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.showing == "hits")
            hits = screen.query_one("#memory-hits", OptionList)
            assert hits.option_count == len(screen.hits) > 0
            scores = [h.score for h in screen.hits]
            assert scores == sorted(scores, reverse=True)
            first = str(hits.get_option_at_index(0).prompt)
            assert "Tomasz" in first
            assert any(h.fact_id is not None for h in screen.hits)  # the colleague fact
            message_hit = next(i for i, h in enumerate(screen.hits) if h.fact_id is None)
            hits.highlighted = message_hit
            await wait_for(pilot, lambda: any(s for _, s in detail(screen)))
            (source,) = [text for text, is_source in detail(screen) if is_source]
            assert screen.hits[message_hit].text.split("] ", 1)[1] in source

            await pilot.press("escape")  # back to the facts, not out of the panel
            assert screen.showing == "facts" and app.screen is screen
            assert screen.query_one("#memory-facts").display

    run(drive())


def test_a_fact_learned_during_a_chat_appears_at_once(remembered: Path) -> None:
    from convsim.tui.app.messages import FactLearned

    async def drive() -> None:
        app = ConvsimApp(remembered)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_panel(pilot)
            with Workspace.open(remembered) as ws:
                learned, _ = Facts(ws.store).add("Riya", "pet", "a cat called Biscuit",
                                                 chat_id=screen.chat_id, origin="live")  # fmt: skip
            loads = screen.loads
            screen.post_message(FactLearned(learned))
            await wait_for(pilot, lambda: screen.loads > loads)
            row = table_rows(screen)[values(screen).index("a cat called Biscuit")]
            assert row[2:4] == ["active · new", "live"]

    run(drive())


def test_an_empty_memory_says_how_to_build_it(home: Path) -> None:
    with Workspace.open(home) as ws:
        ws.import_export(SAMPLE_CHAT)

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            from convsim.tui.app.screens.home import HomeScreen
            from convsim.tui.app.screens.memory import MemoryScreen

            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
            await pilot.press("m")
            await wait_for(
                pilot, lambda: isinstance(app.screen, MemoryScreen) and app.screen.loaded
            )
            empty = app.screen.query_one("#memory-empty")
            assert empty.display and "convsim memory build 1" in str(empty.render())
            assert not app.screen.query_one("#memory-top").display

    run(drive())


class ScriptedExtractor:
    """An extractor that finds one fact wherever Riya says she was offered the job (the
    panel's build job runs as with a model: windows, the gate, the store)."""

    name = "scripted"

    def extract(self, window: Any, people: Any) -> list[Any]:
        from convsim.core.memory.gate import Candidate

        return [
            Candidate("Riya", "job", "offered the job", (row.id,), 4)
            for row in window
            if "offered me the job" in row.text
        ]


def test_build_fills_an_empty_memory_from_the_chat(home: Path) -> None:
    with Workspace.open(home) as ws:
        ws.import_export(SAMPLE_CHAT)

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            from convsim.tui.app.screens.home import HomeScreen
            from convsim.tui.app.screens.memory import MemoryScreen

            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
            await pilot.press("m")
            await wait_for(pilot, lambda: isinstance(app.screen, MemoryScreen))
            screen = app.screen
            await wait_for(pilot, lambda: screen.loaded)
            screen.make_extractor = lambda ws: ScriptedExtractor()
            await pilot.press("b")  # a scripted extractor: done at once, the bar seldom seen
            await wait_for(pilot, lambda: not screen.building)
            await wait_for(pilot, lambda: screen.facts)
            assert values(screen) == ["offered the job"]
            assert not screen.query_one("#memory-progress").display
            await wait_for(pilot, lambda: any("1 facts added" in n for n in notifications(app)))
            assert not screen.query_one("#memory-empty").display

    run(drive())


def test_chat_screen_opens_the_panel_and_turns_memory_off(
    remembered: Path, tiny: TinyModel
) -> None:
    from convsim.core.inference.engine import Engine
    from convsim.core.store.records import ModelRecord
    from convsim.tui.app.messages import FactLearned
    from convsim.tui.app.screens.chat import ChatScreen, Persona
    from convsim.tui.app.screens.home import HomeScreen
    from convsim.tui.app.screens.memory import MemoryScreen

    with Workspace.open(remembered) as ws:
        ws.store.add_model(
            ModelRecord("sam-1", 1, None, "Sam", str(tiny.gguf_path), "0" * 64,
                        "2026-11-22T10:00:00", "ready", str(remembered / "models" / "sam-1"), {})
        )  # fmt: skip

    async def drive() -> None:
        app = ConvsimApp(remembered)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
            engine = Engine(tiny.gguf_path, n_ctx=512)
            persona = Persona(engine, "Sam", "Riya", "Sam", "sam-1", chat_id=1)
            chat = ChatScreen(persona)
            await app.push_screen(chat)
            assert chat.memory_on
            await pilot.press("f7")
            assert not chat.memory_on
            assert "Memory off" in str(chat.query_one("#chat-status").render())
            await pilot.press("f7")
            assert chat.memory_on

            await pilot.press("f6")
            await wait_for(
                pilot, lambda: isinstance(app.screen, MemoryScreen) and app.screen.loaded
            )
            memory = app.screen
            assert memory.chat_id == 1
            assert memory.query_one("#memory-person").value == "Sam"  # the persona's person
            with Workspace.open(remembered) as ws:
                learned, _ = Facts(ws.store).add("Sam", "knee", "hurt it on the stairs at work",
                                                 chat_id=1, origin="live")  # fmt: skip
                # Words from the chat (an endpoint copies them as written), not markup.
                odd, _ = Facts(ws.store).add("Sam", "mod of", "[/r/running]", chat_id=1,
                                             origin="live")  # fmt: skip
            loads = memory.loads
            chat.post_message(FactLearned(learned))  # what live extraction does
            await wait_for(pilot, lambda: memory.loads > loads)
            assert chat.learned == [learned]
            assert "hurt it on the stairs at work" in values(memory)
            chat.post_message(FactLearned(odd))
            await wait_for(pilot, lambda: len(chat.learned) == 2)
            await pilot.pause()
            shown = [n.message for n in app._notifications]
            assert "Learned: Sam, mod of: [/r/running]" in shown
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is chat)
            await pilot.pause()

    run(drive())


class LiveExtractor:
    """Finds where the user says they moved (as a model would, through the real gate)."""

    name = "scripted"

    def extract(self, window: Any, people: Any) -> list[Any]:
        from convsim.core.memory.gate import Candidate

        return [
            Candidate(row.sender, "lives in", "Leeds", (row.id,), 4)
            for row in window
            if "moved to Leeds" in row.text
        ]


def test_replies_carry_memories_and_the_chat_teaches_new_ones(
    remembered: Path, tiny: TinyModel
) -> None:
    from convsim.core.inference.engine import Engine
    from convsim.tui.app.screens.chat import ChatScreen, Persona
    from convsim.tui.app.screens.home import HomeScreen

    with Workspace.open(remembered) as ws:
        pinned, _ = Facts(ws.store).add("Sam", "pet", "a greyhound called Dot", chat_id=1)
        Facts(ws.store).pin(pinned.id)

    async def drive() -> None:
        app = ConvsimApp(remembered)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
            engine = Engine(tiny.gguf_path, n_ctx=1024)
            chat = ChatScreen(Persona(engine, "Sam", "Riya", "Sam", "sam-1", chat_id=1))
            chat.make_extractor = lambda ws: LiveExtractor()
            await app.push_screen(chat)
            draft = chat.query_one("#draft")
            draft.value = "I moved to Leeds on Saturday"  # type: ignore[attr-defined]
            await pilot.press("enter")
            await wait_for(pilot, lambda: not chat.generating and chat.learned, timeout=60)
            assert "a greyhound called Dot" in engine.head  # pinned: in every prompt
            assert pinned.id in [f.id for f in chat.last_memories]
            status = str(chat.query_one("#chat-status").render())
            assert "· remembered " in status and "Sam's pet" in status
            (learned,) = chat.learned
            assert (learned.person, learned.value, learned.origin) == ("Riya", "Leeds", "live")
            learnt = "Learned: Riya, lives in: Leeds"
            await wait_for(pilot, lambda: any(learnt in n for n in notifications(app)))
            # The next reply knows it; with memory off (F7), the prompt has no head at all.
            draft.value = "where do I live now?"  # type: ignore[attr-defined]
            await pilot.press("enter")
            await wait_for(pilot, lambda: not chat.generating, timeout=60)
            assert "Riya, lives in: Leeds" in engine.head
            await pilot.press("f7")
            draft.value = "ok"  # type: ignore[attr-defined]
            await pilot.press("enter")
            await wait_for(pilot, lambda: not chat.generating, timeout=60)
            assert engine.head == "" and chat.last_memories == []
            assert "memory off" in str(chat.query_one("#chat-status").render())
            await pilot.press("ctrl+b")
            await pilot.pause()

    run(drive())


def test_the_app_extracts_with_the_configured_endpoint_else_locally(home: Path) -> None:
    from convsim.core.memory.endpoint import EndpointExtractor, save_endpoint
    from convsim.core.memory.spans import SpanExtractor
    from convsim.tui.app.screens.memory_actions import local_extractor

    with Workspace.open(home) as ws:
        assert isinstance(local_extractor(ws), SpanExtractor)  # offline: the default base
        save_endpoint(ws.store, "http://127.0.0.1:9/v1", "qwen")
        chosen = local_extractor(ws)
        assert isinstance(chosen, EndpointExtractor) and chosen.url == "http://127.0.0.1:9/v1"
