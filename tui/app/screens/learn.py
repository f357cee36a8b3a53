"""Learn: one persona keeps learning. An update ("sleep", `core.learning.learn`) continues the
version the chat uses on the feedback and the chat's new messages, mixed with replay of what it
learnt before, then measures forgetting on every period it learnt and promotes the new version
only within the limits.

On opening (and on coming back from the feedback view) a worker reads the feedback no update
has learnt yet and the versions (`LearnLoaded`). Start runs the update in a worker: its events
come as `LearnProgress` (stage, progress bar, the training loss on a `LossChart`), its end as
`LearnEnded`. Stop sets the job's event: the update stops with a checkpoint (the chat keeps the
previous version) and Resume continues it (`learn(resume=True)`). A finished update shows the
forgetting table and the verdict; one that was not promoted can be kept anyway, and Rollback
makes the highlighted version the one the chat uses (both `versions.use_version`, in a worker,
`VersionUsed`). Nothing to learn is a line on the screen, not an error. Which buttons show
follows `state` (a class on the screen). A screen built with `autoload=False` reads nothing:
it only shows the messages it is sent (for snapshots).

The judge (part 6 of learning): `c` opens the constitution dialog (`constitution.py`), and the
"Use the judge" switch (`j`) makes the next Start ask the configured endpoint for preference
pairs (`LearnSettings(judge=True)`). The switch is enabled only with an endpoint (`JudgeLoaded`,
read with the rest); without one a hint says how to configure it, and nothing goes online. A
judge that fails, or has no constitution to judge by, ends the Start as a line on the screen
(`LearnRefused`), never half an update: the chat keeps its version.
"""

from __future__ import annotations

import threading
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, ProgressBar, Static, Switch

from convsim.tui.app.messages import (
    BaseProgress,
    JobFailed,
    LearnEnded,
    LearnLoaded,
    LearnProgress,
    LearnRefused,
    post,
    reporting,
)
from convsim.tui.app.screens.learn_actions import NO_ENDPOINT, LearnActions
from convsim.tui.app.screens.learn_widgets import (
    FORGETTING_COLUMNS,
    VERSION_COLUMNS,
    counts_line,
    fill,
    forgetting_rows,
    learnt_line,
    stage_line,
    verdict,
    version_rows,
)
from convsim.tui.app.widgets import LossChart
from convsim.tui.cli.common import duration

STATES = ("idle", "running", "cancelled", "done", "failed")
READY = "Start an update: minutes on a CPU. The chat keeps its version until the update is kept."
FORGETTING = "Forgetting, on held-out messages of every period learnt (before → after):"
NO_RULES = "The judge needs a constitution to judge by: press c to write one, or turn it off."


