"""Memory in the chat screen: the facts each reply is given, learning from the conversation,
the memory panel (F6) and memory off for comparison (F7).

Before each reply, the reply worker asks `memory_for_reply` (under the engine's lock) for the
facts the prompt's head carries (`core.memory.recall`); the reply's status line names them.
After each exchange a worker extracts facts from it (`extract_live`) on its own copy of the
default base, so the persona's model and KV cache are untouched; a new fact is posted as
`FactLearned`, kept in `learned`, shown in an open panel and given to the next replies.
Handlers are `on_<message>` methods: Textual finds those on mixins, not `@on` ones.
"""

from __future__ import annotations

import threading
from typing import Any

from textual import work

from convsim.tui.app.messages import FactLearned, MemoriesUsed, post, reporting
from convsim.tui.app.screens.memory_actions import local_extractor


class MemoryActions:
    """Needs from the screen: `app`, `persona`, `notify`, `_status`; `memory_on`, `learned`.
    `make_extractor(workspace)` gives the live extractor (tests pass a scripted one)."""

    app: Any
    persona: Any
    notify: Any
    _status: Any
    memory_on: bool
    learned: list[Any]
    make_extractor: Any = staticmethod(local_extractor)

    def _init_memory(self) -> None:
        self.memory_on = True  # False: replies use no memories (F7), to compare
        self.learned = []  # facts learned during this chat
        self._recall: Any = None  # built on the first reply with memory on
        self._recall_ws: Any = None  # the store the recall reads, for this screen's life
        self._recall_stale = False
        self._extractor: Any = None
        self._learning = threading.Lock()
        self.last_memories: list[Any] = []  # the facts the latest reply was given

    def close_memory(self) -> None:
        """Release the store the recall reads (after the last reply: under the engine lock)."""
        if self._recall_ws is not None:
            self._recall_ws.close()
            self._recall_ws = None

    # -- memory in replies (called from the reply worker) ---------------------------------------

    def memory_for_reply(self, turns: list[tuple[str, str]]) -> list[Any]:
        """Put the facts for the next reply in the engine's head; the facts used."""
        engine, chat_id = self.persona.engine, self.persona.chat_id
        if not self.memory_on or chat_id is None:
            if engine.head:
                engine.set_head("")
            return []
        if self._recall is None:
            from convsim.core.memory import optional_embedder
            from convsim.core.memory.recall import Recall
            from convsim.core.workspace import Workspace

            app: Any = self.app
            self._recall_ws = Workspace.open(app.home)
            count = lambda text: len(engine.tokens(text))  # noqa: E731
            embedder = optional_embedder()
            self._recall = Recall(self._recall_ws.store, chat_id, count, embedder=embedder)
        if self._recall_stale:
            self._recall.refresh()
            self._recall_stale = False
        return list(self._recall.apply(engine, turns))

    def on_memories_used(self, message: MemoriesUsed) -> None:
        self.last_memories = message.facts

    def memories_note(self) -> str:
        """For the status line: what the latest reply was given ("" when nothing)."""
        if not self.last_memories:
            return ""
        return "remembered " + ", ".join(f"{f.person}'s {f.key}" for f in self.last_memories)

    # -- learning from the conversation ---------------------------------------------------------

    def learn_from(self, exchange: list[tuple[str, str]]) -> None:
        """After an exchange: extract facts from it in the background (memory on only)."""
        if self.memory_on and self.persona.chat_id is not None and exchange:
            self._learn(exchange)

    @work(thread=True, exit_on_error=False, group="learn", description="learn from the chat")
    def _learn(self, exchange: list[tuple[str, str]]) -> None:
        from convsim.core.memory.extract import extract_live

        app: Any = self.app
        screen: Any = self  # a Screen: the mixin is not one itself
        with self._learning, reporting(screen, "Learning from the chat failed", "learn"):
            with app.workspace() as ws:
                if self._extractor is None:
                    self._extractor = self.make_extractor(ws)
                found = extract_live(
                    ws.store, self.persona.chat_id, self.persona.speaker, exchange,
                    self._extractor,
                )  # fmt: skip
            for fact, outcome in found:
                if outcome in ("added", "superseded"):
                    post(screen, FactLearned(fact))

    def on_fact_learned(self, message: FactLearned) -> None:
        """Keep a learned fact, give it to the next replies, show it in an open panel."""
        from convsim.tui.app.screens.memory import MemoryScreen

        self.learned.append(message.fact)
        self._recall_stale = True
        fact = message.fact  # words from the chat (or an endpoint): text, never markup
        self.notify(f"Learned: {fact.person}, {fact.key}: {fact.value}", markup=False)
        for screen in self.app.screen_stack:
            if isinstance(screen, MemoryScreen):
                screen.fact_learned(message.fact)

    # -- the panel and the switch -------------------------------------------------------------

    def action_toggle_memory(self) -> None:
        self.memory_on = not self.memory_on
        if self.memory_on:
            self._status("Memory on: replies use what convsim knows about the people here.")
        else:
            self._status("Memory off: the next replies use no memories (F7 turns it back on).")

    def action_memory(self) -> None:
        """The memory panel of the chat this persona was trained on."""
        from convsim.tui.app.screens.memory import MemoryScreen

        if self.persona.chat_id is None:
            self.notify("This persona was not trained on a stored chat, so it has no memory.")
            return
        self._recall_stale = True  # the panel may change facts
        self.app.push_screen(
            MemoryScreen(self.persona.chat_id, self.persona.speaker, learned=self.learned)
        )
