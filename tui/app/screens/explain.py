"""Why did it say that? A dialog over the chat that lists the person's real training messages
closest to one of the persona's messages (`core.evaluation.explain`): score, time, their message
and what it replied to. Enter (or o) on a match shows it in its chat, with the messages around
it, read from the store.

Everything slow runs in workers: the explanation (the first one for a persona builds its index,
a minute or so on a CPU, reported as `ExplainProgress`) ends with `ExplainFound`; opening a match
reads the store and ends with `ExplainContext`. Closing the dialog stops an index build. Texts
from the user's data are shown as plain text, never as markup.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, ProgressBar, Static

from convsim.tui.app.messages import (
    ExplainContext,
    ExplainFound,
    ExplainProgress,
    JobFailed,
    post,
    reporting,
)
from convsim.tui.app.screens.memory_widgets import minute
from convsim.tui.app.widgets import clip

TOP = 8  # matches listed
AROUND = 4  # messages shown either side of an opened match
NO_PERSONA = (
    "Only a trained persona can say where a reply comes from: the plain base model learned "
    "from nobody's messages."
)
STAGES = {"embedding": "reading their messages", "hidden": "reading them as the persona"}
SIGNAL_NAMES = {"embedding": "meaning", "hidden": "persona"}


class ExplainScreen(ModalScreen[None]):
    """Why the persona `model_id` (None or "base": the untrained base, which has no answer)
    may have said `reply`, after `turns` (the conversation before it, as (speaker, text); a
    last turn that is the reply itself is left out)."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("o", "open_match", "Open in chat"),
    ]

    def __init__(
        self, model_id: str | None, reply: str, turns: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__()
        self.model_id = model_id
        self.reply = reply
        turns = list(turns)
        if turns and turns[-1][1] == reply:
            turns.pop()
        self.turns = turns
        self.explanation: Any = None
        self.opened: int | None = None  # the message id shown in context
        self.cancel = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="explain"):
            yield Label("Why did it say that?", classes="dialog-title")
            yield Static(Text(clip(f"“{self.reply}”", 400)), id="explain-reply")
            yield Static("Looking for their closest messages…", id="explain-note", markup=False)
            yield ProgressBar(id="explain-progress", show_eta=False, classes="-hidden")
            yield OptionList(id="explain-matches", markup=False)
            yield Label("In the chat", classes="explain-heading")
            with VerticalScroll(id="explain-context"):
                yield Static(
                    "Enter or o on a match shows it among the messages around it.",
                    classes="context-gap",
                )
            yield Static("Enter/o: open in chat · Esc: close", id="explain-keys", markup=False)

    def on_mount(self) -> None:
        if self.model_id in (None, "base"):
            self._note(NO_PERSONA, failure=True)
            return
        self._explain(self.model_id, self.reply, self.turns)

    # -- the explanation ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="explain",
          description="find the messages behind a reply")  # fmt: skip
    def _explain(self, model_id: str, reply: str, turns: list[tuple[str, str]]) -> None:
        from convsim.core import evaluation
        from convsim.core.memory import optional_embedder

        app: Any = self.app

        def progress(event: Any) -> None:
            post(self, ExplainProgress(event))

        with reporting(self, "Could not explain this message", "explain"):
            embedder = optional_embedder()
            with app.workspace() as ws:
                try:
                    found = evaluation.explain(
                        ws, model_id, reply, turns, embedder=embedder, k=TOP,
                        progress=progress, cancel=self.cancel,
                    )  # fmt: skip
                except evaluation.ExplainStopped:
                    return
            post(self, ExplainFound(found))

    @on(ExplainProgress)
    def _progress(self, message: ExplainProgress) -> None:
        e = message.event
        bar = self.query_one("#explain-progress", ProgressBar)
        bar.remove_class("-hidden")
        bar.update(total=max(e.total, 1), progress=e.done)
        stage = STAGES.get(e.stage, e.stage)
        self._note(f"Indexing what they wrote (once per persona): {stage}, {e.done} of {e.total}")

    @on(ExplainFound)
    def _found(self, message: ExplainFound) -> None:
        self.explanation = found = message.explanation
        self.query_one("#explain-progress", ProgressBar).add_class("-hidden")
        by = " and ".join(SIGNAL_NAMES.get(s, s) for s in found.signals)
        self._note(
            f"Closest of {found.person}'s {found.candidates} training messages, "
            f"by {by} ({found.seconds:.1f} s)"
        )
        matches = self.query_one("#explain-matches", OptionList)
        matches.clear_options()
        matches.add_options([match_text(m) for m in found.matches])
        if found.matches:
            matches.highlighted = 0
            matches.focus()

    @on(JobFailed)
    def _failed(self, message: JobFailed) -> None:
        if message.group == "explain":
            self.query_one("#explain-progress", ProgressBar).add_class("-hidden")
            self._note(f"{message.what}: {message.error}", failure=True)
        # the app shows the notification too

    def _note(self, text: str, failure: bool = False) -> None:
        note = self.query_one("#explain-note", Static)
        note.update(text)
        note.set_class(failure, "-failure")

    # -- a match in its chat ------------------------------------------------------------------

    def current(self) -> Any:
        """The highlighted match, or None."""
        if self.explanation is None:
            return None
        index = self.query_one("#explain-matches", OptionList).highlighted
        matches = self.explanation.matches
        return matches[index] if index is not None and index < len(matches) else None

    @on(OptionList.OptionSelected, "#explain-matches")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_open_match()

    def action_open_match(self) -> None:
        match = self.current()
        if match is not None:
            self._read_context(match.message.id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="explain-context",
          description="read a message in its chat")  # fmt: skip
    def _read_context(self, message_id: int) -> None:
        from convsim.core import evaluation

        app: Any = self.app
        with reporting(self, "Could not read the chat", "explain-context"):
            with app.workspace() as ws:
                chat_id, lines = evaluation.surrounding(ws, message_id, AROUND)
            post(self, ExplainContext(message_id, chat_id, lines))

    @on(ExplainContext)
    async def _show_context(self, message: ExplainContext) -> None:
        box = self.query_one("#explain-context", VerticalScroll)
        await box.remove_children()
        lines = []
        for said in message.lines:
            classes = "context-line" + (" -source" if said.id == message.message_id else "")
            text = f"{minute(said.ts)}  {said.sender or '*'}: {said.text}"
            lines.append(Static(Text(text), classes=classes))
        await box.mount_all(lines)
        self.opened = message.message_id
        source = box.query(".-source")
        if source:  # once the new lines have their places
            widget = source.first()
            self.call_after_refresh(box.scroll_to_widget, widget, animate=False, center=True)

    def action_close(self) -> None:
        self.cancel.set()  # stops an index build still running
        self.dismiss(None)

    def on_unmount(self) -> None:
        # Closed with the app: the worker's thread must not go on building the index.
        self.cancel.set()


def match_text(match: Any) -> Text:
    """A match as two lines: rank, score, similarities, time and their message; then what it
    replied to (the latest message before it)."""
    sims = "  ".join(f"{SIGNAL_NAMES.get(s, s)} {v:.2f}" for s, v in match.similarity.items())
    said = match.message
    head = f"{match.rank}. {minute(said.ts)}  {said.sender or '?'}: {clip(said.text, 200)}"
    text = Text(head)
    text.append(f"\n   score {match.score:.2f}  {sims}", style="dim")
    if match.replied_to:
        last = match.replied_to[-1]
        text.append(f"\n   ↳ replying to {last.sender or '?'}: {clip(last.text, 160)}", "dim")
    return text