class LearnScreen(LearnActions, Screen[None]):
    """Updates of persona `model_id` (who writes as `person`). `settings`: a
    `core.learning.LearnSettings` for the updates started here (None: the defaults)."""

    BINDINGS = [
        Binding("s", "start", "Start"),
        Binding("ctrl+x", "stop", "Stop"),
        Binding("c", "constitution", "Constitution"),
        Binding("j", "toggle_judge", "Judge", show=False),
        Binding("f10", "feedback", "Feedback"),
        Binding("escape", "leave", "Back"),
    ]

    state = reactive("idle", init=False)
    """idle, running, cancelled, done or failed; the screen carries it as a class."""

    def __init__(
        self, model_id: str, person: str, settings: Any = None, autoload: bool = True
    ) -> None:
        super().__init__(classes="-idle")
        self.model_id, self.person = model_id, person
        self.settings = settings
        self.autoload = autoload
        self.cancel = threading.Event()
        self.loaded = False
        self.versions: list[Any] = []
        self.current: int | None = None  # the version the chat uses
        self.outcome: dict[str, Any] | None = None  # the last update's to_json()
        self.nothing: str | None = None  # why the last Start had nothing to learn
        self.last_event: Any = None
        self.endpoint: str | None = None  # the judge's endpoint, "url (model)"
        self.has_constitution = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="learn"):
            yield Static(
                f"[b]{escape(self.person)}[/b] keeps learning  Persona {escape(self.model_id)}",
                id="learn-title",
            )
            yield Static("Reading…", id="learn-counts", markup=False)
            yield Static(READY, id="learn-status", markup=False)
            yield ProgressBar(total=1, show_eta=False, id="learn-progress")
            yield LossChart(id="learn-loss")
            yield Static("", id="learn-verdict")
            yield Static("", id="learn-learnt", markup=False)
            yield Static(FORGETTING, id="learn-table-title", markup=False)
            yield DataTable(id="learn-table", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="learn-actions", classes="row"):
                yield Button("Start update", variant="primary", id="learn-start")
                yield Button("Stop", variant="error", id="learn-stop")
                yield Button("Resume", variant="primary", id="learn-resume")
                yield Button("Keep anyway", variant="warning", id="learn-keep")
                yield Button("Feedback…", id="learn-feedback")
                yield Button("Constitution…", id="learn-constitution")
            with Horizontal(id="learn-judge-row"):
                yield Switch(id="learn-judge", disabled=True)
                yield Label("Use the judge", classes="inline")
                yield Static(NO_ENDPOINT, id="learn-judge-hint", markup=False)
            yield Label("Versions", classes="section-title")
            yield DataTable(id="learn-versions", cursor_type="row", zebra_stripes=True)
            yield Button("Use the highlighted version (rollback)", id="learn-rollback")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        fill(self.query_one("#learn-table", DataTable), FORGETTING_COLUMNS, [])
        fill(self.query_one("#learn-versions", DataTable), VERSION_COLUMNS, [])
        if self.autoload:
            self._load()

    def on_screen_resume(self) -> None:
        if self.loaded and self.autoload and self.state != "running":
            self._load()  # back from the feedback view: items may have gone

    def on_unmount(self) -> None:
        # Leaving mid-update (the app quits): stop with a checkpoint, so the worker ends.
        self.cancel.set()

    def watch_state(self, old: str, new: str) -> None:
        self.remove_class(f"-{old}")
        self.add_class(f"-{new}")

    def _status(self, text: str, failure: bool = False) -> None:
        status = self.query_one("#learn-status", Static)
        status.update(text)
        status.set_class(failure, "-failure")

    # -- reading ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="learn-load",
          description="read feedback and versions")  # fmt: skip
    def _load(self) -> None:
        from convsim.core.learning.feedback import Feedback
        from convsim.core.training.versions import current, versions

        app: Any = self.app
        with reporting(self, "Could not read the persona", "learn-load"), app.workspace() as ws:
            unused = Feedback(ws.store).items(self.model_id, unused=True)
            known = versions(ws.store, self.model_id)
            self._read_judge(ws)  # first: once `loaded`, the judge's state is known too
            post(self, LearnLoaded(unused, known, current(ws.store, self.model_id).version))

    @on(LearnLoaded)
    def _loaded(self, message: LearnLoaded) -> None:
        self.versions, self.current = message.versions, message.current
        self.query_one("#learn-counts", Static).update(counts_line(message.unused))
        table = self.query_one("#learn-versions", DataTable)
        fill(table, VERSION_COLUMNS, version_rows(self.versions, message.current))
        last: Any = self.versions[-1] if self.versions else None
        stopped = last is not None and last.version > 1 and last.status in ("training", "cancelled")
        if stopped and not self.loaded and self.state == "idle":
            self.state = "cancelled"  # an update was stopped (or the app quit mid-way)
            self._status(f"Version {last.version} was stopped before it finished: Resume "
                         "continues it.")  # fmt: skip
        self.loaded = True

    # -- running ------------------------------------------------------------------------------

    @on(Button.Pressed, "#learn-start")
    def action_start(self) -> None:
        if self.state != "running":
            self._begin(resume=False)

    @on(Button.Pressed, "#learn-resume")
    def action_resume(self) -> None:
        if self.state == "cancelled":
            self._begin(resume=True)

    def _begin(self, resume: bool) -> None:
        self.cancel.clear()  # here, not in the worker: a Stop pressed meanwhile must count
        self.nothing = None
        self.state = "running"
        self.remove_class("-not-promoted", "-has-table")
        if not resume:  # a resumed update's chart is redrawn from its run's history
            self.query_one(LossChart).restart((), (), 1)
            self.remove_class("-trained")
        self._status("Resuming the update…" if resume else "Gathering what to learn…")
        judge = not resume and self.query_one("#learn-judge", Switch).value
        self._learn(resume, judge)

    @work(thread=True, exclusive=True, exit_on_error=False, group="learn",
          description="update a persona")  # fmt: skip
    def _learn(self, resume: bool, judge: bool = False) -> None:
        from convsim.core.learning import LearnSettings, constitution, learn
        from convsim.core.learning.sleep import NothingToLearn
        from convsim.core.memory.endpoint import EndpointError

        def on_event(event: Any) -> None:
            if not post(self, LearnProgress(event)):
                self.cancel.set()  # the screen or the app is gone: stop, with a checkpoint

        def on_base(event: Any) -> None:
            post(self, BaseProgress(event.message + "…"))

        app: Any = self.app
        settings = self.settings
        if judge:
            settings = (settings or LearnSettings()).with_overrides(judge=True)
        with reporting(self, "The update failed", "learn"), app.workspace() as ws:
            if judge and not constitution(ws, self.model_id).strip():
                post(self, LearnRefused(NO_RULES))
                return
            try:
                outcome = learn(
                    ws, self.model_id, settings=settings, resume=resume,
                    on_event=on_event, cancel=self.cancel, progress=on_base,
                )  # fmt: skip
            except NothingToLearn as e:
                post(self, LearnEnded(None, str(e)))
                return
            except EndpointError as e:
                why = str(e).rstrip(".")
                post(self, LearnRefused(f"The judge could not be asked: {why}. Check the "
                                        "endpoint, or turn the judge off."))  # fmt: skip
                return
            except ValueError as e:  # the judge's own refusals (no constitution)
                if not judge:
                    raise
                post(self, LearnRefused(f"The judge could not run: {str(e).rstrip('.')}."))
                return
            post(self, LearnEnded(outcome))

    @on(LearnProgress)
    def _progress(self, message: LearnProgress) -> None:
        e = self.last_event = message.event
        bar = self.query_one("#learn-progress", ProgressBar)
        t = e.train
        if t is not None:
            bar.update(total=max(1, t.total_steps), progress=t.step)
            kind = getattr(t, "kind", "step")
            if kind == "start":  # a resumed update's chart begins with the steps already done
                self.query_one(LossChart).restart(t.history, t.val_history, t.total_steps)
                self.set_class(bool(t.history), "-trained")
            if kind in ("step", "eval"):
                loss = t.loss if kind == "step" else None
                self.query_one(LossChart).add(t.step, loss, t.val_loss, t.total_steps)
                self.add_class("-trained")
        elif e.total:
            bar.update(total=e.total, progress=e.done)
        self._status(stage_line(e))

    @on(BaseProgress)
    def _base_progress(self, message: BaseProgress) -> None:
        self._status(message.text)

    @on(LearnEnded)
    def _ended(self, message: LearnEnded) -> None:
        if message.outcome is None:
            nothing = message.nothing or "nothing new to learn"
            self.nothing = nothing[:1].upper() + nothing[1:]
            self.state = "idle"
            self._status(self.nothing)
            return
        self.show_outcome(message.outcome.to_json())
        if self.autoload:
            self._load()
        if self.state == "done":
            self.notify(str(verdict(self.outcome or {})), title="Update finished", markup=False)

    def show_outcome(self, outcome: dict[str, Any]) -> None:
        """Show an update's outcome (`LearnOutcome.to_json()`): the verdict and the table."""
        self.outcome = outcome
        done = outcome["status"] == "done"
        self.state = "done" if done else "cancelled"
        self.set_class(done and not outcome["promoted"], "-not-promoted")
        self.set_class(done and bool(outcome["forgetting"]), "-has-table")
        self.query_one("#learn-verdict", Static).update(verdict(outcome))
        self.query_one("#learn-learnt", Static).update(learnt_line(outcome) if done else "")
        table = self.query_one("#learn-table", DataTable)
        fill(table, FORGETTING_COLUMNS, forgetting_rows(outcome["forgetting"] if done else []))
        self._status(
            f"Update finished in {duration(outcome.get('seconds'))}."
            if done
            else "Stopped with a checkpoint: Resume continues, Start begins again."
        )

    @on(LearnRefused)
    def _refused(self, message: LearnRefused) -> None:
        self.state = "failed"
        self._status(f"{message.reason} The chat keeps its version.", failure=True)

    @on(JobFailed)
    def _failed(self, message: JobFailed) -> None:
        if message.group == "learn":
            self.state = "failed"
            self._status("The update failed (see the notification); the chat keeps its "
                         "version.", failure=True)  # fmt: skip

    @on(Button.Pressed, "#learn-stop")
    def action_stop(self) -> None:
        if self.state == "running":
            self.cancel.set()
            self._status("Stopping after this step and saving a checkpoint…")

    # -- leaving ------------------------------------------------------------------------------

    @on(Button.Pressed, "#learn-feedback")
    def action_feedback(self) -> None:
        from convsim.tui.app.screens.feedback import FeedbackScreen

        self.app.push_screen(FeedbackScreen(self.model_id, self.person))

    def action_leave(self) -> None:
        if self.state == "running":
            self.notify("An update is running: Ctrl+X stops it (a checkpoint is kept), then "
                        "Escape.")  # fmt: skip
            return
        self.app.pop_screen()
