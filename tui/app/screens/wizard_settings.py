"""The import wizard's last step, training settings: the base model, the length of training
and an estimate of its time, then Train. A base class of `ImportWizard` (Textual finds `@on`
handlers on screen classes), which fills in `dataset` and `report` and shows this step."""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text
from textual import on, work
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Input, Select, Static

from convsim.tui.app.messages import BasesFound, post, reporting
from convsim.tui.app.screens.wizard_info import estimate_text, find_bases
from convsim.tui.app.screens.wizard_layout import CUSTOM_BASE, DEFAULT_BASE


class SettingsStep(Screen[None]):
    """Step 4 of the wizard. `dataset` is the built dataset (None until then), `report` the
    chat's import report; the base list and the machine's speed come from a worker."""

    dataset: Any = None
    report: Any = None
    rate: float | None = None
    device = "cpu"
    bf16 = False

    def _show_step(self, step: str) -> None:
        raise NotImplementedError

    @work(thread=True, exclusive=True, exit_on_error=False, group="bases",
          description="list base models")  # fmt: skip
    def _find_bases(self) -> None:
        app: Any = self.app
        with reporting(self, "Could not list base models", "bases"), app.workspace() as ws:
            post(self, BasesFound(*find_bases(ws)))

    @on(BasesFound)
    def _show_bases(self, message: BasesFound) -> None:
        self.rate, self.device, self.bf16 = message.rate, message.device, message.bf16
        options: list[tuple[Any, str]] = [("Gemma 3 270M (default, bundled)", DEFAULT_BASE)]
        options += [(Text(f"{f.name}  ({f.source})"), str(f.path)) for f in message.found]
        options.append(("Another .gguf file…", CUSTOM_BASE))
        self.query_one("#base", Select).set_options(options)
        self.query_one("#base", Select).value = DEFAULT_BASE
        self._update_estimate()

    @on(Select.Changed, "#base")
    def _base_changed(self, event: Select.Changed) -> None:
        self.query_one("#base-path").set_class(event.value != CUSTOM_BASE, "-hidden")
        self._update_estimate()

    @on(Input.Changed, "#epochs")
    @on(Select.Changed, "#seq-len")
    def _epochs_changed(self) -> None:
        self._update_estimate()

    def _epochs(self) -> float | None:
        """None (the field left empty): the recipe picks the length from the data size."""
        text = self.query_one("#epochs", Input).value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise ValueError("epochs must be a number, like 1 or 2.5") from None
        if not 0 < value <= 50:
            raise ValueError("epochs must be between 0 and 50")
        return value

    def _update_estimate(self) -> None:
        if self.dataset is None:
            return
        estimate = self.query_one("#estimate", Static)
        try:
            epochs = self._epochs()
        except ValueError as exc:
            estimate.update(Content(str(exc)))
            estimate.add_class("-failure")
            return
        estimate.remove_class("-failure")
        stats = self.dataset.stats  # datasets built before the fold have no folded count
        tokens = stats.get("train_token_folded", stats["train_token_estimate"])
        default = self.query_one("#base", Select).value == DEFAULT_BASE
        seq_len = int(self.query_one("#seq-len", Select).value)  # type: ignore[arg-type]
        estimate.update(
            estimate_text(self.device, tokens, epochs, seq_len, self.rate, default, self.bf16)
        )

    def _base_spec(self) -> str | None:
        base = self.query_one("#base", Select).value
        if base == CUSTOM_BASE:
            path = os.path.expanduser(self.query_one("#base-path", Input).value.strip())
            if not path:
                raise ValueError("type the path of a .gguf base model")
            return path
        return None if base == DEFAULT_BASE else str(base)

    @on(Button.Pressed, "#do-train")
    def _train(self) -> None:
        from convsim.tui.app.screens.training import TrainingScreen

        if self.dataset is None:  # not built yet, or built for other choices
            self._show_step("dataset")
            return
        try:
            epochs, base = self._epochs(), self._base_spec()
        except ValueError as exc:
            self.notify(str(exc), severity="warning", markup=False)
            return
        seq_len = self.query_one("#seq-len", Select).value
        overrides = {"epochs": epochs, "seq_len": seq_len}
        self.app.switch_screen(
            TrainingScreen(
                chat_id=self.report.chat_id,
                person=self.dataset.target,
                dataset_id=self.dataset.id,
                base=base,
                overrides=overrides,
            )
        )
