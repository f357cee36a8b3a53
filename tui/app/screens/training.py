"""Training: progress, speed, a live loss chart and samples; cancel/resume; export; open chat.

Training runs in a thread worker through `core.pipeline`; its events reach the screen with
`call_from_thread`. Cancelling sets the pipeline's event: the trainer finishes its step, writes
a checkpoint, and the run can be resumed here or with `convsim train --resume`."""

from __future__ import annotations

import threading
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Label, ProgressBar, RichLog, Select, Static

from convsim.tui.app.widgets import LossChart, short_path
from convsim.tui.cli.common import duration

EXPORTS = [
    ("Adapter only (LoRA .gguf)", "adapter"),
    ("Merged, q8_0 (best)", "q8_0"),
    ("Merged, q4_k_m (smallest)", "q4_k_m"),
    ("Merged, f16", "f16"),
]


class TrainingScreen(Screen[None]):
    """A new run (`chat_id`, `person`, ...) or `resume=MODEL_ID` of a stopped one."""

    BINDINGS = [
        Binding("ctrl+x", "cancel", "Stop"),
        Binding("escape", "leave", "Home"),
    ]

    def __init__(
        self,
        chat_id: int | None = None,
        person: str | None = None,
        dataset_id: int | None = None,
        base: str | None = None,
        overrides: dict[str, Any] | None = None,
        resume: str | None = None,
    ) -> None:
        super().__init__()
        self.job = {
            "chat_id": chat_id, "person": person, "dataset_id": dataset_id, "base": base,
            "overrides": overrides or {},
        }  # fmt: skip
        self.model_id = resume
        self.cancel = threading.Event()
        self.state = "starting"  # starting, training, cancelled, done, failed
        self.last_event: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="training"):
            yield Static("Preparing…", id="train-title")
            yield ProgressBar(total=100, show_eta=False, id="progress")
            yield Static("", id="train-stats")
            yield LossChart(id="loss")
            yield Label("Latest samples", classes="section-title")
            yield RichLog(id="samples", wrap=True, markup=False, max_lines=200)
            with Horizontal(id="train-actions", classes="row"):
                yield Button("Stop", variant="error", id="stop")
                yield Button("Resume", variant="primary", id="resume")
                yield Select(EXPORTS, value="q8_0", allow_blank=False, id="export-kind")
                yield Button("Export", id="export")
                yield Button("Open chat", variant="success", id="open-chat")
        yield Footer()

    def on_mount(self) -> None:
        self._set_state("starting")
        self._start(resume=self.model_id is not None)

    def on_unmount(self) -> None:
        # Quitting the app mid-run: stop at the next step with a checkpoint, so the worker
        # thread ends and the run can be resumed later.
        self.cancel.set()

    def _set_state(self, state: str) -> None:
        self.state = state
        running = state in ("starting", "training")
        self.query_one("#stop").display = running
        self.query_one("#resume").display = state == "cancelled"
        for widget in ("#export-kind", "#export", "#open-chat"):
            self.query_one(widget).display = state == "done"

    # -- running ------------------------------------------------------------------------------

    def _start(self, resume: bool) -> None:
        from convsim.core import training

        self.cancel.clear()
        app = self.app

        def tell(callback: Any, *args: Any) -> None:
            if not app.tell(callback, *args):  # type: ignore[attr-defined]
                self.cancel.set()  # the app has quit: stop at the next step, with a checkpoint

        def on_event(event: Any) -> None:
            tell(self._event, event)

        def on_base(event: Any) -> None:
            tell(self._title, event.message + "…")

        def run() -> Any:
            with app.workspace() as ws:  # type: ignore[attr-defined]
                if resume:
                    return training.resume_training(
                        ws, self.model_id, on_event=on_event, cancel=self.cancel, progress=on_base
                    )
                return training.train_person(
                    ws, self.job["chat_id"], self.job["person"], base=self.job["base"],
                    dataset_id=self.job["dataset_id"], overrides=self.job["overrides"],
                    on_event=on_event, cancel=self.cancel, progress=on_base,
                )  # fmt: skip

        self.app.in_thread(  # type: ignore[attr-defined]
            "Training failed", run, self._finished, lambda exc: self._set_state("failed"),
            group="train",
        )  # fmt: skip

    def _title(self, text: str) -> None:
        self.query_one("#train-title", Static).update(text)

    def _event(self, e: Any) -> None:
        self.last_event = e
        if e.kind == "start":
            self._set_state("training")
            self._title(f"Training: {e.message}")
        progress = self.query_one("#progress", ProgressBar)
        progress.update(total=e.total_steps, progress=e.step)
        if e.kind == "step":
            self.query_one("#train-stats", Static).update(
                f"step {e.step}/{e.total_steps}   epoch {e.epoch:.2f}   loss {e.loss:.3f}   "
                f"{e.tokens_per_s or 0:.0f} tokens/s   ETA {duration(e.eta_s)}"
            )
        if e.kind in ("step", "eval"):
            self.query_one(LossChart).add(
                e.step, e.loss if e.kind == "step" else None, e.val_loss, e.total_steps
            )
        if e.kind == "eval":
            log = self.query_one("#samples", RichLog)
            log.write(f"── step {e.step}: validation loss {e.val_loss:.3f}")
            for sample in e.samples:
                log.write(sample)

    def _finished(self, outcome: Any) -> None:
        self.model_id = outcome.model.id
        if outcome.result.cancelled:
            self._set_state("cancelled")
            self._title(f"Stopped at step {outcome.result.steps}: {self.model_id} can resume.")
            return
        self._set_state("done")
        metrics = outcome.result.metrics
        val = metrics.get("val_loss")
        val_text = f", validation loss {val:.3f}" if val is not None else ""
        self._title(f"Done: persona [b]{self.model_id}[/b]{val_text}.")
        self.notify(f"{self.model_id} is ready: open a chat or export it.", title="Training done")
        self.query_one("#open-chat", Button).focus()

    # -- actions ------------------------------------------------------------------------------

    @on(Button.Pressed, "#stop")
    def action_cancel(self) -> None:
        if self.state in ("starting", "training"):
            self.cancel.set()
            self._title("Stopping after this step and saving a checkpoint…")

    @on(Button.Pressed, "#resume")
    def _resume(self) -> None:
        if self.state == "cancelled":
            self._set_state("starting")
            self._title(f"Resuming {self.model_id}…")
            self._start(resume=True)

    @on(Button.Pressed, "#export")
    def _export(self) -> None:
        from convsim.core import training

        kind = self.query_one("#export-kind", Select).value
        model_id = self.model_id

        def run() -> Any:
            with self.app.workspace() as ws:  # type: ignore[attr-defined]
                if kind == "adapter":
                    return training.adapter_gguf(ws, model_id)
                return training.export_model(ws, model_id, str(kind))

        self.notify(f"Exporting {model_id} ({kind})…")
        self.app.in_thread(  # type: ignore[attr-defined]
            "Export failed",
            run,
            lambda path: self.notify(f"Written: {short_path(path)}", title="Exported", timeout=15),
        )

    @on(Button.Pressed, "#open-chat")
    def _open_chat(self) -> None:
        from convsim.tui.app.screens.chat import ChatScreen, persona_from_model

        model_id = self.model_id
        self.app.in_thread(  # type: ignore[attr-defined]
            f"Could not open {model_id}",
            lambda: persona_from_model(self.app, model_id),  # type: ignore[arg-type]
            lambda persona: self.app.switch_screen(ChatScreen(persona)),
        )

    def action_leave(self) -> None:
        if self.state in ("starting", "training"):
            self.notify("Training is running: Ctrl+X stops it (a checkpoint is kept), then Escape.")
            return
        self.app.pop_screen()
