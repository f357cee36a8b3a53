"""The forget dialog: remove a chat, or one person in every chat, and everything made from their
messages. It lists everything that will go before anything does (the plan comes from a worker:
`ForgetPlanned`), and forgets only on an explicit press (`Forgotten`). Dismissed with True when
something was forgotten."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select, Static

from convsim.core.workspace import is_training
from convsim.tui.app.messages import ForgetPlanned, Forgotten, JobFailed, post, reporting
from convsim.tui.app.widgets import clip

WHOLE_CHAT = "chat"
CHOICE_WIDTH = 56  # a choice stays on one line of the dialog, however long the chat's title
RECHECK_S = 5.0  # how often a plan held up by a training run is made again


class ForgetDialog(ModalScreen[bool]):
    """`chat_id` is the chat selected on the home screen; `people` its participants, any of
    whom can be forgotten instead (in every chat)."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel")]

    def __init__(self, chat_id: int, title: str, people: list[str]) -> None:
        super().__init__()
        self.chat_id, self.title_text, self.people = chat_id, title, people
        self.plan: Any = None
        self.recheck: Any = None  # the timer that plans again while a persona trains

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="forget"):
            yield Label("Forget, for good", classes="dialog-title")
            # Content, not markup: the title and the names are whatever the chat's people typed.
            labels = [f"the whole chat: {self.title_text}"]
            labels += [f"{name}, in every chat" for name in self.people]
            values = [WHOLE_CHAT, *self.people]
            options = [
                (Content(clip(t, CHOICE_WIDTH)), v) for t, v in zip(labels, values, strict=True)
            ]
            yield Select(options, value=WHOLE_CHAT, allow_blank=False, id="forget-what")
            yield Label("This removes:", classes="forget-heading")
            with VerticalScroll(id="forget-list"):
                yield Static("Looking…", id="forget-items", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Forget", variant="error", id="forget-go", disabled=True)
                yield Button("Cancel", id="forget-cancel")

    def on_mount(self) -> None:
        self._plan(None)

    @on(Select.Changed, "#forget-what")
    def _what_changed(self, event: Select.Changed) -> None:
        self._stop_recheck()
        self.query_one("#forget-go", Button).disabled = True
        self._plan(None if event.value == WHOLE_CHAT else str(event.value))

    @work(thread=True, exclusive=True, exit_on_error=False, group="forget",
          description="list what forgetting removes")  # fmt: skip
    def _plan(self, person: str | None) -> None:
        app: Any = self.app
        with reporting(self, "Could not list what would be forgotten", "forget"):
            with app.workspace() as ws:
                plan = ws.forget_plan(chat_id=self.chat_id, person=person)
                home = Path(ws.locations.home)
            training = [m.id for m in plan.models if is_training(m)]
            post(self, ForgetPlanned(plan, plan.lines(relative_to=home), training))

    @on(ForgetPlanned)
    def _planned(self, message: ForgetPlanned) -> None:
        chosen = self.query_one("#forget-what", Select).value
        if message.plan.person != (None if chosen == WHOLE_CHAT else chosen):
            return  # the plan of an earlier choice, come late: the current one's is on its way
        self.plan = message.plan
        lines = message.lines
        if message.training:  # `forget` would refuse: say so, and look again in a while
            running = " and ".join(message.training)
            verb = "is" if len(message.training) == 1 else "are"
            lines = [
                f"{running} {verb} training now: nothing can be forgotten until it stops "
                f"(this list looks again every {RECHECK_S:g} s).",
                "",
                *lines,
            ]
            self._stop_recheck()
            self.recheck = self.set_timer(RECHECK_S, lambda: self._plan(message.plan.person))
        self.query_one("#forget-items", Static).update("\n".join(lines))
        self.query_one("#forget-go", Button).disabled = bool(message.training)

    @on(Button.Pressed, "#forget-go")
    def _go(self) -> None:
        self._stop_recheck()
        self.query_one("#forget-go", Button).disabled = True
        self.query_one("#forget-what", Select).disabled = True
        self._forget(self.plan)

    def _stop_recheck(self) -> None:
        if self.recheck is not None:
            self.recheck.stop()
            self.recheck = None

    @work(thread=True, exclusive=True, exit_on_error=False, group="forget",
          description="forget")  # fmt: skip
    def _forget(self, plan: Any) -> None:
        app: Any = self.app
        with reporting(self, "Could not forget everything", "forget"), app.workspace() as ws:
            post(self, Forgotten(plan.subject, ws.forget(plan)))

    @on(Forgotten)
    def _forgotten(self, message: Forgotten) -> None:
        note = "" if message.erased else " (the store's journal is emptied when convsim closes)"
        self.app.notify(f"Forgot {message.subject}{note}.", markup=False)
        self.dismiss(True)

    @on(JobFailed)
    def _failed(self, message: JobFailed) -> None:
        self.query_one("#forget-what", Select).disabled = False  # the app shows the error

    @on(Button.Pressed, "#forget-cancel")
    def _cancel(self) -> None:
        self.dismiss(False)
