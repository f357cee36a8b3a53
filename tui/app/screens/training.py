"""Training: progress, speed, a live loss chart and samples; cancel/resume; export; open chat.

Training runs in an `@work` thread worker through `core.training`; its events reach the screen
as `TrainProgress` messages and its outcome as `TrainingEnded`. Cancelling sets the job's event:
the trainer finishes its step, writes a checkpoint, and the run can be resumed here or with
`convsim train --resume`. Which buttons show follows `state` through CSS classes. A screen built
with `autostart=False` runs nothing: it only shows the events it is sent (for snapshots)."""

from __future__ import annotations

import threading
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Label, ProgressBar, RichLog, Select, Static
from textual.worker import get_current_worker

from convsim.convert import QUANT_KINDS
from convsim.core.training.memory import peak_memory_text
from convsim.tui.app.messages import (
    BaseProgress,
    Exported,
    JobFailed,
    PersonaReady,
    TrainingEnded,
    TrainProgress,
    post,
    reporting,
)
from convsim.tui.app.widgets import LossChart, short_path
from convsim.tui.cli.common import duration

EXPORTS = [
    ("Adapter only (LoRA .gguf)", "adapter"),
    *((f"Merged, {kind} ({note})", kind) for kind, note in QUANT_KINDS.items()),
]
STATES = ("starting", "training", "cancelled", "done", "failed")


