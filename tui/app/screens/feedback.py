"""The feedback view: every feedback item of one persona, and removing the ones the user does
not want learnt.

Opened from the chat (F10) and from the learn screen. A worker reads the items
(`core.learning.Feedback.items`, `FeedbackListed`); the table shows each item's kind, the
version that wrote the message, the message (→ the better text, for edits), when, and whether an
update learnt it yet. The highlighted item shows in full below the table (the end of its
transcript, the message, the edit). Delete or Backspace removes it at once (a worker,
`FeedbackRemoved`, then a notification); Escape closes the view."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from convsim.tui.app.messages import FeedbackListed, FeedbackRemoved, post, reporting
from convsim.tui.app.screens.learn_widgets import FEEDBACK_COLUMNS, feedback_rows, fill, item_detail

EMPTY = (
    "No feedback yet. In a chat with this persona, focus one of its messages (click it, or "
    "Shift+Tab) and press + or -; Ctrl+T edits its latest message, Ctrl+R asks again, and "
    "autocomplete suggestions count too."
)


class FeedbackScreen(Screen[None]):
    """The feedback of persona `model_id` (who writes as `person`)."""

    BINDINGS = [
        Binding("delete", "remove", "Remove"),
        Binding("backspace", "remove", "Remove", show=False),
        Binding("f4", "reload", "Refresh", show=False),
        Binding("escape", "close", "Back"),
    ]

    def __init__(self, model_id: str, person: str) -> None:
        super().__init__()
        self.model_id, self.person = model_id, person
        self.items: list[Any] | None = None  # None until read
        self._removing = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="feedback"):
            yield Static(
                f"Feedback on [b]{escape(self.person)}[/b]  Persona {escape(self.model_id)}",
                id="feedback-title",
            )
            yield Static("Reading…", id="feedback-summary", markup=False)
            yield DataTable(id="feedback-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="feedback-detail", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        fill(self.query_one("#feedback-table", DataTable), FEEDBACK_COLUMNS, [])
        self.action_reload()

    def action_reload(self) -> None:
        self._list()

    @work(thread=True, exclusive=True, exit_on_error=False, group="feedback-list",
          description="list feedback")  # fmt: skip
    def _list(self) -> None:
        from convsim.core.learning.feedback import Feedback

        app: Any = self.app
        with reporting(self, "Could not read the feedback", "feedback-list"):
            with app.workspace() as ws:
                items = Feedback(ws.store).items(self.model_id)
            post(self, FeedbackListed(items))

    @on(FeedbackListed)
    def _listed(self, message: FeedbackListed) -> None:
        self.items = message.items
        table = self.query_one("#feedback-table", DataTable)
        row = table.cursor_row
        fill(table, FEEDBACK_COLUMNS, feedback_rows(self.items))
        if self.items:
            table.move_cursor(row=min(row, len(self.items) - 1))
        new = sum(1 for i in self.items if i.used_in is None)
        summary = (
            f"{len(self.items)} items, {new} not learnt yet (the next update learns them). "
            "Delete removes the highlighted item."
            if self.items
            else EMPTY
        )
        self.query_one("#feedback-summary", Static).update(summary)
        self._show_detail()

    @on(DataTable.RowHighlighted, "#feedback-table")
    def _show_detail(self) -> None:
        item = self.selected
        detail = self.query_one("#feedback-detail", Static)
        detail.update(item_detail(item) if item is not None else "")

    @property
    def selected(self) -> Any:
        """The highlighted item (None when there is none)."""
        table = self.query_one("#feedback-table", DataTable)
        if not self.items or not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return next((i for i in self.items if str(i.id) == key.value), None)

    def action_remove(self) -> None:
        item = self.selected
        if item is None or self._removing:
            return
        self._removing = True
        self._remove(item.id)

    @work(thread=True, exit_on_error=False, group="feedback-remove",
          description="remove feedback")  # fmt: skip
    def _remove(self, item_id: int) -> None:
        from convsim.core.learning.feedback import Feedback

        app: Any = self.app
        try:
            with reporting(self, "Could not remove the feedback", "feedback-remove"):
                with app.workspace() as ws:
                    Feedback(ws.store).remove(self.model_id, [item_id])
                post(self, FeedbackRemoved([item_id]))
        finally:
            self._removing = False

    @on(FeedbackRemoved)
    def _removed(self, message: FeedbackRemoved) -> None:
        self.notify("Removed: the persona will not learn from it.", title="Feedback")
        self.action_reload()

    def action_close(self) -> None:
        self.app.pop_screen()
