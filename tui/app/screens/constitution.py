"""The constitution dialog: the few lines the user writes about the person (values, facts,
"would never..."), which the judge compares candidate replies against
(`core.learning.constitution` / `set_constitution`).

A worker reads the stored text into the editor (`ConstitutionRead`); Save (Ctrl+S) writes it in
a worker (`ConstitutionSaved`) and closes the dialog with the text as stored; empty text removes
the constitution. A refused text (more than the few lines allowed) comes back as `JobFailed`:
the app shows why and the dialog stays open with the text, to shorten it. Escape cancels.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, TextArea

from convsim.tui.app.messages import (
    ConstitutionRead,
    ConstitutionSaved,
    JobFailed,
    post,
    reporting,
)

HINT = ("A few lines about {person}: values, facts, what they would never say. The judge "
        "picks the reply that fits them better. Empty removes it.")  # fmt: skip


class ConstitutionDialog(ModalScreen[str | None]):
    """Edit persona `model_id`'s constitution (`person`: who it is about). Dismissed with the
    stored text after a save, None on cancel."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "dismiss(None)", "Cancel"),
    ]

    def __init__(self, model_id: str, person: str) -> None:
        super().__init__()
        self.model_id, self.person = model_id, person
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="constitution"):
            yield Label(f"Constitution of {self.person}", classes="dialog-title", markup=False)
            yield Label(HINT.format(person=self.person), classes="-quiet", markup=False)
            yield TextArea("", id="constitution-text", disabled=True)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="constitution-save", disabled=True)
                yield Button("Cancel", id="constitution-cancel")

    def on_mount(self) -> None:
        self._read()

    @work(thread=True, exit_on_error=False, group="constitution", description="read it")
    def _read(self) -> None:
        from convsim.core.learning import constitution

        app: Any = self.app
        with reporting(self, "Could not read the constitution", "read"), app.workspace() as ws:
            post(self, ConstitutionRead(constitution(ws, self.model_id)))

    @on(ConstitutionRead)
    def _read_done(self, message: ConstitutionRead) -> None:
        editor = self.query_one("#constitution-text", TextArea)
        editor.load_text(message.text)
        editor.disabled = False
        editor.focus()
        editor.move_cursor(editor.document.end)
        self.query_one("#constitution-save", Button).disabled = False
        self.loaded = True

    @on(Button.Pressed, "#constitution-save")
    def action_save(self) -> None:
        save = self.query_one("#constitution-save", Button)
        if not self.loaded or save.disabled:
            return
        save.disabled = True
        self._save(self.query_one("#constitution-text", TextArea).text)

    @work(thread=True, exit_on_error=False, group="constitution", description="save it")
    def _save(self, text: str) -> None:
        from convsim.core.learning import constitution, set_constitution

        app: Any = self.app
        with reporting(self, "Constitution not saved", "constitution"), app.workspace() as ws:
            set_constitution(ws, self.model_id, text)
            post(self, ConstitutionSaved(constitution(ws, self.model_id)))

    @on(ConstitutionSaved)
    def _saved(self, message: ConstitutionSaved) -> None:
        lines = len(message.text.splitlines())
        note = f"{lines} line{'s' if lines != 1 else ''} kept" if lines else "removed"
        self.app.notify(f"Constitution {note}.", title="Constitution", markup=False)
        self.dismiss(message.text)

    @on(JobFailed)
    def _failed(self, message: JobFailed) -> None:
        # The app shows why; the text stays, to be shortened and saved again.
        self.query_one("#constitution-save", Button).disabled = not self.loaded

    @on(Button.Pressed, "#constitution-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
