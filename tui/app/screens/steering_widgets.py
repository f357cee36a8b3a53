"""The steering panel's parts: its slider (one control vector of the persona, -1..+1), its
presets, and how a mix is written in the status line.

Textual has no slider widget. `SteerSlider` draws two lines: the vector's name, its position
and its calibrated range (the strength at -1 and at +1), then the negative pole, a bar from -1
to +1 with the position on it, and the positive pole. Left/right move it by `STEP` (with shift
by `BIG_STEP`), a click on the bar puts it there; each move the user makes posts
`SteerSlider.Changed`; Delete posts `SteerSlider.RemoveAsked` (the screen asks first). Names
and poles are the user's text: drawn as plain text, never markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from convsim.tui.app.widgets import clip

STEP = 0.1
BIG_STEP = 0.5
POLE_WIDTH = 9  # a pole's label is cut to this many cells on the bar's line
MIN_BAR = 7

# Presets: slider positions; a preset sets these and puts every other slider at 0. Only the
# sliders the persona has are moved; a preset none of whose vectors exist is disabled. Each
# preset's positions sum to at most 1, so the mix applies them as set (`library.budget`).
PRESETS: dict[str, dict[str, float]] = {
    "cheerful": {"happy": 0.6, "warm": 0.4},
    "short": {"brief": 1.0},
    "formal": {"formal": 0.8},
}
STAGES = {"pairs": "contrast pairs", "sampling": "sampling replies", "directions": "directions",
          "fitting": "fitting", "calibration": "calibrating", "saved": "saved"}  # fmt: skip


def default_name(positive: str) -> str:
    """A vector name made from the positive pole ("very cheerful" -> "very-cheerful"), or ""
    when it makes none (a name starts with a letter)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", positive.lower())
    return re.sub(r"^[^a-z]+", "", name)[:32].rstrip("-")


def signed(value: float) -> str:
    """A slider position as the status line and the slider show it: +0.5, -0.3, 0.0."""
    return "0.0" if abs(value) < 0.005 else f"{value:+.1f}"


def strength_range(negative: float, positive: float) -> str:
    """The calibrated strengths at -1 and +1: "±2.0", or "-1.5…+3.0" when they differ."""
    if abs(negative - positive) < 0.05:
        return f"±{positive:.1f}"
    return f"-{negative:.1f}…+{positive:.1f}"


def mix_note(values: Mapping[str, float]) -> str:
    """ "steer: happy +0.5 brief -0.3" for the sliders that are not at 0 ("" when none),
    with " ×0.62" when the mix scales them down together (`library.budget`)."""
    from convsim.core.steering.library import budget

    moved = [f"{name} {signed(v)}" for name, v in values.items() if abs(v) >= 0.005]
    if not moved:
        return ""
    scale = budget(values)
    return "steer: " + " ".join(moved) + (f" ×{scale:.2f}" if scale < 0.995 else "")


def clamp(value: float) -> float:
    return round(max(-1.0, min(1.0, value)), 2)


class SteerSlider(Widget, can_focus=True):
    """A slider for the vector `key` between its poles; `value` is its position, -1..+1."""

    BINDINGS: ClassVar[list[Any]] = [
        Binding("left", f"nudge({-STEP})", "Less", show=False),
        Binding("right", f"nudge({STEP})", "More", show=False),
        Binding("shift+left", f"nudge({-BIG_STEP})", "Much less", show=False),
        Binding("shift+right", f"nudge({BIG_STEP})", "Much more", show=False),
        Binding("0", "put(0)", "Zero", show=False),
        Binding("delete", "remove", "Remove"),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "steer-slider--name", "steer-slider--value", "steer-slider--range",
        "steer-slider--pole", "steer-slider--track", "steer-slider--fill",
        "steer-slider--knob",
    }  # fmt: skip

    value: reactive[float] = reactive(0.0)

    class Changed(Message):
        """The user moved the slider of vector `key` to `value`."""

        def __init__(self, slider: SteerSlider, value: float) -> None:
            super().__init__()
            self.slider = slider
            self.key = slider.key
            self.value = value

        @property
        def control(self) -> SteerSlider:
            return self.slider

    class RemoveAsked(Message):
        """The user asked to delete the vector of slider `key` (Delete on the slider)."""

        def __init__(self, slider: SteerSlider) -> None:
            super().__init__()
            self.slider = slider
            self.key = slider.key

    def __init__(
        self, key: str, poles: tuple[str, str], strengths: tuple[float, float], value: float = 0.0
    ) -> None:
        """`poles`: (positive, negative) labels; `strengths`: the calibrated strength of each
        side as a size (at +1, at -1)."""
        super().__init__(classes="steer-slider")
        self.key = key
        self.poles = poles
        self.strengths = strengths
        self.set_reactive(SteerSlider.value, clamp(value))

    # -- moving -------------------------------------------------------------------------------

    def move_to(self, value: float) -> None:
        """Put the slider at `value` as the user did: posts `Changed` if it moved."""
        value = clamp(value)
        if value != self.value:
            self.value = value
            self.post_message(self.Changed(self, value))

    def action_nudge(self, delta: float) -> None:
        self.move_to(self.value + delta)

    def action_put(self, value: float) -> None:
        self.move_to(value)

    def action_remove(self) -> None:
        self.post_message(self.RemoveAsked(self))

    def _bar(self) -> tuple[str, str, int, int]:
        """(negative label, positive label, where the bar starts, its width) on line 2."""
        positive, negative = (clip(p, POLE_WIDTH) for p in self.poles)
        width = self.content_region.width or 30
        bar = max(MIN_BAR, width - len(negative) - len(positive) - 2)
        return negative, positive, len(negative) + 1, bar

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y != 1:
            return
        _, _, start, bar = self._bar()
        if start <= offset.x < start + bar:
            self.move_to(round(((offset.x - start) / (bar - 1) * 2 - 1) / STEP) * STEP)

    # -- drawing ------------------------------------------------------------------------------

    def render(self) -> Content:
        style = lambda part: self.get_visual_style(f"steer-slider--{part}", partial=True)  # noqa: E731
        negative, positive, _, bar = self._bar()
        width = self.content_region.width or 30
        head = Content.assemble(
            (self.key, style("name")), " ", (signed(self.value), style("value"))
        )
        scale = strength_range(self.strengths[1], self.strengths[0])
        gap = max(1, width - head.cell_length - len(scale))
        head = Content.assemble(head, " " * gap, (scale, style("range")))
        centre = bar // 2
        knob = round((self.value + 1) / 2 * (bar - 1))
        low, high = sorted((centre, knob))
        cells = []
        for i in range(bar):
            if i == knob:
                cells.append(("●", style("knob")))
            elif low <= i <= high and knob != centre:
                cells.append(("━", style("fill")))
            else:
                cells.append(("┼" if i == centre else "─", style("track")))
        line = Content.assemble(
            (negative, style("pole")), " ", *cells, " ", (positive, style("pole"))
        )
        return Content("\n").join([head, line])
