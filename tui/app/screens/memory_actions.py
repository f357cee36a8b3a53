"""The memory panel's search, its changes to facts and building memory, as mixins for
`MemoryScreen`.

Search keeps one `Searcher` per panel (opened by the first query, which brings the chat's index
up to date with `MemoryIndexing` progress), used by one query at a time. Changes (add, edit,
pin, remove, resolve) go through `core.memory.Facts` in a worker and come back as
`FactChanged`. Building runs `core.memory.extract.build_memory` in a worker, with
`MemoryBuildProgress` and `MemoryBuilt`. Results arrive as messages handled here by name
(`on_memory_searched`, ...): Textual finds those on mixins, not `@on` handlers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.widgets import ContentSwitcher, Input, OptionList, Select

from convsim.tui.app.messages import (
    FactChanged,
    MemoryBuildProgress,
    MemoryBuilt,
    MemoryIndexing,
    MemorySearched,
    post,
    reporting,
)
from convsim.tui.app.screens.memory_widgets import (
    ConflictDialog,
    FactDialog,
    fact_line,
    fact_meta,
    minute,
)
from convsim.tui.app.widgets import ConfirmDialog, clip

EVERYONE = "\0everyone"  # the person filter's "everyone" (no name can be this)
SEARCH_K = 20

Change = Callable[[Any], tuple[Any, str]]  # Facts -> (the fact changed, what happened)


class SearchActions:
    """Needs from the screen: `app`, `chat_id`, `search_mode`, `hits`, `showing`, `_by_id`,
    `query_one`, `_note`, `_show_sources`, `_show_facts`, `_empty_state`, `_clear_detail`."""

    app: Any
    chat_id: int
    search_mode: str
    hits: list[Any]
    showing: str
    _by_id: dict[int, Any]
    query_one: Any
    _note: Callable[[str], None]
    _show_sources: Callable[[str, str, list[int], int | None], None]
    _show_facts: Callable[[], None]
    _empty_state: Callable[[], None]
    _clear_detail: Callable[[], None]

    def _init_search(self) -> None:
        self._searcher: Any = None
        self._search_lock = threading.Lock()  # one query at a time on the kept searcher
        self._search_stack = contextlib.ExitStack()  # the searcher's workspace
        self._stop = threading.Event()  # ends indexing when the panel closes

    def _close_searcher(self) -> None:
        """In a worker of the app's, when the panel closes."""
        self._stop.set()
        with self._search_lock:  # after the query in progress
            self._searcher = None
            self._search_stack.close()

    def action_search(self) -> None:
        self.query_one("#memory-search", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "memory-search":
            return
        query = event.value.strip()
        if not query:
            self._show_facts()
            return
        self._note("Searching…")
        self._search(query)

    @work(thread=True, exclusive=True, exit_on_error=False, group="memory-search",
          description="search the memory")  # fmt: skip
    def _search(self, query: str) -> None:
        screen: Any = self
        with reporting(screen, "Search failed", "memory-search"), self._search_lock:
            note = None
            if self._searcher is None:
                note = self._open_searcher()
            if self._stop.is_set():
                return
            started = time.perf_counter()
            hits = self._searcher.search(query, SEARCH_K)
            ms = (time.perf_counter() - started) * 1000
            post(screen, MemorySearched(query, hits, ms, note))

    def _open_searcher(self) -> str | None:
        """Open and keep the searcher (in the search worker, under the lock). Returns a note
        when search by meaning is unavailable and keywords serve instead."""
        from convsim.core.memory import EmbedderMissing, open_searcher

        screen: Any = self
        ws = self._search_stack.enter_context(self.app.workspace())

        def progress(done: int, total: int) -> None:
            post(screen, MemoryIndexing(done, total))

        try:
            self._searcher = open_searcher(
                ws.store, self.chat_id, self.search_mode, progress, self._stop
            )
            return None
        except EmbedderMissing as e:
            self._searcher = open_searcher(ws.store, self.chat_id, "keyword")
            return f"keyword search only: {e}"

    def on_memory_indexing(self, message: MemoryIndexing) -> None:
        self._note(f"Indexing the chat for search (once): {message.done:,} of {message.total:,}")

    def on_memory_searched(self, message: MemorySearched) -> None:
        self.hits = message.hits
        hits = self.query_one("#memory-hits", OptionList)
        hits.clear_options()
        hits.add_options([self._hit_text(h) for h in self.hits])
        self.showing = "hits"
        self.query_one("#memory-top", ContentSwitcher).current = "memory-hits"
        self._empty_state()
        n = len(self.hits)
        note = f"{n} hit{'' if n == 1 else 's'} for “{message.query}” in {message.ms:.0f} ms"
        self._note(note + (f" ({message.note})" if message.note else "") + " · Esc: facts")
        if self.hits:
            hits.highlighted = 0
            hits.focus()
        else:
            self._clear_detail()

    @staticmethod
    def _hit_text(hit: Any) -> Text:
        if hit.fact_id is not None:
            return Text(clip(f"fact  {hit.text}", 300))
        return Text(clip(f"{minute(hit.ts)}  {hit.text}", 300))

    def _current_hit(self) -> Any:
        index = self.query_one("#memory-hits", OptionList).highlighted
        return self.hits[index] if index is not None and index < len(self.hits) else None

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id != "memory-hits":
            return
        hit = self._current_hit()
        if hit is None:
            return
        fact = self._by_id.get(hit.fact_id) if hit.fact_id is not None else None
        if fact is not None:
            self._show_sources(fact_line(fact), fact_meta(fact), fact.sources, fact.id)
        else:
            title = f"{hit.sender or '?'}, {minute(hit.ts)}"
            self._show_sources(title, f"score {hit.score:.4f}", hit.message_ids, None)


REMOVED = "That fact was removed as wrong: add it again (a) to keep it."


class FactActions:
    """Needs from the screen: `app`, `chat_id`, `people`, `person`, `conflicts`, `query_one`,
    `notify`, `_current_fact`, `action_reload`; sets `_focus` (the fact to select next)."""

    app: Any
    chat_id: int
    people: list[str]
    person: str | None
    conflicts: list[Any]
    _focus: int | None
    query_one: Any
    notify: Any
    _current_fact: Callable[[], Any]
    action_reload: Callable[[], None]

    def _selected_person(self) -> str | None:
        value = self.query_one("#memory-person", Select).value
        return None if value == EVERYONE else str(value)

    def action_add(self) -> None:
        people = self.people or ([self.person] if self.person else [])
        if not people:
            self.notify("This chat has nobody to add a fact about.", severity="warning")
            return

        def added(values: tuple[str, str, str] | None) -> None:
            if values:
                person, key, value = values
                self._change(lambda facts: facts.add(person, key, value, chat_id=self.chat_id,
                                                     origin="user"))  # fmt: skip

        self.app.push_screen(FactDialog(people, self._selected_person()), added)

    def _fact_or_hint(self) -> Any:
        fact = self._current_fact()
        if fact is None:
            self.notify("Select a fact first.", severity="warning")
        return fact

    def action_edit(self) -> None:
        fact = self._fact_or_hint()
        if fact is None:
            return
        if fact.status == "removed":
            self.notify(REMOVED, markup=False)
            return

        def edited(values: tuple[str, str, str] | None) -> None:
            if values:
                _, key, value = values
                self._change(lambda facts: (facts.edit(fact.id, value=value, key=key), "edited"))

        self.app.push_screen(FactDialog(self.people, fact.person, fact), edited)

    def action_pin(self) -> None:
        fact = self._fact_or_hint()
        if fact is not None and fact.status == "removed":
            self.notify(REMOVED, markup=False)
        elif fact is not None:
            pin = fact.status != "pinned"
            what = "pinned" if pin else "unpinned"
            self._change(lambda facts: (facts.pin(fact.id, pin), what))

    def action_remove(self) -> None:
        fact = self._fact_or_hint()
        if fact is None:
            return
        if fact.status == "removed":
            self.notify(REMOVED, markup=False)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._change(lambda facts: (facts.remove(fact.id), "removed"))

        body = (
            f"{fact_line(fact)}\n\nReplies stop using it. It stays in the history (every "
            "status shows it); to keep it again, add it anew (a)."
        )
        self.app.push_screen(ConfirmDialog("Remove this fact?", body, "Remove"), confirmed)

    def action_resolve(self) -> None:
        if not self.conflicts:
            self.notify("No conflicts to settle.")
            return
        fact = self._current_fact()
        mine = [c for c in self.conflicts if fact is not None and fact.id in (c.old.id, c.new.id)]
        conflict = (mine or self.conflicts)[0]

        def chosen(choice: str | None) -> None:
            if choice:
                old, new = conflict.old.id, conflict.new.id
                self._change(lambda facts: (facts.resolve(old, new, choice)[1], "resolved"))

        self.app.push_screen(ConflictDialog(conflict, len(self.conflicts)), chosen)

    @work(thread=True, exit_on_error=False, group="memory-write", description="change a fact")
    def _change(self, change: Change) -> None:
        from convsim.core.memory import Facts

        screen: Any = self
        with reporting(screen, "Could not change the fact", "memory-write"):
            with self.app.workspace() as ws:
                fact, what = change(Facts(ws.store))
            post(screen, FactChanged(fact, what))

    def on_fact_changed(self, message: FactChanged) -> None:
        what = {"seen": "already known", "contradicted": "kept aside (another value holds)"}
        label = what.get(message.what, message.what)
        self.notify(f"{fact_line(message.fact)}", title=label.capitalize(), markup=False)
        self._focus = message.fact.id
        self.action_reload()


def local_extractor(ws: Any) -> Any:
    """The extractor the app builds memory with, from a chat (the panel) or while chatting:
    the endpoint the user configured (`convsim memory endpoint`), else the default base model,
    locally (offline)."""
    from convsim.core.bases.prepare import default_base
    from convsim.core.memory.endpoint import EndpointExtractor, endpoint_settings
    from convsim.core.memory.spans import local_extractor

    if endpoint_settings(ws.store) is not None:
        return EndpointExtractor.from_settings(ws.store)
    return local_extractor(default_base(ws.locations))


class BuildActions:
    """Build memory from the chat (b; b again stops it after the current window of messages).
    Needs from the screen: `app`, `chat_id`, `query_one`, `notify`, `_note`, `action_reload`;
    `make_extractor(workspace)` gives the extractor (tests pass a scripted one)."""

    app: Any
    chat_id: int
    query_one: Any
    notify: Any
    _note: Callable[[str], None]
    action_reload: Callable[[], None]
    make_extractor: Callable[[Any], Any]
    RELOAD_EVERY = 3.0  # seconds between reloads while building, so new facts show up

    def _init_build(self) -> None:
        self.building = False
        self._build_stop = threading.Event()
        self._last_reload = 0.0

    def action_build(self) -> None:
        if self.building:
            self._build_stop.set()
            self._note("Stopping after this window of messages…")
            return
        self.building = True
        self._build_stop = threading.Event()
        self.query_one("#memory-progress").remove_class("-hidden")
        self._note("Building memory: loading the model…")
        self._build(self._build_stop)

    @work(thread=True, exclusive=True, exit_on_error=False, group="memory-build",
          description="build memory from the chat")  # fmt: skip
    def _build(self, stop: threading.Event) -> None:
        from convsim.core.memory.extract import build_memory

        screen: Any = self

        def progress(done: int, total: int) -> None:
            post(screen, MemoryBuildProgress(done, total))

        with reporting(screen, "Could not build the memory", "memory-build"):
            with self.app.workspace() as ws:
                extractor = self.make_extractor(ws)
                try:
                    report = build_memory(ws.store, self.chat_id, extractor, progress, stop)
                finally:
                    model = getattr(extractor, "model", None)
                    if model is not None and hasattr(model, "close"):
                        model.close()
            post(screen, MemoryBuilt(report))

    def on_memory_build_progress(self, message: MemoryBuildProgress) -> None:
        bar = self.query_one("#memory-progress")
        bar.update(total=max(message.total, 1), progress=message.done)
        self._note(f"Building memory: {message.done:,} of {message.total:,} messages (b stops)")
        if time.monotonic() - self._last_reload > self.RELOAD_EVERY:
            self._last_reload = time.monotonic()
            self.action_reload()

    def on_memory_built(self, message: MemoryBuilt) -> None:
        r = message.report
        self._build_ended()
        done = "Stopped" if r.stopped else "Done"
        self.notify(
            f"{r.added} facts added, {r.seen} seen again, {r.superseded} superseded (flagged) "
            f"from {r.messages:,} messages in {r.seconds:.0f} s.",
            title=f"{done}: memory built",
            markup=False,
        )
        self.action_reload()

    def _build_ended(self) -> None:
        self.building = False
        self.query_one("#memory-progress").add_class("-hidden")
        self._note("")
