"""Steering in the chat screen (F8): the panel, with a slider per control vector of the
persona, presets, and the form that builds a new axis from two poles.

The panel (`SteeringPanel`) only draws and reports: a moved slider, a preset or Reset posts
`SteeringPanel.MixChanged` with every slider's position; Build and Stop post `BuildAsked` and
`StopAsked`; Delete on a slider posts `SteerSlider.RemoveAsked`. The screen's side, which keeps
the vectors and does the work, is `steering_actions.SteeringActions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, ProgressBar, Static

from convsim.tui.app.screens.steering_widgets import (
    PRESETS,
    STAGES,
    SteerSlider,
    default_name,
)

NO_PERSONA = "Sliders belong to a trained persona or the base model; this chat is neither."
NO_VECTORS = "No sliders yet: build one below (about 2 minutes on a CPU)."


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

    def remove_vector(self, name: str, names: set[str]) -> SteerSlider | None:
        """Take away the slider of vector `name`; `names`: the vectors left. The slider that
        took its place (the next one, else the one before), if any."""
        sliders = self.sliders()
        keys = [s.key for s in sliders]
        if name not in keys:
            return None
        at = keys.index(name)
        sliders[at].remove()
        self._enable_presets(names)
        rest = sliders[:at] + sliders[at + 1 :]
        return rest[min(at, len(rest) - 1)] if rest else None

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
