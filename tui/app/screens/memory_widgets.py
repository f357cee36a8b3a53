"""The memory panel's parts: the add/edit form, the conflict dialog, and the plain
functions that turn facts and messages into the lines the panel shows.

Facts, names and messages are the user's text: they go into widgets as plain text (`Text`,
`Content`, `markup=False`), never as markup. Colours and layout are in convsim.tcss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

# What each origin is called in the filter and the detail pane, and in the (narrow) table.
ORIGIN_NAMES = {
    "chat": "imported chat",
    "live": "live chat",
    "user": "entered by you",
    "simulated": "simulated",
}
ORIGIN_SHORT = {"chat": "chat", "live": "live", "user": "you", "simulated": "sim"}
ANY = "any"
ORIGIN_FILTERS = [("any origin", ANY)] + [(name, key) for key, name in ORIGIN_NAMES.items()]
# Status filters: what replies use (the default), everything, or one of the set-aside kinds.
STATUS_FILTERS = [
    ("active + pinned", "shown"),
    ("every status", "all"),
    ("superseded", "superseded"),
    ("contradicted", "contradicted"),
    ("removed", "removed"),
]
AROUND = 2  # messages shown before and after each source message
MAX_SOURCES = 6  # source messages shown in context for one fact


def wanted_statuses(choice: str) -> set[str]:
    from convsim.core.memory import STATUSES

    if choice == "shown":
        return {"active", "pinned"}
    return set(STATUSES) if choice == "all" else {choice}


def day(timestamp: str | None) -> str:
    return (timestamp or "")[:10]


def minute(timestamp: str | None) -> str:
    return (timestamp or "")[:16].replace("T", " ")


def fact_line(fact: Any) -> str:
    return f"{fact.person} · {fact.key}: {fact.value}"


def fact_meta(fact: Any) -> str:
    """Status, origin, when seen and how many sources, in one line."""
    first, last, sources = day(fact.first_seen), day(fact.last_seen), len(fact.sources)
    seen = f"seen {first}" if first == last else f"seen {first} to {last}"
    origin = ORIGIN_NAMES.get(fact.origin, fact.origin)
    return f"{fact.status} · {origin} · {seen} · {sources} source{'' if sources == 1 else 's'}"


def history_line(events: Sequence[Any]) -> str:
    """The audit log in one line, oldest first: "added, seen ×2, superseded by #7"."""
    words: list[str] = []
    for event in events:
        word = event.action
        if event.action == "superseded" and "by" in event.detail:
            word += f" by #{event.detail['by']}"
        elif event.action == "flagged" and "with" in event.detail:
            word += f" with #{event.detail['with']}"
        elif event.action == "resolved":
            word += f" ({event.detail.get('choice')})"
        if words and words[-1].split(" ×")[0] == word:
            count = int(words[-1].split(" ×")[1]) + 1 if " ×" in words[-1] else 2
            words[-1] = f"{word} ×{count}"
        else:
            words.append(word)
    return "History: " + ", ".join(words) if words else "History: none"


def context_groups(
    rows: Sequence[Any], ids: Sequence[int], around: int = AROUND
) -> list[list[tuple[Any, bool]]]:
    """The messages around each of `ids` in `rows` (a chat's rows, in order): groups of
    (row, is one of `ids`), windows that touch merged, in chat order. Ids not in `rows` are
    left out."""
    wanted = set(ids)
    where = [i for i, row in enumerate(rows) if row.id in wanted]
    groups: list[list[tuple[Any, bool]]] = []
    last_end = -1
    for i in where:
        start, end = max(0, i - around), min(len(rows), i + around + 1)
        if groups and start <= last_end:
            start = last_end
        else:
            groups.append([])
        groups[-1] += [(rows[j], rows[j].id in wanted) for j in range(start, end)]
        last_end = max(last_end, end)
    return groups


def source_context(store: Any, chat_id: int, ids: Sequence[int]) -> list[list[tuple[Any, bool]]]:
    """The first `MAX_SOURCES` of `ids` in context, from the store (in a worker). Reads the
    chat's text messages from a little before the first source on: a fact's sources are
    usually close together and recent."""
    from convsim.core.memory.index import chat_rows

    ids = sorted(ids)[:MAX_SOURCES]
    if not ids:
        return []
    slack = 10 * (AROUND + 1)  # ids skipped by media and system messages before the first
    rows = chat_rows(store, chat_id, after=max(0, ids[0] - slack))
    until = next((i for i, r in enumerate(rows) if r.id > ids[-1]), len(rows))
    return context_groups(rows[: until + AROUND], ids)


class FactDialog(ModalScreen[tuple[str, str, str] | None]):
    """Add a fact (person, key, value) or edit one (`fact` given: the person stays). Dismissed
    with the three values, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, people: list[str], person: str | None, fact: Any = None) -> None:
        super().__init__()
        self.people = people or ([fact.person] if fact is not None else [])
        self.person = fact.person if fact is not None else person
        self.fact = fact

    def compose(self) -> ComposeResult:
        editing = self.fact is not None
        with Vertical(classes="dialog", id="fact-form"):
            title = f"Edit fact #{self.fact.id}" if editing else "Add a fact"
            yield Label(title, classes="dialog-title")
            options = [(Text(name), name) for name in self.people]
            person = self.person if self.person in self.people else self.people[0]
            with Horizontal(classes="fact-row"):
                yield Label("About", classes="fact-label")
                yield Select(options, value=person, allow_blank=False, id="fact-person",
                             disabled=editing, compact=True)  # fmt: skip
            with Horizontal(classes="fact-row"):
                yield Label("Key", classes="fact-label")
                yield Input(self.fact.key if editing else "", id="fact-key", compact=True,
                            placeholder="what it is about, e.g. works at")  # fmt: skip
            with Horizontal(classes="fact-row"):
                yield Label("Value", classes="fact-label")
                yield Input(self.fact.value if editing else "", id="fact-value", compact=True,
                            placeholder="what is true, e.g. Atlas Books")  # fmt: skip
            yield Static("", id="fact-problem", classes="-failure", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="fact-save")
                yield Button("Cancel", id="fact-cancel")

    def on_mount(self) -> None:
        self.query_one("#fact-value" if self.fact is not None else "#fact-key").focus()

    @on(Input.Submitted, "#fact-key")
    def _next(self) -> None:
        self.query_one("#fact-value").focus()

    @on(Input.Submitted, "#fact-value")
    @on(Button.Pressed, "#fact-save")
    def _save(self) -> None:
        person = str(self.query_one("#fact-person", Select).value)
        key = self.query_one("#fact-key", Input).value.strip()
        value = self.query_one("#fact-value", Input).value.strip()
        if not key or not value:
            self.query_one("#fact-problem", Static).update("A fact needs a key and a value.")
            return
        self.dismiss((person, key, value))

    @on(Button.Pressed, "#fact-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class ConflictDialog(ModalScreen[str | None]):
    """A flagged pair: the value held before and the one that came later. Dismissed with the
    choice for `Facts.resolve` ("old", "new" or "both"), or None to decide later."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Not now")]

    def __init__(self, conflict: Any, remaining: int) -> None:
        super().__init__()
        self.conflict = conflict
        self.remaining = remaining

    def compose(self) -> ComposeResult:
        old, new = self.conflict.old, self.conflict.new
        with Vertical(classes="dialog", id="conflict"):
            more = f" (1 of {self.remaining})" if self.remaining > 1 else ""
            title = f"These disagree{more}: {old.person} · {old.key}"
            yield Static(title, markup=False, classes="dialog-title")
            for heading, fact, name in (
                ("Before", old, "conflict-old"),
                ("Later", new, "conflict-new"),
            ):
                with Horizontal(classes="conflict-row"):
                    yield Label(heading, classes="conflict-heading")
                    with Vertical():
                        yield Static(fact.value, markup=False, id=name, classes="conflict-value")
                        yield Static(fact_meta(fact), markup=False, classes="-quiet")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Keep old", id="keep-old")
                yield Button("Take new", variant="primary", id="take-new")
                yield Button("Both true", id="both-true")
                yield Button("Not now", id="later")

    @on(Button.Pressed)
    def _chosen(self, event: Button.Pressed) -> None:
        choice = {"keep-old": "old", "take-new": "new", "both-true": "both"}
        self.dismiss(choice.get(event.button.id or ""))
