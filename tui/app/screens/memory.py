"""Memory: what convsim knows about the people of one chat, shown and corrected by the user.

Per person, their facts (key, value, status, origin, last seen, sources), filtered by origin and
status; selecting a fact shows its source messages in context and its history. Search runs
`Searcher.search` over the chat's facts and messages. Add, edit, pin, remove and resolving a
conflict go through `core.memory.Facts`, so each is recorded in the facts' audit log.

Every read and write of the store runs in a worker that posts a message of `messages.py`
(`MemoryLoaded`, `SourcesFound`, `MemorySearched`, `FactChanged`); filtering is done on the
facts already loaded, so it is instant. Search and the changes to facts are mixins
(`memory_actions.py`), the dialogs and text helpers are in `memory_widgets.py`. Facts learned
during a live chat arrive as `FactLearned` and appear at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    ContentSwitcher,
    DataTable,
    Footer,
    Header,
    Input,
    OptionList,
    ProgressBar,
    Select,
    Static,
)

from convsim.tui.app.messages import (
    FactLearned,
    JobFailed,
    MemoryLoaded,
    SourcesFound,
    post,
    reporting,
)
from convsim.tui.app.screens.memory_actions import (
    EVERYONE,
    BuildActions,
    FactActions,
    SearchActions,
    local_extractor,
)
from convsim.tui.app.screens.memory_widgets import (
    ANY,
    ORIGIN_FILTERS,
    ORIGIN_SHORT,
    STATUS_FILTERS,
    day,
    fact_line,
    fact_meta,
    history_line,
    minute,
    source_context,
    wanted_statuses,
)
from convsim.tui.app.widgets import clip

VALUE_WIDTH = 30  # table cells are cut here; the detail pane shows the whole fact
KEY_WIDTH = 14
COLUMNS = ("key", "value", "status", "origin", "last seen", "src")
SEARCH_HINT = "Search facts and messages: type, then Enter (/ comes back here)"


def empty_text(chat_id: int) -> str:
    return (
        "No facts about anyone in this chat yet. Press b to build them from the chat (a local "
        "model reads every message: minutes for a long chat), or run "
        f"`convsim memory build {chat_id}`; a adds one by hand. Search works already."
    )


class MemoryScreen(SearchActions, FactActions, BuildActions, Screen[None]):
    """The memory panel of chat `chat_id`. `person`: whose facts to show first (default: the
    person with the most). `mode`: the search mode (`core.memory.MODES`); tests use "keyword",
    which loads no embedding model. `learned`: facts learned during the current chat, marked
    "new". `extractor(workspace)`: what b builds memory with (default: the default base model,
    locally)."""

    BINDINGS = [
        Binding("a", "add", "Add"),
        Binding("e", "edit", "Edit"),
        Binding("p", "pin", "Pin"),
        Binding("d,delete", "remove", "Remove"),
        Binding("c", "resolve", "Resolve"),
        Binding("slash", "search", "Search", show=False),
        Binding("b", "build", "Build"),
        Binding("escape", "back", "Back"),
        Binding("f4", "reload", "Refresh", show=False),
    ]

    def __init__(
        self,
        chat_id: int,
        person: str | None = None,
        *,
        mode: str = "hybrid",
        learned: Iterable[Any] = (),
        extractor: Callable[[Any], Any] = local_extractor,
    ) -> None:
        super().__init__()
        self.chat_id = chat_id
        self.person = person
        self.search_mode = mode
        self.make_extractor = extractor
        self.learned_ids = {f.id for f in learned}
        self.loaded = False
        self.loads = 0  # loads shown so far (tests wait on it)
        self.people: list[str] = []
        self.facts: list[Any] = []
        self.conflicts: list[Any] = []
        self.hits: list[Any] = []
        self.shown: list[Any] = []  # the facts in the table, in its order
        self.showing = "facts"  # or "hits": what the top pane lists
        self.sources_shown: str | None = None  # key of what the detail pane shows, once read
        self._by_id: dict[int, Any] = {}
        self._sources_key: str | None = None
        self._sources_seq = 0
        self._focus: int | None = None  # the fact to put the cursor on after the next load
        self._picked = False  # whose facts to show has been chosen (once there are facts)
        self._init_search()
        self._init_build()

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="memory"):
            with Horizontal(id="memory-filters"):
                yield Select([("everyone", EVERYONE)], value=EVERYONE, allow_blank=False,
                             id="memory-person", compact=True)  # fmt: skip
                yield Select(ORIGIN_FILTERS, value=ANY, allow_blank=False,
                             id="memory-origin", compact=True)  # fmt: skip
                yield Select(STATUS_FILTERS, value="shown", allow_blank=False,
                             id="memory-status", compact=True)  # fmt: skip
            yield Input(placeholder=SEARCH_HINT, id="memory-search", compact=True)
            yield Static("", id="memory-conflicts", markup=False, classes="-hidden")
            yield Static("", id="memory-empty", markup=False, classes="-hidden")
            with ContentSwitcher(initial="memory-facts", id="memory-top"):
                yield DataTable(id="memory-facts", cursor_type="row", zebra_stripes=True)
                yield OptionList(id="memory-hits", markup=False)
            yield Static("Loading…", id="memory-note", markup=False)
            yield ProgressBar(id="memory-progress", show_eta=False, classes="-hidden")
            with VerticalScroll(id="memory-detail"):
                yield Static("", id="memory-detail-title", markup=False)
                yield Static("", id="memory-detail-meta", markup=False, classes="-quiet")
                yield Vertical(id="memory-context")
                yield Static("", id="memory-history", markup=False, classes="-quiet")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"memory of chat {self.chat_id}"
        self.query_one("#memory-facts", DataTable).focus()
        self.action_reload()

    def on_unmount(self) -> None:
        self._stop.set()
        self._build_stop.set()
        # On the app, not this screen: the screen's own workers end with it.
        self.app.run_worker(self._close_searcher, thread=True, group="close-searcher",
                            description="close the memory search", exit_on_error=False)  # fmt: skip

    def _note(self, text: str) -> None:
        self.query_one("#memory-note", Static).update(text)

    # -- loading ------------------------------------------------------------------------------

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="memory-load",
          description="read the chat's memory")  # fmt: skip
    def _load(self) -> None:
        from convsim.core.memory import STATUSES, Facts

        app: Any = self.app
        with reporting(self, "Could not read the memory", "memory-load"), app.workspace() as ws:
            chat = ws.store.chat(self.chat_id)
            facts = Facts(ws.store)
            found = {f.id: f for f in facts.list(chat_id=self.chat_id, status=STATUSES)}
            names = list(dict.fromkeys(chat.participants))
            for name in names:  # facts entered without a chat hold for every chat
                for f in facts.list(person=name, status=STATUSES):
                    if f.chat_id is None:
                        found[f.id] = f
            people = names + sorted({f.person for f in found.values()} - set(names))
            ordered = sorted(found.values(), key=lambda f: (f.last_seen, f.id), reverse=True)
            post(self, MemoryLoaded(chat.title, people, ordered, facts.conflicts(self.chat_id)))

    @on(MemoryLoaded)
    def _loaded(self, message: MemoryLoaded) -> None:
        self.sub_title = f"memory of {message.title}"
        self.people, self.facts, self.conflicts = message.people, message.facts, message.conflicts
        self._by_id = {f.id: f for f in self.facts}
        select = self.query_one("#memory-person", Select)
        counts = {p: 0 for p in self.people}
        for f in self.facts:
            if f.status in ("active", "pinned"):
                counts[f.person] = counts.get(f.person, 0) + 1
        current = select.value
        if not self._picked and any(counts.values()):  # the first facts pick whom to show
            self._picked = True
            busiest = max(self.people, key=lambda p: counts[p])
            current = self.person if self.person in counts else busiest
        options = [(Text(f"{p} · {counts[p]} facts"), p) for p in self.people]
        with self.prevent(Select.Changed):
            select.set_options([*options, (Text("everyone"), EVERYONE)])
            select.value = current if current in counts else EVERYONE
        self._show_conflicts()
        self.loaded = True
        self.loads += 1
        self._refill()

    def _show_conflicts(self) -> None:
        banner = self.query_one("#memory-conflicts", Static)
        banner.set_class(not self.conflicts, "-hidden")
        if self.conflicts:
            first = self.conflicts[0]
            n = len(self.conflicts)
            banner.update(
                f"⚠ {n} conflict{'' if n == 1 else 's'} to settle (press c): "
                f"{first.old.person} · {first.old.key}: “{first.old.value}” "
                f"or “{first.new.value}”?"
            )

    # -- the facts table ----------------------------------------------------------------------

    @on(Select.Changed)
    def _filter_changed(self) -> None:
        if self.loaded:
            self._refill()

    def _filtered(self) -> list[Any]:
        person = self.query_one("#memory-person", Select).value
        origin = self.query_one("#memory-origin", Select).value
        statuses = wanted_statuses(str(self.query_one("#memory-status", Select).value))
        return [
            f
            for f in self.facts
            if (person == EVERYONE or f.person == person)
            and (origin == ANY or f.origin == origin)
            and f.status in statuses
        ]

    def _status_cell(self, fact: Any, flagged: set[int]) -> str:
        text = ("⚠ " if fact.id in flagged else "") + fact.status
        return text + (" · new" if fact.id in self.learned_ids else "")

    def _refill(self) -> None:
        table = self.query_one("#memory-facts", DataTable)
        previous = self._current_fact()
        keep = self._focus or (previous.id if previous is not None else None)
        self._focus = None
        everyone = self.query_one("#memory-person", Select).value == EVERYONE
        self.shown = self._filtered()
        flagged = {f.id for c in self.conflicts for f in (c.old, c.new)}
        rows = [
            ([f.person] if everyone else [])
            + [clip(f.key, KEY_WIDTH), clip(f.value, VALUE_WIDTH), self._status_cell(f, flagged),
               ORIGIN_SHORT.get(f.origin, f.origin), day(f.last_seen), str(len(f.sources))]
            for f in self.shown
        ]  # fmt: skip
        labels = (("person",) if everyone else ()) + COLUMNS
        table.clear(columns=True)
        for i, label in enumerate(labels):
            table.add_column(label, width=max([cell_len(label)] + [cell_len(r[i]) for r in rows]))
        for fact, cells in zip(self.shown, rows, strict=True):
            table.add_row(*map(Text, cells), key=str(fact.id))
        at = next((i for i, f in enumerate(self.shown) if f.id == keep), 0)
        if self.shown:
            table.move_cursor(row=at, animate=False)
        self._empty_state()
        if self.showing == "facts":
            self._counts_note()
            if not self.shown:
                self._clear_detail()

    def _empty_state(self) -> None:
        empty = self.query_one("#memory-empty", Static)
        hide = bool(self.shown) or self.showing != "facts"
        empty.set_class(hide, "-hidden")
        self.query_one("#memory-top").set_class(not hide, "-hidden")
        if not self.facts:
            empty.update(empty_text(self.chat_id))
        elif not self.shown:
            empty.update("No facts match these filters (try every status, or any origin).")

    def _counts_note(self) -> None:
        hidden = len([f for f in self.facts if f.status not in ("active", "pinned")])
        shown = len(self.shown)
        note = f"{shown} fact{'' if shown == 1 else 's'} shown"
        if hidden:
            note += f" · {hidden} superseded, contradicted or removed in all"
        self._note(note)

    def _current_fact(self) -> Any:
        """The fact under the cursor: in the table, or a fact hit of a search."""
        if self.showing == "hits":
            hit = self._current_hit()
            return self._by_id.get(hit.fact_id) if hit is not None and hit.fact_id else None
        table = self.query_one("#memory-facts", DataTable)
        if not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self._by_id.get(int(key.value or 0))

    @on(DataTable.RowHighlighted, "#memory-facts")
    def _fact_highlighted(self, event: DataTable.RowHighlighted) -> None:
        fact = self._by_id.get(int(event.row_key.value or 0))
        if fact is not None and self.showing == "facts":
            self._show_sources(fact_line(fact), fact_meta(fact), fact.sources, fact.id)

    # -- the detail pane: sources in context and history --------------------------------------

    def _clear_detail(self) -> None:
        self._sources_key = None
        for part in ("#memory-detail-title", "#memory-detail-meta", "#memory-history"):
            self.query_one(part, Static).update("")
        self.query_one("#memory-context").remove_children()

    def _show_sources(self, title: str, meta: str, ids: list[int], fact_id: int | None) -> None:
        self._sources_seq += 1
        self._sources_key = f"{self._sources_seq}"
        self.query_one("#memory-detail-title", Static).update(title)
        self.query_one("#memory-detail-meta", Static).update(meta)
        self._read_sources(self._sources_key, list(ids), fact_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="memory-sources",
          description="read the source messages")  # fmt: skip
    def _read_sources(self, key: str, ids: list[int], fact_id: int | None) -> None:
        from convsim.core.memory import Facts

        app: Any = self.app
        with reporting(self, "Could not read the sources", "memory-sources"):
            with app.workspace() as ws:
                groups = source_context(ws.store, self.chat_id, ids)
                history = Facts(ws.store).history(fact_id) if fact_id is not None else None
            post(self, SourcesFound(key, groups, history))

    @on(SourcesFound)
    async def _sources_found(self, message: SourcesFound) -> None:
        if message.key != self._sources_key:
            return  # the cursor has moved on since
        context = self.query_one("#memory-context")
        await context.remove_children()
        lines: list[Static] = []
        for i, group in enumerate(message.groups):
            if i:
                lines.append(Static("⋯", classes="context-gap"))
            for row, is_source in group:
                text = f"{minute(row.ts)}  {row.sender or '?'}: {row.text}"
                classes = "context-line" + (" -source" if is_source else "")
                lines.append(Static(text, markup=False, classes=classes))
        if not message.groups:
            lines.append(Static("No source messages in this chat.", classes="context-gap"))
        await context.mount_all(lines)
        if message.key != self._sources_key:
            return  # moved on while mounting: the newer sources replace these
        history = "" if message.history is None else history_line(message.history)
        self.query_one("#memory-history", Static).update(history)
        self.sources_shown = message.key

    def _show_facts(self) -> None:
        self.showing = "facts"
        self.query_one("#memory-top", ContentSwitcher).current = "memory-facts"
        self._refill()
        table = self.query_one("#memory-facts", DataTable)
        table.focus()
        fact = self._current_fact()
        if fact is not None:
            self._show_sources(fact_line(fact), fact_meta(fact), fact.sources, fact.id)

    def action_back(self) -> None:
        if self.showing == "hits":
            self.query_one("#memory-search", Input).value = ""
            self._show_facts()
        else:
            self.app.pop_screen()

    @on(FactLearned)
    def _fact_learned(self, message: FactLearned) -> None:
        self.fact_learned(message.fact)

    def fact_learned(self, fact: Any) -> None:
        """A fact learned during the current chat: marked "new", shown after a reload (which
        also brings what it superseded and any conflict it raised)."""
        if fact.chat_id not in (None, self.chat_id):
            return
        self.learned_ids.add(fact.id)
        self.action_reload()

    @on(JobFailed)
    def _job_failed(self, message: JobFailed) -> None:
        if message.group == "memory-search":  # the app shows the error itself
            self._note("Search failed.")
        elif message.group == "memory-build":
            self._build_ended()
            self.action_reload()  # what was built before the failure is kept
