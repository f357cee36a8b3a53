"""The chat screen's parts: message bubbles, the sampling panel and its two dialogs.

Messages, names and file names are the user's text: they are drawn as plain text, never read
as markup. Colours come from the stylesheet (component classes), so they follow the theme."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, OptionList

from convsim.core.inference.sampling import WHOLE, sampling_problem


class Bubble(Widget):
    """One message: the speaker's name, then the text, coloured by who sent it. The persona's
    messages take focus (click or Tab), so that F9 can ask why one of them was said. `mark`:
    the user's feedback on it (👍, 👎 or ✎), shown at its end ("" for none)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"bubble--speaker"}

    def __init__(self, speaker: str, text: str, mine: bool) -> None:
        super().__init__(classes="bubble " + ("mine" if mine else "theirs"))
        self.speaker = speaker
        self.text = text
        self.mark = ""
        self.can_focus = not mine

    def set_mark(self, mark: str) -> None:
        if mark != self.mark:
            self.mark = mark
            self.refresh(layout=True)

    def append(self, piece: str) -> None:
        self.text += piece
        self.refresh(layout=True)

    def set_text(self, text: str) -> None:
        self.text = text
        self.refresh(layout=True)

    def render(self) -> Content:
        # Built at each render, so a theme change recolours the name too.
        name_style = self.get_visual_style("bubble--speaker", partial=True)
        content = Content.assemble((self.speaker, name_style), "  ", self.text or "…")
        return (content + f"  {self.mark}") if self.mark else content


class SamplingPanel(Vertical):
    """One input per `Sampling` field; invalid values are refused with a warning."""

    def __init__(self, sampling: Any) -> None:
        super().__init__(id="sampling")
        self.sampling = sampling

    def compose(self) -> ComposeResult:
        yield Label("Sampling", classes="section-title")
        for f in fields(self.sampling):
            value = getattr(self.sampling, f.name)
            with Horizontal(classes="sampling-row"):
                yield Label(f.name.replace("_", " "))
                yield Input(
                    "" if value is None else str(value),
                    placeholder="random" if f.name == "seed" else "",
                    name=f.name,
                    classes="sampling-field",
                )

    @on(Input.Changed, ".sampling-field")
    def _changed(self, event: Input.Changed) -> None:
        name = event.input.name or ""
        text = event.value.strip()
        value: Any = None  # empty: for the seed, a fresh random one each time
        if text and name in WHOLE:
            try:
                value = int(text)
            except ValueError:
                value = _float_or_text(text)  # "must be a whole number", or not a number
        elif text:
            value = _float_or_text(text)  # a long run of digits is inf: "must be a number"
        if name == "seed" and value == -1:
            value = None  # llama.cpp's word for a random seed, as on the command line
        problem = "must be a number" if isinstance(value, str) else sampling_problem(name, value)
        event.input.set_class(problem is not None, "-invalid")
        event.input.tooltip = f"{name.replace('_', ' ')} {problem}" if problem else None
        if problem is not None:
            return  # the last good value stays in use
        self.sampling = replace(self.sampling, **{name: value})


def _float_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


class EditDialog(ModalScreen[str | None]):
    """Rewrite the persona's latest message (the conversation continues from your version)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Edit the reply (Enter saves, Esc cancels)", classes="dialog-title")
            yield Input(self.text, id="edit")

    @on(Input.Submitted, "#edit")
    def _save(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class OpenDialog(ModalScreen[Path | None]):
    """Pick a saved transcript, newest first."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, files: list[Path]) -> None:
        super().__init__()
        self.files = files

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Open a saved conversation", classes="dialog-title")
            # markup=False: a transcript is named after its persona, which the user named.
            yield OptionList(*(f.name for f in self.files), markup=False, id="files")
            yield Button("Cancel", id="cancel-open")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.files[event.option_index])

    @on(Button.Pressed, "#cancel-open")
    def _cancel(self) -> None:
        self.dismiss(None)
