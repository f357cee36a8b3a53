"""Chat: you type as yourself, the persona streams its reply; autocomplete drafts your own
next message; forever mode lets both sides talk; the sampling panel tunes generation; F6 opens
the memory panel of the persona's chat and F7 turns memory off for replies, to compare
(`chat_memory.py`: the facts each reply is given, and what the chat teaches); F8 opens the
steering panel (`steering.py`: sliders whose mix the next reply is steered with, shown in the
status line); + and - rate a persona message, and edits (Ctrl+T), regenerations (Ctrl+R) and
autocomplete are recorded as feedback for the persona's next update (`chat_feedback.py`, which
holds the edit and regenerate actions too; F10 lists it).

One `Engine` per screen, used by one job at a time (`self.busy` lock). Replies, forever turns,
autocomplete and transcript files run in `@work` thread workers that report with the messages
of `messages.py`. A reply's tokens are merged into `ReplyText` batches (at most one every
`STREAM_INTERVAL` seconds), so a fast model cannot flood the UI thread. Autocomplete is
debounced, runs only when the engine is free, and is cancelled by the next keystroke, so typing
never waits on it."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Label, Static, Switch

from convsim.tui.app.messages import (
    Completion,
    ForeverEnded,
    ForeverTurn,
    JobFailed,
    MemoriesUsed,
    ReplyDone,
    ReplyText,
    post,
    reporting,
)
from convsim.tui.app.screens.chat_feedback import FeedbackActions
from convsim.tui.app.screens.chat_memory import MemoryActions
from convsim.tui.app.screens.chat_persona import Persona, persona_from_base, persona_from_model
from convsim.tui.app.screens.chat_transcripts import TranscriptActions
from convsim.tui.app.screens.chat_widgets import Bubble, OpenDialog, SamplingPanel
from convsim.tui.app.screens.steering import SteeringPanel
from convsim.tui.app.screens.steering_actions import SteeringActions
from convsim.tui.app.widgets import GhostInput

AUTOCOMPLETE_DELAY = 0.15  # seconds of no typing before a completion is asked for
AUTOCOMPLETE_TOKENS = 12
MAX_MESSAGES = 3  # a reply may be up to this many messages in a row
STREAM_INTERVAL = 0.05  # seconds between two batches of a streaming reply
READY = "Enter sends · Tab accepts · Esc stops"

__all__ = ["Bubble", "ChatScreen", "OpenDialog", "Persona", "SamplingPanel"]
__all__ += ["persona_from_base", "persona_from_model"]


def _close_engine(screen: ChatScreen) -> None:
    with screen.busy:  # after the job in progress has seen its cancel event and returned
        screen.persona.engine.close()
        screen.close_memory()


class ChatScreen(TranscriptActions, MemoryActions, SteeringActions, FeedbackActions, Screen[None]):
    BINDINGS = [
        Binding("ctrl+r", "regenerate", "Regen"),
        Binding("ctrl+o", "continue_reply", "More", show=False),
        Binding("ctrl+t", "edit_reply", "Edit"),
        Binding("ctrl+f", "toggle_forever", "Forever"),
        Binding("f2", "toggle_sampling", "Sampling"),
        Binding("f3", "toggle_autocomplete", "Autocomplete", show=False),
        Binding("f6", "memory", "Memory"),
        Binding("f7", "toggle_memory", "Memory on/off", show=False),
        Binding("f8", "steering", "Steer", show=False),
        Binding("f9", "explain", "Why?", show=False),
        Binding("plus", "feedback_good", "Good", show=False),
        Binding("minus", "feedback_bad", "Bad", show=False),
        Binding("f10", "feedback", "Feedback", show=False),
        Binding("ctrl+s", "save", "Save", show=False),
        Binding("ctrl+l", "load", "Open", show=False),
        Binding("escape", "stop", "Stop", show=False),
        Binding("ctrl+b", "close", "Back"),
    ]

    show_sampling = reactive(False)

    def __init__(self, persona: Persona) -> None:
        super().__init__()
        self.persona = persona
        self.sub_title = f"{persona.me} ↔ {persona.title}"
        self.turns: list[tuple[str, str]] = []
        self.busy = threading.Lock()  # the engine runs one job at a time
        self.cancel = threading.Event()  # stops the reply or forever loop in progress
        self.generating = False
        self.forever_on = False
        self._complete_cancel = threading.Event()
        self._complete_timer: Timer | None = None
        self.completions = 0  # autocomplete results shown, for the status line and tests
        self.autocomplete_on = True
        self._streamed: list[Bubble] = []  # the bubbles of the reply being streamed
        self._status_text = READY
        self._init_memory()
        self._init_steering()
        self._init_feedback()

    def compose(self) -> ComposeResult:
        from convsim.core.inference.engine import Sampling

        yield Header()
        with Horizontal(id="chat-body"):
            with Vertical(id="chat-main"):
                yield VerticalScroll(id="messages")
                yield Static(READY, id="chat-status", markup=False)
                with Horizontal(id="composer"):
                    yield GhostInput(placeholder=f"Message {self.persona.speaker}…", id="draft")
                    yield Label("forever", classes="inline")
                    yield Switch(id="forever")
            yield SamplingPanel(Sampling(max_tokens=48))
            yield SteeringPanel()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#draft").focus()

    def watch_show_sampling(self, show: bool) -> None:
        self.query_one(SamplingPanel).set_class(not show, "-hidden")

    def on_unmount(self) -> None:
        self.cancel.set()
        self._complete_cancel.set()
        self.stop_steering_build()
        # On the app, not this screen: the screen's own workers end with it.
        self.app.run_worker(
            lambda: _close_engine(self), thread=True,
            group="close-engine", description="close the chat's model", exit_on_error=False,
        )  # fmt: skip

    @property
    def sampling_now(self) -> Any:
        return self.query_one(SamplingPanel).sampling

    def _status(self, text: str) -> None:
        self._status_text = text
        self.refresh_status()

    def refresh_status(self) -> None:
        """The status line: the latest news, then the steering mix (when a slider is moved)."""
        line = " · ".join(p for p in (self._status_text, self.steering_note()) if p)
        self.query_one("#chat-status", Static).update(line)

    # -- the message list ---------------------------------------------------------------------

    def _bubble(self, speaker: str, text: str) -> Bubble:
        bubble = Bubble(speaker, text, mine=speaker == self.persona.me)
        messages = self.query_one("#messages", VerticalScroll)
        messages.mount(bubble)
        messages.scroll_end(animate=False)
        return bubble

    def _redraw(self) -> None:
        messages = self.query_one("#messages", VerticalScroll)
        messages.remove_children()
        bubbles = [Bubble(s, t, mine=s == self.persona.me) for s, t in self.turns]
        messages.mount_all(bubbles)
        messages.scroll_end(animate=False)
        self.show_marks(bubbles)  # these: the old ones are still there until they are removed

    # -- sending and replies ------------------------------------------------------------------

    @on(Input.Submitted, "#draft")
    def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.generating:
            self.notify("Wait for the reply, or press Esc to stop it.", severity="warning")
            return
        event.input.value = ""
        self.suggestion_sent(text)
        self.turns.append((self.persona.me, text))
        self._bubble(self.persona.me, text)
        self._reply()

    def _reply(self, redraw: int = 0) -> None:
        """Stream the persona's reply (one or more messages) after the current turns; the
        `redraw`th time again (Ctrl+R): with a seed set, the seed moves on by as many, so that
        the reply is not the one it replaces."""
        self._complete_cancel.set()
        self.cancel.clear()
        self.generating = True
        self._streamed = []
        self._status(f"{self.persona.speaker} is typing…")
        sampling = self.sampling_now
        if redraw and sampling.seed is not None:
            sampling = replace(sampling, seed=(sampling.seed + redraw) % 2**32)
        self._stream_reply(list(self.turns), sampling)

    @work(thread=True, exit_on_error=False, group="reply", description="stream a reply")
    def _stream_reply(self, turns: list[tuple[str, str]], sampling: Any) -> None:
        engine, speaker = self.persona.engine, self.persona.speaker
        with reporting(self, "The reply failed", "reply"), self.busy:
            pending: list[str] = []
            sent = 0.0
            post(self, MemoriesUsed(self.memory_for_reply(turns)))
            self.steering_for_reply()
            stream = engine.simulate(
                turns, speaker, sampling, self.cancel, max_messages=MAX_MESSAGES
            )
            for piece in stream:
                pending.append(piece)
                now = time.perf_counter()
                if now - sent >= STREAM_INTERVAL:
                    post(self, ReplyText("".join(pending)))
                    pending, sent = [], now
            if pending:
                post(self, ReplyText("".join(pending)))
            post(self, ReplyDone(stream.result()))

    @on(ReplyText)
    def _show_piece(self, message: ReplyText) -> None:
        for i, part in enumerate(message.text.split("\n")):
            if i or not self._streamed:
                self._streamed.append(self._bubble(self.persona.speaker, ""))
            if part:
                self._streamed[-1].append(part)
        self.query_one("#messages", VerticalScroll).scroll_end(animate=False)

    @on(ReplyDone)
    def _reply_done(self, message: ReplyDone) -> None:
        reply, speaker, bubbles = message.reply, self.persona.speaker, self._streamed
        self.generating = False
        self.note_reply(len(self.turns), reply)
        self.turns.extend((speaker, m) for m in reply.messages)
        # The final messages are what the conversation keeps (the engine trims a capped
        # message to its last whole word): show exactly those.
        for bubble, text in zip(bubbles, reply.messages, strict=False):
            bubble.set_text(text)
        for bubble in bubbles[len(reply.messages) :]:
            bubble.remove()
        parts = ["stopped"] if reply.cancelled else []
        if not reply.messages:
            parts.append(f"{speaker} sent nothing (Ctrl+O asks again)")
        if reply.first_token_s is not None:
            parts.append(f"{reply.first_token_s * 1000:.0f} ms first token")
        parts.append(f"{reply.generated_tokens} tokens")
        parts.append(f"{reply.reused_tokens}/{reply.prompt_tokens} prompt tokens from cache")
        parts.append(self.memories_note() if self.memory_on else "memory off")
        self._status(" · ".join(p for p in parts if p))
        if reply.messages and not reply.cancelled:
            self.learn_from(self.turns[-(len(reply.messages) + 1) :])

    @on(JobFailed)
    def _job_failed(self, message: JobFailed) -> None:
        # The app shows the notification; here the screen only leaves its busy state.
        if message.group == "reply":
            self.generating = False
            self._status(READY)

    def action_continue_reply(self) -> None:
        if not self.generating:
            self._reply()

    def action_stop(self) -> None:
        self.cancel.set()

    def action_explain(self) -> None:
        """Why did it say that? The focused persona message, else the latest one."""
        from convsim.tui.app.screens.explain import ExplainScreen

        index = self._persona_turn()
        if index is None or self.generating:
            self.notify("Why? works on a message the persona has finished writing.")
            return
        self.app.push_screen(
            ExplainScreen(self.persona.model_id, self.turns[index][1], self.turns[: index + 1])
        )

    # -- forever ------------------------------------------------------------------------------

    @on(Switch.Changed, "#forever")
    def _forever_switched(self, event: Switch.Changed) -> None:
        if event.value and not self.forever_on:
            self._start_forever()
        elif not event.value and self.forever_on:
            self.cancel.set()

    def action_toggle_forever(self) -> None:
        switch = self.query_one("#forever", Switch)
        switch.value = not switch.value

    def _start_forever(self) -> None:
        if self.generating:
            self.notify("Wait for the reply to finish first.", severity="warning")
            self.query_one("#forever", Switch).value = False
            return
        self._complete_cancel.set()
        self.cancel.clear()
        self.forever_on = self.generating = True
        speakers = [self.persona.me, self.persona.speaker]
        if self.turns and self.turns[-1][0] == self.persona.me:
            speakers.reverse()
        self._status("Forever: both sides talk. Ctrl+F or Esc stops.")
        self._forever(list(self.turns), speakers, self.sampling_now)

    @work(thread=True, exit_on_error=False, group="reply", description="forever mode")
    def _forever(self, turns: list[tuple[str, str]], speakers: list[str], sampling: Any) -> None:
        engine = self.persona.engine
        try:
            with reporting(self, "Forever mode failed", "forever"), self.busy:
                self.steering_for_reply()
                for speaker, text in engine.forever(turns, speakers, sampling, None, self.cancel):
                    post(self, ForeverTurn(speaker, text))
        finally:
            post(self, ForeverEnded())

    @on(ForeverTurn)
    def _forever_turn(self, message: ForeverTurn) -> None:
        self.turns.append((message.speaker, message.text))
        self._bubble(message.speaker, message.text)

    @on(ForeverEnded)
    def _forever_ended(self) -> None:
        self.forever_on = self.generating = False
        self.query_one("#forever", Switch).value = False
        self._status("Forever mode off.")

    # -- autocomplete -------------------------------------------------------------------------

    @on(Input.Changed, "#draft")
    def _typed(self, event: Input.Changed) -> None:
        self._complete_cancel.set()
        self.draft_changed(event.value)
        if self._complete_timer is not None:
            self._complete_timer.stop()
        if event.value.strip() and self.autocomplete_on and not self.generating:
            self._complete_timer = self.set_timer(AUTOCOMPLETE_DELAY, self._autocomplete)

    def _autocomplete(self) -> None:
        partial = self.query_one("#draft", GhostInput).value
        if not partial.strip() or self.generating:
            return
        self._complete_cancel = threading.Event()
        sampling = replace(self.sampling_now, max_tokens=AUTOCOMPLETE_TOKENS)
        self._complete(list(self.turns), partial, sampling, self._complete_cancel)

    @work(thread=True, exclusive=True, exit_on_error=False, group="complete",
          description="autocomplete the draft")  # fmt: skip
    def _complete(
        self, turns: list[tuple[str, str]], partial: str, sampling: Any, cancel: threading.Event
    ) -> None:
        if not self.busy.acquire(blocking=False):
            return  # a reply is running; typing must not wait for it
        engine, me = self.persona.engine, self.persona.me
        try:
            with reporting(self, "Autocomplete failed", "complete"):
                completion = "".join(engine.autocomplete(turns, me, partial, sampling, cancel))
                if completion and not cancel.is_set():
                    post(self, Completion(partial, completion))
        finally:
            self.busy.release()

    @on(Completion)
    def _completed(self, message: Completion) -> None:
        draft = self.query_one("#draft", GhostInput)
        if not self._complete_cancel.is_set() and draft.show_ghost(
            message.partial, message.completion
        ):
            self.completions += 1
            self.suggestion_shown(message.partial, message.completion)

    # -- panels, transcripts ------------------------------------------------------------------

    def action_toggle_autocomplete(self) -> None:
        self.autocomplete_on = not self.autocomplete_on
        self._complete_cancel.set()
        if not self.autocomplete_on:  # nor the suggestion already shown: Tab must not take it
            self.query_one("#draft", GhostInput).clear_ghost()
        self.notify(f"Autocomplete {'on' if self.autocomplete_on else 'off'}.")

    def action_toggle_sampling(self) -> None:
        self.show_sampling = not self.show_sampling

    def action_close(self) -> None:
        self.cancel.set()
        self.app.pop_screen()
