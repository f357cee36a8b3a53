"""The import wizard's layout: the step bar and the four step panes (widgets and ids only;
`wizard.py` gives them behaviour, `convsim.tcss` gives them their look)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import (
    Button,
    Checkbox,
    ContentSwitcher,
    DirectoryTree,
    Input,
    Label,
    Select,
    Static,
)

from convsim.tui.app.widgets import PathSuggester

STEPS = ("file", "people", "dataset", "settings")
STEP_NAMES = ("1 File", "2 People", "3 Dataset", "4 Train")
DEFAULT_BASE = "default"
CUSTOM_BASE = "custom"


def wizard_steps() -> ComposeResult:
    """The step bar, then one ContentSwitcher pane per step (called from `compose`)."""
    with Horizontal(id="steps"):
        for i, (step, name) in enumerate(zip(STEPS, STEP_NAMES, strict=True)):
            if i:
                yield Label("›", classes="step-sep")
            yield Label(name, id=f"step-{step}", classes="step")
    with ContentSwitcher(initial="file", id="wizard"):
        with Vertical(id="file"):
            yield Label("Chat export to import (file, folder or .zip):")
            yield Input(
                placeholder="~/Downloads/WhatsApp Chat with Sam.zip",
                suggester=PathSuggester(),
                id="path",
            )
            with Horizontal(classes="row"):
                yield Label("Date order:", classes="inline")
                yield Select(
                    [("day/month", "dmy"), ("month/day", "mdy")],
                    prompt="auto",
                    id="date-order",
                )
                yield Button("Import", variant="primary", id="do-import")
            yield Static("", id="detected")
            yield DirectoryTree(Path.home(), id="tree")
        # Each later step: a scrolling body, then its button, always in view below it.
        with Vertical(id="people"):
            with VerticalScroll(classes="step-body"):
                yield Select([], prompt="(one chat)", id="which-chat", classes="-hidden")
                yield Static("", id="report")
                with Horizontal(classes="row"):
                    yield Label("Who are you?", classes="inline")
                    yield Select([], prompt="(nobody here)", id="me")
                with Horizontal(classes="row"):
                    yield Label("Whom to simulate?", classes="inline")
                    yield Select([], prompt="pick a person", allow_blank=True, id="target")
                yield Label("Speaker tags (how names appear to the model):")
                yield Vertical(id="tags")
                yield Checkbox("Mask phone numbers, e-mails, URLs and card numbers", id="scrub")
                yield Checkbox("Keep media/sticker placeholders", value=True, id="media")
            yield Button("Preview dataset", variant="primary", id="do-dataset")
        with Vertical(id="dataset"):
            yield Static("", id="dataset-stats")
            with VerticalScroll(classes="step-body"):
                yield Static("", id="dataset-samples", classes="sample")
            yield Button("Training settings", variant="primary", id="to-settings")
        with Vertical(id="settings"):
            with VerticalScroll(classes="step-body"):
                with Horizontal(classes="row"):
                    yield Label("Base model:", classes="inline")
                    yield Select(
                        [("Gemma 3 270M (default, bundled)", DEFAULT_BASE)],
                        value=DEFAULT_BASE,
                        allow_blank=False,
                        id="base",
                    )
                yield Input(
                    placeholder="path to a .gguf base model", id="base-path", classes="-hidden"
                )
                with Horizontal(classes="row"):
                    yield Label("Epochs:", classes="inline")
                    yield Input("", placeholder="auto", id="epochs", type="number")
                    yield Label("Context tokens:", classes="inline")
                    yield Select(
                        [("256", 256), ("512", 512)],
                        value=512,
                        allow_blank=False,
                        id="seq-len",
                    )
                yield Static("", id="estimate")
            yield Button("Train", variant="success", id="do-train")
