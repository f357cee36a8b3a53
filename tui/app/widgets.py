"""Small widgets the screens share: path completion, ghost-text input, a loss chart, a yes/no
dialog.

Colours come from the stylesheet: the loss chart draws with its component classes, so it
follows the light and dark themes like everything else."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from convsim.tui.cli.common import clip

__all__ = ["ConfirmDialog", "GhostInput", "LossChart", "PathSuggester", "clip", "short_path"]


class PathSuggester(Suggester):
    """Completes the last component of a path from what is on disk (→ accepts)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        # Listing a folder is disk I/O (a network drive can take seconds): not on the UI thread.
        return await asyncio.to_thread(self._complete, value)

    @staticmethod
    def _complete(value: str) -> str | None:
        if not value:
            return None
        folder, stem = os.path.split(os.path.expanduser(value))
        try:
            names = sorted(os.listdir(folder or os.curdir))
        except OSError:
            return None
        for name in names:
            if name.startswith(stem) and name != stem and not name.startswith("."):
                slash = os.sep if os.path.isdir(os.path.join(folder, name)) else ""
                return value + name[len(stem) :] + slash
        return None


class GhostInput(Input):
    """An Input that shows a suggested continuation in dim text after the cursor.

    The owner sets it with `show_ghost(for_value, completion)` from a worker's result; a ghost
    computed for an older value is ignored, and any edit clears it. Tab accepts it (or moves
    focus when there is none), Escape dismisses it."""

    BINDINGS = [
        Binding("tab", "accept_ghost", "Accept", show=False),
        Binding("escape", "dismiss_ghost", "Dismiss", show=False),
    ]

    @property
    def ghost(self) -> str:
        return self._suggestion[len(self.value) :] if self._suggestion else ""

    def show_ghost(self, for_value: str, completion: str) -> bool:
        if for_value != self.value or not completion or not self.has_focus:
            return False
        self._suggestion = for_value + completion
        return True

    def action_accept_ghost(self) -> None:
        if not self.ghost:
            raise SkipAction()  # Tab keeps its usual meaning: the next widget
        self.value = self._suggestion
        self.cursor_position = len(self.value)

    def action_dismiss_ghost(self) -> None:
        if not self.ghost:
            raise SkipAction()  # the screen's Escape (stop a reply) applies instead
        self.clear_ghost()

    def clear_ghost(self) -> None:
        self._suggestion = ""
        self.refresh()


_BLOCKS = " ▁▂▃▄▅▆▇█"


class LossChart(Widget):
    """Training loss per step as columns of block characters, validation loss as ● marks,
    on a shared vertical scale labelled with its range."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "loss-chart--label",
        "loss-chart--train",
        "loss-chart--validation",
    }
    DEFAULT_CSS = "LossChart { height: 8; }"  # its colours: convsim.tcss

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.train: list[tuple[int, float]] = []
        self.validation: list[tuple[int, float]] = []
        self.total_steps = 1

    def add(self, step: int, loss: float | None, val_loss: float | None, total: int) -> None:
        self.total_steps = max(1, total)
        if loss is not None:
            self.train.append((step, loss))
        if val_loss is not None:
            self.validation.append((step, val_loss))
        self.refresh()

    def restart(
        self,
        train: Sequence[tuple[int, float]],
        validation: Sequence[tuple[int, float]],
        total: int,
    ) -> None:
        """Show exactly these points: the steps a resumed run has already done."""
        self.train, self.validation = list(train), list(validation)
        self.total_steps = max(1, total)
        self.refresh()

    def render(self) -> Text:
        dim = self.get_component_rich_style("loss-chart--label")
        styles = {
            "train": self.get_component_rich_style("loss-chart--train"),
            "val": self.get_component_rich_style("loss-chart--validation"),
        }
        height = max(2, self.size.height - 1)
        label_width = 7
        width = max(4, self.size.width - label_width)
        values = [v for _, v in self.train] + [v for _, v in self.validation]
        if not values:
            return Text("waiting for the first step…", style=dim)
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        columns = _bucket(self.train, self.total_steps, width)
        # A validation mark goes in the last column of its step.
        val_columns = {
            min(width - 1, step * width // self.total_steps - 1): v for step, v in self.validation
        }
        text = Text()
        for row in range(height):  # top row first
            level_top = high - span * row / height
            label = f"{level_top:6.2f} " if row in (0, height - 1) else " " * label_width
            text.append(label, style=dim)
            for x in range(width):
                char, kind = _cell(columns[x], val_columns.get(x), row, height, low, span)
                text.append(char, style=styles.get(kind, Style()))
            text.append("\n")
        text.append(" " * label_width)
        text.append("█ train  ", style=styles["train"])
        text.append("● validation", style=styles["val"])
        text.append(f"   steps 1–{self.total_steps}", style=dim)
        return text


def _bucket(points: Sequence[tuple[int, float]], total: int, width: int) -> list[float | None]:
    """One value per column for steps 1..`total` spread over `width` columns: the mean of the
    steps a column covers (a step covers several columns when there are fewer steps than
    columns, so the chart has no gaps)."""
    by_step = dict(points)
    columns: list[float | None] = []
    for x in range(width):
        first = x * total // width + 1
        last = max(first, (x + 1) * total // width)
        values = [by_step[s] for s in range(first, last + 1) if s in by_step]
        columns.append(sum(values) / len(values) if values else None)
    return columns


def _cell(
    value: float | None, val: float | None, row: int, height: int, low: float, span: float
) -> tuple[str, str]:
    """The character at (`row` from the top) for one column, and what it shows: "train",
    "val" or "" (nothing)."""
    bottom = height - 1 - row  # rows from the bottom
    if val is not None and int((val - low) / span * (height - 1) + 0.5) == bottom:
        return "●", "val"
    if value is None:
        return " ", ""
    filled = (value - low) / span * (height - 1) + 1  # in rows, at least a sliver
    if filled >= bottom + 1:
        return "█", "train"
    if filled > bottom:
        return _BLOCKS[int((filled - bottom) * 8)], "train"
    return " ", ""


def short_path(path: Path | str) -> str:
    """`path` with the home folder shown as ~."""
    text = str(path)
    home = str(Path.home())
    return "~" + text[len(home) :] if text.startswith(home + os.sep) else text


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; dismissed with True only on the confirm button."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel")]

    def __init__(self, title: str, body: str, confirm: str) -> None:
        super().__init__()
        self.title_text, self.body, self.confirm = title, body, confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.body, markup=False, id="confirm-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.confirm, variant="error", id="confirm-yes")
                yield Button("Cancel", id="confirm-no")

    @on(Button.Pressed, "#confirm-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def _no(self) -> None:
        self.dismiss(False)
