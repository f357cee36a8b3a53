"""Steering in the chat screen (F8): a slider per control vector of the persona, presets, and
building a new axis from two poles (`core.steering`).

The panel (`SteeringPanel`) only draws and reports: a moved slider, a preset or Reset posts
`SteeringPanel.MixChanged` with every slider's position; Build and Stop post `BuildAsked` and
`StopAsked`. The screen's side (`SteeringActions`, a mixin like `chat_memory.MemoryActions`)
keeps the vectors, mixes the positions (`core.steering.mix`) on the UI thread and leaves the
result as *pending*: the engine is not thread-safe, so the reply worker, holding the engine's
lock, hands the pending mix to `Engine.set_steering` right before it generates
(`steering_for_reply`). A change therefore applies to the next reply, never to one streaming.

Vectors are read in a worker when the panel first opens. A new axis is built in a worker
(`core.steering.build_vector`, minutes on a CPU) that reports `SteerBuildProgress`; Stop sets its
cancel event; any failure is shown in the panel (`SteerBuildEnded`), never raised.
Handlers are `on_<message>` methods: Textual finds those on mixins, not `@on` ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, ProgressBar, Static

from convsim.tui.app.messages import SteerBuildEnded, SteerBuildProgress, SteeringLoaded, post
from convsim.tui.app.screens.steering_widgets import (
    PRESETS,
    STAGES,
    SteerSlider,
    default_name,
    mix_note,
)

NO_PERSONA = "Sliders belong to a trained persona or the base model; this chat is neither."
NO_VECTORS = "No sliders yet: build one below (about 2 minutes on a CPU)."
_UNCHANGED = object()  # no new mix for the engine


class SteeringPanel(VerticalScroll):
    """The steering side panel: sliders, presets, Reset, and the new-axis form."""

    class MixChanged(Message):
        """The user changed the sliders: every slider's position, by vector name."""

        def __init__(self, values: dict[str, float]) -> None:
            super().__init__()
            self.values = values

    class BuildAsked(Message):
        def __init__(self, name: str, positive: str, negative: str) -> None:
            super().__init__()
            self.name = name
            self.positive = positive
            self.negative = negative

    class StopAsked(Message):
        pass

    def __init__(self) -> None:
        super().__init__(id="steering", classes="-hidden")

    def compose(self) -> ComposeResult:
        yield Label("Steering (F8)", classes="section-title")
        yield Static("Loading the sliders…", id="steer-note", markup=False)
        yield Vertical(id="steer-sliders")
        with Horizontal(id="steer-presets"):
            for name in PRESETS:
                yield Button(name, id=f"steer-preset-{name}", compact=True, disabled=True)
            yield Button("Reset", id="steer-reset", compact=True)
        yield Label("New axis", classes="section-title")
        yield Input(placeholder="name (default: from + pole)", id="steer-name", compact=True)
        yield Input(placeholder="+ pole, e.g. playful", id="steer-positive", compact=True)
        yield Input(placeholder="- pole, e.g. serious", id="steer-negative", compact=True)
        with Horizontal(id="steer-build-row"):
            yield Button("Build", id="steer-build", compact=True, variant="primary")
            yield Button("Stop", id="steer-stop", compact=True, disabled=True)
        yield ProgressBar(id="steer-progress", show_eta=False, classes="-hidden")
        yield Static("", id="steer-build-note", markup=False)

    # -- what the screen shows in it ----------------------------------------------------------

    def sliders(self) -> list[SteerSlider]:
        return list(self.query(SteerSlider))

    def values(self) -> dict[str, float]:
        return {s.key: s.value for s in self.sliders()}

    def note(self, text: str, failure: bool = False) -> None:
        note = self.query_one("#steer-note", Static)
        note.update(text)
        note.display = bool(text)
        note.set_class(failure, "-failure")

    def show_vectors(self, vectors: Sequence[Any], values: dict[str, float]) -> None:
        """One slider per vector, at its position in `values` (0 if absent)."""
        box = self.query_one("#steer-sliders", Vertical)
        box.remove_children()
        box.mount_all(_slider(v, values.get(v.name, 0.0)) for v in vectors)
        self._enable_presets({v.name for v in vectors})

    def add_vector(self, vector: Any, names: set[str]) -> SteerSlider:
        """A slider for a newly built vector (replacing one of the same name)."""
        slider = _slider(vector, 0.0)
        old = [s for s in self.sliders() if s.key == vector.name]
        box = self.query_one("#steer-sliders", Vertical)
        if old:
            box.mount(slider, after=old[0])
            old[0].remove()
        else:
            box.mount(slider)
        self._enable_presets(names)
        return slider

    def set_values(self, values: dict[str, float]) -> None:
        for slider in self.sliders():
            slider.value = values.get(slider.key, 0.0)

    def _enable_presets(self, names: set[str]) -> None:
        for preset, chosen in PRESETS.items():
            button = self.query_one(f"#steer-preset-{preset}", Button)
            button.disabled = not names & chosen.keys()

    def form_enabled(self, enabled: bool) -> None:
        for widget in self.query("#steer-name, #steer-positive, #steer-negative, #steer-build"):
            widget.disabled = not enabled

    def building(self, running: bool) -> None:
        self.query_one("#steer-build", Button).disabled = running
        self.query_one("#steer-stop", Button).disabled = not running
        bar = self.query_one("#steer-progress", ProgressBar)
        bar.set_class(not running, "-hidden")
        if running:
            bar.update(total=None, progress=0)

    def progress(self, event: Any) -> None:
        bar = self.query_one("#steer-progress", ProgressBar)
        bar.update(total=max(event.total, 1), progress=event.done)
        stage = STAGES.get(event.stage, event.stage)
        detail = event.note or f"{event.done}/{event.total}"
        self.build_note(f"{stage}: {detail}")

    def build_note(self, text: str, failure: bool = False) -> None:
        note = self.query_one("#steer-build-note", Static)
        note.update(text)
        note.set_class(failure, "-failure")

    # -- what the user does -------------------------------------------------------------------

    @on(SteerSlider.Changed)
    def _moved(self, event: SteerSlider.Changed) -> None:
        event.stop()
        self.post_message(self.MixChanged(self.values()))

    @on(Button.Pressed, "#steer-presets Button")
    def _preset(self, event: Button.Pressed) -> None:
        event.stop()
        chosen = PRESETS.get((event.button.id or "").removeprefix("steer-preset-"), {})
        self.set_values(chosen)
        self.post_message(self.MixChanged(self.values()))

    @on(Button.Pressed, "#steer-build")
    def _build(self, event: Button.Pressed | None = None) -> None:
        if event is not None:
            event.stop()
        name, positive, negative = (
            self.query_one(f"#steer-{field}", Input).value.strip()
            for field in ("name", "positive", "negative")
        )
        name = name or default_name(positive)
        if positive and not name:
            self.build_note("Give the slider a name: this pole makes none.", failure=True)
            self.query_one("#steer-name", Input).focus()
            return
        self.post_message(self.BuildAsked(name, positive, negative))

    @on(Button.Pressed, "#steer-stop")
    def _stop(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.StopAsked())

    @on(Input.Submitted, "#steer-name, #steer-positive")
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.focus_next()

    @on(Input.Submitted, "#steer-negative")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.query_one("#steer-build", Button).disabled:
            self._build()