class TrainingScreen(Screen[None]):
    """A new run (`chat_id`, `person`, ...) or `resume=MODEL_ID` of a stopped one."""

    BINDINGS = [
        Binding("ctrl+x", "cancel", "Stop"),
        Binding("escape", "leave", "Home"),
    ]

    state = reactive("starting", init=False)
    """starting, training, cancelled, done or failed; the screen carries it as a class."""

    def __init__(
        self,
        chat_id: int | None = None,
        person: str | None = None,
        dataset_id: int | None = None,
        base: str | None = None,
        overrides: dict[str, Any] | None = None,
        resume: str | None = None,
        autostart: bool = True,
    ) -> None:
        super().__init__(classes="-starting")
        self.job: dict[str, Any] = {
            "chat_id": chat_id, "person": person, "dataset_id": dataset_id, "base": base,
            "overrides": overrides or {},
        }  # fmt: skip
        self.model_id = resume
        self.autostart = autostart
        self.cancel = threading.Event()
        self.last_event: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="training"):
            yield Static("Preparing…", id="train-title", markup=False)
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
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.autostart:
            self._start(resume=self.model_id is not None)

    def _start(self, resume: bool) -> None:
        self.cancel.clear()  # here, not in the worker: a Stop pressed meanwhile must count
        self._train(resume)

    def on_unmount(self) -> None:
        # Quitting the app mid-run: stop at the next step with a checkpoint, so the worker
        # thread ends and the run can be resumed later.
        self.cancel.set()

    def watch_state(self, old: str, new: str) -> None:
        self.remove_class(f"-{old}")
        self.add_class(f"-{new}")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Stop is offered only while something runs."""
        return action != "cancel" or self.state in ("starting", "training")

    # -- running ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="train",
          description="train a persona")  # fmt: skip
    def _train(self, resume: bool) -> None:
        from convsim.core import training

        def tell(message: Any) -> None:
            if not post(self, message):
                self.cancel.set()  # the screen or the app is gone: stop, with a checkpoint

        def on_event(event: Any) -> None:
            tell(TrainProgress(event))

        def on_base(event: Any) -> None:
            tell(BaseProgress(event.message + "…"))

        job = self.job
        app: Any = self.app
        with reporting(self, "Training failed", "train"), app.workspace() as ws:
            if resume:
                assert self.model_id is not None  # a run to resume has an id
                outcome = training.resume_training(
                    ws, self.model_id, on_event=on_event, cancel=self.cancel, progress=on_base
                )
            else:
                outcome = training.train_person(
                    ws, job["chat_id"], job["person"], base=job["base"],
                    dataset_id=job["dataset_id"], overrides=job["overrides"],
                    on_event=on_event, cancel=self.cancel, progress=on_base,
                )  # fmt: skip
            tell(TrainingEnded(outcome))

    def _title(self, text: str | Content) -> None:
        self.query_one("#train-title", Static).update(text)

    @on(BaseProgress)
    def _base_progress(self, message: BaseProgress) -> None:
        self._title(message.text)

    @on(TrainProgress)
    def _event(self, message: TrainProgress) -> None:
        e = self.last_event = message.event
        if e.kind == "start":
            self.state = "training"
            self._title(f"Training: {e.message}")
            self.query_one(LossChart).restart(e.history, e.val_history, e.total_steps)
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
            log.write(Text(f"── step {e.step}: validation loss {e.val_loss:.3f}"))
            for sample in e.samples:
                log.write(Text(sample))

    @on(TrainingEnded)
    def _finished(self, message: TrainingEnded) -> None:
        outcome = message.outcome
        self.model_id = outcome.model.id
        if outcome.result.cancelled:
            self.state = "cancelled"
            self._title(f"Stopped at step {outcome.result.steps}: {self.model_id} can resume.")
            return
        self.state = "done"
        val = outcome.result.metrics.get("val_loss")
        val_text = f", validation loss {val:.3f}" if val is not None else ""
        peak = peak_memory_text(outcome.result.metrics)
        val_text += f", {peak}" if peak else ""
        self._title(
            Content.from_markup(
                "Done: persona [b]$model[/b]$val.", model=self.model_id, val=val_text
            )
        )
        self.notify(
            f"{self.model_id} is ready: open a chat or export it.",
            title="Training done",
            markup=False,
        )
        self.query_one("#open-chat", Button).focus()

    @on(JobFailed)
    def _failed(self, message: JobFailed) -> None:
        if message.group == "train":
            self.state = "failed"
            self._title(Content(f"Training failed: {message.error}. Escape goes back."))

    # -- actions ------------------------------------------------------------------------------

    @on(Button.Pressed, "#stop")
    def action_cancel(self) -> None:
        if self.state in ("starting", "training"):
            self.cancel.set()
            self._title("Stopping after this step and saving a checkpoint…")

    @on(Button.Pressed, "#resume")
    def _resume(self) -> None:
        if self.state == "cancelled":
            self.state = "starting"
            self._title(f"Resuming {self.model_id}…")
            self._start(resume=True)

    @on(Button.Pressed, "#export")
    def _export(self) -> None:
        kind = str(self.query_one("#export-kind", Select).value)
        self.notify(f"Exporting {self.model_id} ({kind})…", markup=False)
        self._run_export(self.model_id, kind)

    @work(thread=True, exit_on_error=False, group="export", description="export a persona")
    def _run_export(self, model_id: str, kind: str) -> None:
        from convsim.core import training

        app: Any = self.app
        with reporting(self, "Export failed", "export"), app.workspace() as ws:
            if kind == "adapter":
                post(self, Exported(training.adapter_gguf(ws, model_id)))
            else:
                post(self, Exported(training.export_model(ws, model_id, kind)))

    @on(Exported)
    def _exported(self, message: Exported) -> None:
        self.notify(f"Written: {short_path(message.path)}", title="Exported", timeout=15,
                    markup=False)  # fmt: skip

    @on(Button.Pressed, "#open-chat")
    def _open_chat(self) -> None:
        self._load_persona(self.model_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="open",
          description="load a persona")  # fmt: skip
    def _load_persona(self, model_id: str) -> None:
        from convsim.tui.app.screens.chat_persona import persona_from_model

        with reporting(self, f"Could not open {model_id}", "open"):
            persona = persona_from_model(self.app, model_id)
            # A newer request replaced this one, or the app has quit: nobody wants this engine.
            if get_current_worker().is_cancelled or not post(self, PersonaReady(persona)):
                persona.engine.close()

    @on(PersonaReady)
    def _persona_ready(self, message: PersonaReady) -> None:
        from convsim.tui.app.screens.chat import ChatScreen

        self.app.switch_screen(ChatScreen(message.persona))

    def action_leave(self) -> None:
        if self.state in ("starting", "training"):
            self.notify("Training is running: Ctrl+X stops it (a checkpoint is kept), then Escape.")
            return
        self.app.pop_screen()
