"""Chat: you type as yourself, the persona streams its reply; autocomplete drafts your own
next message; forever mode lets both sides talk; the sampling panel tunes generation.

One `Engine` per screen, used by one job at a time (`self.busy` lock). Replies and forever
turns run in thread workers and stream into the message list with `call_from_thread`.
Autocomplete is debounced, runs only when the engine is free, and is cancelled by the next
keystroke, so typing never waits on it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Label, Static, Switch

from convsim.tui.app.screens.chat_widgets import Bubble, EditDialog, OpenDialog, SamplingPanel
from convsim.tui.app.widgets import GhostInput, short_path

AUTOCOMPLETE_DELAY = 0.15  # seconds of no typing before a completion is asked for
AUTOCOMPLETE_TOKENS = 12
MAX_MESSAGES = 3  # a reply may be up to this many messages in a row


@dataclass
class Persona:
    """What a chat screen talks to: a loaded engine, who it speaks as, and who you are."""

    engine: Any
    speaker: str
    me: str
    title: str
    model_id: str | None = None


def persona_from_model(app: Any, model_id: str) -> Persona:
    """Load a trained persona (base + its adapter). Runs in a worker: loading takes a moment."""
    from convsim.core import training
    from convsim.core.inference.engine import Engine

    with app.workspace() as ws:
        record = ws.store.model(model_id)
        adapter = training.adapter_gguf(ws, model_id)
        people = ws.store.participants(record.chat_id) if record.chat_id is not None else []
    others = [p for p in people if p.name != record.person]
    mine = [p for p in others if p.is_me] or others
    me = mine[0].name if mine else "You"
    engine = Engine(Path(record.base), [(adapter, 1.0)])
    return Persona(engine, record.person, me, f"{record.person} ({model_id})", model_id)


def persona_from_base(app: Any) -> Persona:
    """The plain default base model as a stranger called Friend."""
    from convsim.core.bases.prepare import default_base
    from convsim.core.inference.engine import Engine

    with app.workspace() as ws:
        path = default_base(ws.locations)
    return Persona(Engine(path), "Friend", "You", "Friend (base model, untrained)")


class ChatScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+o", "continue_reply", "More"),
        Binding("ctrl+t", "edit_reply", "Edit reply"),
        Binding("ctrl+f", "toggle_forever", "Forever"),
        Binding("f2", "toggle_sampling", "Sampling"),
        Binding("f3", "toggle_autocomplete", "Autocomplete"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+l", "load", "Open"),
        Binding("escape", "stop", "Stop", show=False),
        Binding("ctrl+b", "close", "Back"),
    ]

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

    def compose(self) -> ComposeResult:
        from convsim.core.inference.engine import Sampling

        yield Header()
        with Horizontal(id="chat-body"):
            with Vertical(id="chat-main"):
                yield VerticalScroll(id="messages")
                yield Static("", id="chat-status")
                with Horizontal(id="composer"):
                    yield GhostInput(placeholder=f"Message {self.persona.speaker}…", id="draft")
                    yield Label("forever", classes="inline")
                    yield Switch(id="forever")
            yield SamplingPanel(Sampling(max_tokens=48))
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SamplingPanel).display = False
        self._status(
            f"You are {self.persona.me} · Enter sends · Tab takes the suggestion · Esc stops"
        )
        self.query_one("#draft").focus()

    def on_unmount(self) -> None:
        self.cancel.set()
        self._complete_cancel.set()
        engine = self.persona.engine

        def close() -> None:
            with self.busy:
                engine.close()

        threading.Thread(target=close, daemon=True).start()

    @property
    def sampling_now(self) -> Any:
        return self.query_one(SamplingPanel).sampling

    def _status(self, text: str) -> None:
        self.query_one("#chat-status", Static).update(text)

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
        messages.mount_all(Bubble(s, t, mine=s == self.persona.me) for s, t in self.turns)
        messages.scroll_end(animate=False)

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
        self.turns.append((self.persona.me, text))
        self._bubble(self.persona.me, text)
        self._reply()

    def _reply(self) -> None:
        """Stream the persona's reply (one or more messages) after the current turns."""
        self._complete_cancel.set()
        self.cancel.clear()
        self.generating = True
        engine, speaker, sampling = self.persona.engine, self.persona.speaker, self.sampling_now
        turns = list(self.turns)
        bubbles: list[Bubble] = []  # one per message of the reply, as they stream in

        def show(piece: str) -> None:
            for i, part in enumerate(piece.split("\n")):
                if i or not bubbles:
                    bubbles.append(self._bubble(speaker, ""))
                if part:
                    bubbles[-1].append(part)
            self.query_one("#messages", VerticalScroll).scroll_end(animate=False)

        def run() -> tuple[list[str], Any, float | None]:
            first: float | None = None
            with self.busy:
                started = time.perf_counter()
                stream = engine.simulate(
                    turns, speaker, sampling, self.cancel, max_messages=MAX_MESSAGES
                )
                for piece in stream:
                    if first is None:
                        first = time.perf_counter() - started
                    self.app.call_from_thread(show, piece)
                return list(engine.stats.messages), replace(engine.stats), first

        def done(result: tuple[list[str], Any, float | None]) -> None:
            messages, stats, first = result
            self.generating = False
            self.turns.extend((speaker, m) for m in messages)
            # The final messages are what the conversation keeps (the engine trims a capped
            # message to its last whole word): show exactly those.
            for bubble, message in zip(bubbles, messages, strict=False):
                bubble.set_text(message)
            for bubble in bubbles[len(messages) :]:
                bubble.remove()
            first_ms = f"{first * 1000:.0f} ms to first token, " if first is not None else ""
            stopped = "stopped, " if self.cancel.is_set() else ""
            if not messages:
                stopped += f"{speaker} sent nothing (Ctrl+O asks again), "
            self._status(
                f"{stopped}{first_ms}{stats.generated_tokens} tokens; "
                f"{stats.reused_tokens}/{stats.prompt_tokens} prompt tokens from cache"
            )

        def failed(exc: BaseException) -> None:
            self.generating = False

        self._status(f"{speaker} is typing…")
        self.app.in_thread("The reply failed", run, done, failed, group="reply")  # type: ignore[attr-defined]

    def _last_reply_start(self) -> int:
        """Index of the first turn of the persona's latest reply (len(turns) if none)."""
        i = len(self.turns)
        while i and self.turns[i - 1][0] == self.persona.speaker:
            i -= 1
        return i

    def action_regenerate(self) -> None:
        if self.generating:
            return
        start = self._last_reply_start()
        if start == len(self.turns):
            self.notify("No reply to regenerate yet.")
            return
        del self.turns[start:]
        self._redraw()
        self._reply()

    def action_continue_reply(self) -> None:
        if not self.generating:
            self._reply()

    def action_stop(self) -> None:
        self.cancel.set()

    def action_edit_reply(self) -> None:
        if self.generating or not self.turns or self.turns[-1][0] != self.persona.speaker:
            self.notify("Edit works on the persona's latest message.")
            return

        def edited(text: str | None) -> None:
            if text:
                self.turns[-1] = (self.persona.speaker, text)
                self._redraw()

        self.app.push_screen(EditDialog(self.turns[-1][1]), edited)

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
        engine, sampling = self.persona.engine, self.sampling_now
        speakers = [self.persona.me, self.persona.speaker]
        if self.turns and self.turns[-1][0] == self.persona.me:
            speakers.reverse()

        def add(turn: tuple[str, str]) -> None:
            self.turns.append(turn)
            self._bubble(*turn)

        def run() -> None:
            with self.busy:
                for turn in engine.forever(list(self.turns), speakers, sampling, None, self.cancel):
                    self.app.call_from_thread(add, turn)

        def ended(_: Any = None) -> None:
            self.forever_on = self.generating = False
            self.query_one("#forever", Switch).value = False
            self._status("Forever mode off.")

        self._status("Forever mode: both sides talk. Ctrl+F or Esc stops it.")
        self.app.in_thread("Forever mode failed", run, ended, ended, group="reply")  # type: ignore[attr-defined]

    # -- autocomplete -------------------------------------------------------------------------

    @on(Input.Changed, "#draft")
    def _typed(self, event: Input.Changed) -> None:
        self._complete_cancel.set()
        if self._complete_timer is not None:
            self._complete_timer.stop()
        if event.value.strip() and self.autocomplete_on and not self.generating:
            self._complete_timer = self.set_timer(AUTOCOMPLETE_DELAY, self._autocomplete)

    def _autocomplete(self) -> None:
        draft = self.query_one("#draft", GhostInput)
        partial = draft.value
        if not partial.strip() or self.generating:
            return
        cancel = self._complete_cancel = threading.Event()
        engine, me = self.persona.engine, self.persona.me
        sampling = replace(self.sampling_now, max_tokens=AUTOCOMPLETE_TOKENS)
        turns = list(self.turns)

        def run() -> str | None:
            if not self.busy.acquire(blocking=False):
                return None  # a reply is running; typing must not wait for it
            try:
                return "".join(engine.autocomplete(turns, me, partial, sampling, cancel))
            finally:
                self.busy.release()

        def done(completion: str | None) -> None:
            if completion and not cancel.is_set() and draft.show_ghost(partial, completion):
                self.completions += 1

        self.app.in_thread("Autocomplete failed", run, done, group="complete")  # type: ignore[attr-defined]

    # -- panels, transcripts ------------------------------------------------------------------

    def action_toggle_autocomplete(self) -> None:
        self.autocomplete_on = not self.autocomplete_on
        self._complete_cancel.set()
        self.notify(f"Autocomplete {'on' if self.autocomplete_on else 'off'}.")

    def action_toggle_sampling(self) -> None:
        panel = self.query_one(SamplingPanel)
        panel.display = not panel.display

    def _transcripts(self) -> Path:
        return Path(self.app.locations.transcripts)  # type: ignore[attr-defined]

    def action_save(self) -> None:
        from convsim.core.data import transcripts

        if not self.turns:
            self.notify("Nothing to save yet.")
            return
        name = self.persona.model_id or self.persona.speaker
        path = transcripts.save(self._transcripts(), name, self.turns)
        self.notify(f"Saved to {short_path(path)}", title="Transcript saved")

    def action_load(self) -> None:
        from convsim.core.data import transcripts

        if self.generating:
            return
        files = transcripts.saved(self._transcripts())
        if not files:
            self.notify("No saved transcripts yet (Ctrl+S saves one).")
            return

        def chosen(path: Path | None) -> None:
            if path is None:
                return
            try:
                self.turns = transcripts.load(path)
            except transcripts.TranscriptError as exc:
                self.app.report_error("Could not open the transcript", exc)  # type: ignore[attr-defined]
                return
            self._redraw()
            self._status(f"Opened {path.name}: {len(self.turns)} messages.")

        self.app.push_screen(OpenDialog(files), chosen)

    def action_close(self) -> None:
        self.cancel.set()
        self.app.pop_screen()