def _slider(vector: Any, value: float) -> SteerSlider:
    cal = vector.calibration
    return SteerSlider(vector.name, vector.poles, (cal.positive, cal.negative), value)


class SteeringActions:
    """Needs from the screen: `app`, `persona` (with `model_path` and `model_id`), `notify`,
    `query_one`, `focused`, `refresh_status`."""

    app: Any
    persona: Any
    notify: Any
    query_one: Any
    focused: Any
    refresh_status: Any
    call_after_refresh: Any

    def _init_steering(self) -> None:
        self.steer_vectors: dict[str, Any] = {}  # name -> core.steering.Vector
        self.steer_values: dict[str, float] = {}  # name -> slider position
        self.steer_loaded = False  # the vectors have been read (the panel was opened)
        self.steer_building = False
        self.steering_applied: Any = None  # the mix the engine steers with (None: none)
        self._steer_loading = False
        self._steer_lock = threading.Lock()  # guards the pending mix between threads
        self._steer_pending: Any = _UNCHANGED
        self._build_cancel: threading.Event | None = None

    @property
    def steering_panel(self) -> SteeringPanel:
        panel: SteeringPanel = self.query_one(SteeringPanel)
        return panel

    # -- the mix, and the engine (called from the reply worker) ---------------------------------

    def steering_note(self) -> str:
        """For the status line: the sliders not at 0 ("" when none)."""
        return mix_note({k: v for k, v in self.steer_values.items() if k in self.steer_vectors})

    def steering_for_reply(self) -> None:
        """In a worker holding the engine's lock: give the engine the latest mix, if it
        changed since the last reply."""
        with self._steer_lock:
            pending, self._steer_pending = self._steer_pending, _UNCHANGED
        if pending is _UNCHANGED:
            return
        engine = self.persona.engine
        if pending is None:
            engine.set_steering(None)
        else:
            engine.set_steering(*pending)
        self.steering_applied = pending

    def _mix(self, values: dict[str, float]) -> None:
        """Mix `values` for the next reply and show them in the status line."""
        from convsim.core.steering import library

        self.steer_values = {k: v for k, v in values.items() if k in self.steer_vectors}
        try:
            mixed = library.mix(self.steer_values, self.steer_vectors)
        except (KeyError, ValueError) as e:
            self.steering_panel.note(f"Cannot mix these sliders: {e}", failure=True)
            return
        with self._steer_lock:
            self._steer_pending = mixed
        self.refresh_status()

    def on_steering_panel_mix_changed(self, message: SteeringPanel.MixChanged) -> None:
        self._mix(message.values)

    # -- the panel ------------------------------------------------------------------------------

    def action_steering(self) -> None:
        panel = self.steering_panel
        panel.toggle_class("-hidden")
        if panel.has_class("-hidden"):
            if self.focused is not None and panel in self.focused.ancestors:
                self.query_one("#draft").focus()
            return
        if self.persona.model_path is None:
            panel.note(NO_PERSONA)
            panel.form_enabled(False)
        elif not self.steer_loaded and not self._steer_loading:
            self._steer_loading = True
            self._load_vectors(Path(self.persona.model_path), Path(self.persona.engine.model.path))
        self.call_after_refresh(self._focus_first_slider)

    @work(thread=True, exit_on_error=False, group="steer-load", description="read the sliders")
    def _load_vectors(self, model_path: Path, model_file: Path) -> None:
        from convsim.core.steering import library

        found: list[Any] = []
        problems: list[str] = []
        fits: tuple[str, int, int] | None = None
        try:
            fits = library.model_fits(model_file)
        except (OSError, ValueError) as e:
            problems.append(f"the model's sizes are unknown ({e})")
        try:
            files = sorted(library.folder(model_path).glob("*.gguf"))
        except OSError as e:
            files, problems = [], [*problems, str(e)]
        for path in files:
            try:
                found.append(library.load(path, fits))
            except (OSError, ValueError) as e:
                problems.append(str(e))
        screen: Any = self  # a Screen: the mixin is not one itself
        post(screen, SteeringLoaded(found, problems))

    def on_steering_loaded(self, message: SteeringLoaded) -> None:
        self._steer_loading = False
        self.steer_loaded = True
        self.steer_vectors = {v.name: v for v in message.vectors}
        panel = self.steering_panel
        panel.show_vectors(message.vectors, self.steer_values)
        lines = [*message.problems] or ([] if message.vectors else [NO_VECTORS])
        panel.note("\n".join(lines), failure=bool(message.problems))
        if not panel.has_class("-hidden") and (self.focused is None or self.focused.id == "draft"):
            self.call_after_refresh(self._focus_first_slider)

    def _focus_first_slider(self) -> None:
        sliders = self.steering_panel.sliders()
        if sliders:
            sliders[0].focus()

    # -- building a new axis ----------------------------------------------------------------

    def on_steering_panel_build_asked(self, message: SteeringPanel.BuildAsked) -> None:
        panel = self.steering_panel
        if self.steer_building:
            return
        from convsim.core.steering.build import BASE_ID

        # A persona on record, or the plain base (its vectors in the data folder).
        model_id = self.persona.model_id or (BASE_ID if self.persona.plain_base else None)
        if model_id is None:
            panel.build_note("Building needs a trained persona on record.", failure=True)
            return
        self.steer_building = True
        self._build_cancel = threading.Event()
        panel.building(True)
        panel.build_note(f"Building {message.name!r}…")
        self._build_vector(
            model_id, message.name, message.positive, message.negative, self._build_cancel
        )

    def on_steering_panel_stop_asked(self, message: SteeringPanel.StopAsked) -> None:
        self.stop_steering_build()

    def stop_steering_build(self) -> None:
        if self._build_cancel is not None:
            self._build_cancel.set()

    @work(thread=True, exit_on_error=False, group="steer-build", description="build a slider")
    def _build_vector(
        self, model_id: str, name: str, positive: str, negative: str, cancel: threading.Event
    ) -> None:
        from convsim.core import steering

        app: Any = self.app
        screen: Any = self  # a Screen: the mixin is not one itself
        vector, error = None, None
        last: dict[str, float] = {}  # stage -> when its last event was posted

        def report(event: Any) -> None:  # a stage's events: at most 10 a second
            now = time.monotonic()
            if event.done >= event.total or now >= last.get(event.stage, 0.0) + 0.1:
                last[event.stage] = now
                post(screen, SteerBuildProgress(event))

        try:
            spec = steering.Spec(name, poles=(positive, negative))
            with app.workspace() as ws:
                vector = steering.build_vector(ws, model_id, spec, on_event=report, cancel=cancel)
        except KeyError as e:
            error = str(e.args[0]) if e.args else "unknown model"
        except MemoryError:
            error = "out of memory: close other programs and try again"
        except Exception as e:  # Cancelled, ValueError, PairsError: their sentence says it
            error = str(e) or type(e).__name__
        post(screen, SteerBuildEnded(vector, error))

    def on_steer_build_progress(self, message: SteerBuildProgress) -> None:
        if self.steer_building:
            self.steering_panel.progress(message.event)

    def on_steer_build_ended(self, message: SteerBuildEnded) -> None:
        self.steer_building = False
        self._build_cancel = None
        panel = self.steering_panel
        panel.building(False)
        vector = message.vector
        if vector is None:
            panel.build_note(message.error or "Building stopped.", failure=True)
            return
        self.steer_vectors[vector.name] = vector
        self.steer_values[vector.name] = 0.0
        slider = panel.add_vector(vector, set(self.steer_vectors))
        panel.note("")
        panel.build_note(f"New slider: {vector.name}")
        self.notify(f"New steering slider: {vector.name}")
        self._mix(panel.values() | {vector.name: 0.0})
        slider.focus()
