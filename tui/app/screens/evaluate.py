"""Evaluate: "is it really them?" for one persona, as charts.

On opening, a worker reads the persona's last report (`EvalLoaded`). Quick or full runs of the
suite (`core.evaluation.run`) go in a worker too: its stages come as `EvalProgress`, its report
as `EvalEnded`, and Stop sets the job's event (nothing half-measured is saved). Each figure is
a `FigureBars` chart (a bar per variant, its 95% interval, the goal mark); style is a
`StyleTable` (as wide as the screen allows) and the forever conversation one line. The report
page (`report.html`) opens in the browser.
"""

from __future__ import annotations

import json
import threading
import webbrowser
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, ProgressBar, Static

from convsim.tui.app.messages import EvalEnded, EvalLoaded, EvalProgress, JobFailed, post, reporting
from convsim.tui.app.screens.evaluate_widgets import FigureBars, StyleTable

# (title, figure, goal, scale top)
CHARTS = [
    ("Picks their real reply among 20, against other people (Hits@1)", "hits_at_1_others",
     0.6, 1.0),
    ("… against their own messages at other moments (Hits@1)", "hits_at_1_same_person",
     0.25, 1.0),
    ("Reads like them (authorship: 0 = other people, 1 = them)", "authorship", 0.5, None),
    ("A detector tells it from the real thing (accuracy; 0.5 = it can't)",
     "detector_accuracy", 0.65, 1.0),
    ("Surprise at their real replies (perplexity, lower is better)", "perplexity", None, None),
]  # fmt: skip


class EvaluateScreen(Screen[None]):
    """The suite for `model_id`, the persona of `person`; it runs when asked (quick `q`, full
    `f`). `options`: more keyword arguments for `core.evaluation.run` (threads...)."""

    BINDINGS = [
        Binding("q", "run(True)", "Quick run"),
        Binding("f", "run(False)", "Full run"),
        Binding("o", "open_report", "Open report"),
        Binding("ctrl+x", "stop", "Stop"),
        Binding("escape", "leave", "Back"),
    ]

    running = reactive(False, init=False)

    def __init__(self, model_id: str, person: str, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model_id, self.person = model_id, person
        self.options = options or {}
        self.cancel = threading.Event()
        self.report: dict[str, Any] | None = None
        self.folder: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="evaluate"):
            yield Static(
                f"Is it really [b]{escape(self.person)}[/b]?  Persona {escape(self.model_id)}",
                id="eval-title",
            )
            yield Static("Reading the last report…", id="eval-status", markup=False)
            yield ProgressBar(total=1, show_eta=False, id="eval-progress")
            for title, figure, goal, top in CHARTS:
                yield FigureBars(title, figure, goal=goal, top=top, id=f"chart-{figure}")
            yield StyleTable(id="eval-style")
            yield Static("", id="eval-forever", markup=False)
            with Horizontal(id="eval-actions", classes="row"):
                yield Button("Quick run", variant="primary", id="eval-quick")
                yield Button("Full run", id="eval-full")
                yield Button("Stop", variant="error", id="eval-stop")
                yield Button("Open report", id="eval-open")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._load()

    def on_unmount(self) -> None:
        self.cancel.set()

    def watch_running(self, running: bool) -> None:
        self.set_class(running, "-running")

    # -- reading and running ------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="eval-load", description="read a report")
    def _load(self) -> None:
        app: Any = self.app
        with reporting(self, "Could not read the report", "eval-load"), app.workspace() as ws:
            folder = Path(ws.store.model(self.model_id).path)
            path = folder / "eval.json"
            report = json.loads(path.read_text()) if path.is_file() else None
            if report is not None and "tuned" not in report:
                report = None  # a report from before the suite: only perplexities
            post(self, EvalLoaded(report, folder))

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval",
          description="evaluate a persona")  # fmt: skip
    def _run(self, quick: bool) -> None:
        from convsim.core import evaluation

        def tell(event: Any) -> None:
            if not post(self, EvalProgress(event)):
                self.cancel.set()

        app: Any = self.app
        with reporting(self, "Evaluation failed", "eval"), app.workspace() as ws:
            try:
                report = evaluation.run(
                    ws, self.model_id, quick=quick, cancel=self.cancel, progress=tell,
                    **self.options,
                )  # fmt: skip
            except evaluation.SuiteStopped:
                report = None
            post(self, EvalEnded(report))

    @on(EvalLoaded)
    def _loaded(self, message: EvalLoaded) -> None:
        self.folder = message.folder
        if message.report is None:
            self._status(
                "Not evaluated yet. Quick run (q): a few minutes on a laptop. Full run (f): "
                "the measurement, with a 500-turn forever conversation (much longer)."
            )
        self._show(message.report)

    @on(EvalProgress)
    def _progress(self, message: EvalProgress) -> None:
        e = message.event
        self.query_one("#eval-progress", ProgressBar).update(total=e.total, progress=e.done)
        self._status(f"{e.stage}: {e.done} of {e.total}")

    @on(EvalEnded)
    def _ended(self, message: EvalEnded) -> None:
        self.running = False
        if message.report is None:
            self._status("Stopped; the last saved report is unchanged.")
            return
        self._show(message.report)
        self.notify(f"Saved {self.model_id}'s report.", title="Evaluated", markup=False)

    @on(JobFailed)
    def _failed(self, message: JobFailed) -> None:
        if message.group == "eval":
            self.running = False
            self._status("The evaluation failed (see the notification).")

    # -- showing ------------------------------------------------------------------------------

    def _status(self, text: str) -> None:
        self.query_one("#eval-status", Static).update(text)

    def _show(self, report: dict[str, Any] | None) -> None:
        self.report = report
        self.set_class(report is not None, "-has-report")
        if report is None:
            return
        from convsim.core.evaluation import forever_sentence, replies_of, temperature_of

        self._status(
            f"Last run: {report['items']} held-out moments"
            f"{' (quick)' if report['quick'] else ''}, {replies_of(report)}, "
            f"best of {report['best_of']}, temperature {temperature_of(report)}, "
            f"{report['seconds']:.0f} s. "
            "Bars: value and 95% interval; │ marks the goal."
        )
        for chart in self.query(FigureBars):
            chart.show(report)
        self.query_one(StyleTable).show(report)
        self.query_one("#eval-forever", Static).update(forever_sentence(report))

    # -- actions ------------------------------------------------------------------------------

    @on(Button.Pressed, "#eval-quick")
    def _quick(self) -> None:
        self.action_run(True)

    @on(Button.Pressed, "#eval-full")
    def _full(self) -> None:
        self.action_run(False)

    def action_run(self, quick: bool) -> None:
        if self.running:
            return
        self.running = True
        self.cancel.clear()
        self._status(f"Starting a {'quick' if quick else 'full'} run…")
        self._run(quick)

    @on(Button.Pressed, "#eval-stop")
    def action_stop(self) -> None:
        if self.running:
            self.cancel.set()
            self._status("Stopping…")

    @on(Button.Pressed, "#eval-open")
    def action_open_report(self) -> None:
        page = self.folder / "report.html" if self.folder else None
        if page is None or not page.is_file():
            self.notify("No report yet: run the suite first (q).", markup=False)
            return
        webbrowser.open(page.as_uri())
        self.notify(f"Opening {page}", markup=False)

    def action_leave(self) -> None:
        self.cancel.set()
        self.app.pop_screen()
