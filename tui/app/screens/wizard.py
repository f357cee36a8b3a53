"""The import wizard: file → parse report and people → dataset preview → training settings
(that last step in `wizard_settings`).

Each step is a pane of one ContentSwitcher. Format detection, parsing, dataset building and the
list of base models run in `@work` workers that post the messages of `messages.py`; the wizard
keeps only plain results (`ImportReport`, `DatasetRecord`). Names, titles, paths and error
messages are shown as plain text (`Content`/`Text`, or markup variables), never as markup."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import (
    Button,
    Checkbox,
    ContentSwitcher,
    DirectoryTree,
    Footer,
    Header,
    Input,
    Label,
    Select,
    Static,
)

from convsim.core.data.turns import safe_name
from convsim.tui.app.messages import (
    DatasetBuilt,
    FormatDetected,
    Imported,
    ImportProgress,
    JobFailed,
    post,
    reporting,
)
from convsim.tui.app.screens.wizard_info import (
    chat_report,
    dataset_text,
    report_text,
    stored_me,
)
from convsim.tui.app.screens.wizard_layout import STEPS, wizard_steps
from convsim.tui.app.screens.wizard_settings import SettingsStep
from convsim.tui.app.widgets import short_path


class ImportWizard(SettingsStep):
    """`start_path`: a file to fill in; `chat_id`: skip the import, train on a stored chat."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
    ]

    def __init__(self, start_path: Path | None = None, chat_id: int | None = None) -> None:
        super().__init__()
        self.start_path = start_path
        self.start_chat = chat_id
        self.reports: list[Any] = []
        self.me_of: dict[int, str] = {}  # who is "me" in a chat, where the store knows it
        self.report: Any = None
        self.dataset: Any = None  # the dataset of the people step's current choices, once built
        self.built: tuple[Any, ...] | None = None  # those choices
        self.builds = 0  # dataset builds asked for: a late result of an earlier one is dropped
        self.build_failed = False  # the build for `built` failed: the same choices try again
        self.importing: threading.Event | None = None  # set it to cancel the running import

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield from wizard_steps()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._show_step("file")
        if self.start_chat is not None:
            self._read_chat(self.start_chat)
        elif self.start_path is not None:
            self.query_one("#path", Input).value = str(self.start_path)
            self.action_import()
        else:
            self.query_one("#path", Input).focus()
        self._find_bases()

    def _show_step(self, step: str) -> None:
        self.query_one("#wizard", ContentSwitcher).current = step
        for s in STEPS:
            self.query_one(f"#step-{s}").set_class(s == step, "-current")

    def action_back(self) -> None:
        current = self.query_one("#wizard", ContentSwitcher).current or "file"
        index = STEPS.index(current)
        if self.importing is not None and not self.importing.is_set():
            self.importing.set()  # the first Esc cancels the import; the next one leaves
            self._note(Content("Cancelling the import…"))
            return
        if index == 0 or (index == 1 and self.start_chat is not None):
            self.app.pop_screen()
        else:
            self._show_step(STEPS[index - 1])

    def action_next(self) -> None:
        current = self.query_one("#wizard", ContentSwitcher).current or "file"
        button = {"file": "#do-import", "people": "#do-dataset", "dataset": "#to-settings"}
        self.query_one(button.get(current, "#do-train"), Button).press()

    # -- step 1: file -------------------------------------------------------------------------

    @on(DirectoryTree.FileSelected)
    def _file_picked(self, event: DirectoryTree.FileSelected) -> None:
        self.query_one("#path", Input).value = str(event.path)

    @on(Input.Changed, "#path")
    def _path_changed(self, event: Input.Changed) -> None:
        self._detect(event.value.strip())

    @work(thread=True, exclusive=True, exit_on_error=False, group="detect",
          description="detect the export's format")  # fmt: skip
    def _detect(self, raw: str) -> None:
        """Detection while typing: a miss is normal, shown quietly, not a notification."""
        from convsim.core.chats.importers import detect as detect_format
        from convsim.core.chats.importers.base import Source

        path = Path(os.path.expanduser(raw))
        if not raw or not path.exists():
            post(self, FormatDetected(raw, None))
            return
        try:
            with Source(path) as source:
                post(self, FormatDetected(raw, detect_format(source)))
        except Exception as exc:
            post(self, FormatDetected(raw, None, str(exc)))

    @on(FormatDetected)
    def _detected(self, message: FormatDetected) -> None:
        if message.path != self.query_one("#path", Input).value.strip():
            return  # typed on since: a newer detection is on its way
        if message.name:
            text = Content.from_markup("Detected format: [b]$name[/b]", name=message.name)
        else:
            text = Content(message.problem or "")
        self._note(text, "-quiet" if message.problem else "")

    @on(Input.Submitted, "#path")
    @on(Button.Pressed, "#do-import")
    def action_import(self) -> None:
        from convsim.core.workspace import ImportOptions

        raw = self.query_one("#path", Input).value.strip()
        if not raw:
            self.notify("Type or pick the path of a chat export.", severity="warning")
            return
        if self.importing is not None:
            self.notify("An import is running: wait for it, or press Esc to cancel it.")
            return
        path = Path(os.path.expanduser(raw))
        order = self.query_one("#date-order", Select).value
        # "Auto" on a file whose dates fit both orders: the locale's order, with a warning.
        options = ImportOptions(
            date_order=order if isinstance(order, str) else None, locale_fallback=True
        )
        self._note(Content(f"Importing {short_path(path)}… (Esc cancels)"))
        self.importing = threading.Event()
        self._import(path, options, self.importing)

    def _note(self, text: Content, kind: str = "") -> None:
        """The line under the file step's path: detection, progress or an error (`kind`)."""
        note = self.query_one("#detected", Static)
        note.update(text)
        note.set_class(kind == "-quiet", "-quiet")
        note.set_class(kind == "-failure", "-failure")

    @work(thread=True, exclusive=True, exit_on_error=False, group="import",
          description="import a chat export")  # fmt: skip
    def _import(self, path: Path, options: Any, cancel: threading.Event) -> None:
        app: Any = self.app

        def progress(done: float, messages: int) -> None:
            post(self, ImportProgress(done, messages))

        with reporting(self, f"Could not import {path.name}", "import"), app.workspace() as ws:
            reports = ws.import_export(path, None, options, progress, cancel)
            post(self, Imported(reports, stored_me(ws, [r.chat_id for r in reports])))

    @on(ImportProgress)
    def _import_progress(self, message: ImportProgress) -> None:
        """A large export is stored batch by batch: say how far it has got."""
        if self.importing is None or self.importing.is_set():
            return  # cancelling
        done = f"{message.done:.0%} ({message.messages:,} messages so far)"
        self._note(Content(f"Importing… {done} (Esc cancels)"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="import",
          description="read a stored chat")  # fmt: skip
    def _read_chat(self, chat_id: int) -> None:
        app: Any = self.app
        with reporting(self, "Could not read the chat", "import"), app.workspace() as ws:
            report, me = chat_report(ws, chat_id)
            post(self, Imported([report], me))

    @on(JobFailed)
    def _job_failed(self, message: JobFailed) -> None:
        from convsim.core.workspace import ImportCancelled

        if message.group == "import":
            self.importing = None
            if isinstance(message.error, ImportCancelled):
                message.stop()  # asked for: no error to report
                self._note(Content("Import cancelled: nothing of it was stored."))
            else:
                self._note(Content(str(message.error)), "-failure")

    @on(Imported)
    def _imported(self, message: Imported) -> None:
        if self.importing is not None and self.importing.is_set():
            self.notify("The import had finished before it could be cancelled: it is stored.")
        self.importing = None
        self.me_of = message.me
        reports = self.reports = message.reports
        which = self.query_one("#which-chat", Select)
        which.set_options(
            [(Text(f"{r.title} ({r.messages} messages)"), i) for i, r in enumerate(reports)]
        )
        which.set_class(len(reports) < 2, "-hidden")
        if len(reports) > 1:
            which.value = 0
        self._pick_report(reports[0])
        for warning in {w for r in reports for w in r.warnings}:
            self.notify(
                warning, title="Check the import", severity="warning", timeout=20, markup=False
            )
        self._show_step("people")
        self.query_one("#me", Select).focus()

    # -- step 2: people -----------------------------------------------------------------------

    @on(Select.Changed, "#which-chat")
    def _chat_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, int):
            self._pick_report(self.reports[event.value])

    def _pick_report(self, report: Any) -> None:
        self.report = report
        self.query_one("#report", Static).update(report_text(report))
        names = [(Text(p["name"]), p["name"]) for p in report.participants]
        me, target = self.query_one("#me", Select), self.query_one("#target", Select)
        me.set_options(names)
        target.set_options(names)
        mine = self.me_of.get(report.chat_id)  # as the store knows it, else a guess
        by_count = sorted(report.participants, key=lambda p: -p["messages"])
        others = [p["name"] for p in by_count if p["name"] != mine]
        if others:
            target.value = others[0]
        if mine is not None and any(p["name"] == mine for p in by_count):
            me.value = mine
        elif len(by_count) == 2:
            me.value = by_count[1]["name"]
        tags = self.query_one("#tags", Vertical)
        tags.remove_children()
        tags.mount_all(
            Horizontal(
                Label(p["name"], classes="inline tag-name", markup=False),
                Input(p["name"], name=p["name"], classes="tag"),
                classes="row",
            )
            for p in report.participants[:12]
        )

    def _dataset_config(self) -> Any:
        from convsim.core.data.dataset import DatasetConfig

        target = self.query_one("#target", Select).value
        if not isinstance(target, str):
            raise ValueError("choose whom to simulate")
        tags = {}
        for field in self.query(".tag").results(Input):
            typed = field.value.strip()
            tag = safe_name(typed) if typed else ""
            if field.name and tag and tag != field.name:
                tags[field.name] = tag
        same = [n for n, t in tags.items() if list(tags.values()).count(t) > 1]
        if same:
            raise ValueError(f"{' and '.join(same)} have the same tag; give each a different one")
        config = DatasetConfig(
            target=target,
            tags=tags,
            scrub=self.query_one("#scrub", Checkbox).value,
            media="placeholder" if self.query_one("#media", Checkbox).value else "drop",
        )
        # The clash the dataset would refuse, said before it is built.
        if clash := config.clashes([p["name"] for p in self.report.participants]):
            mine = config.tag_for(target)
            raise ValueError(f"{clash[0]} would have {target}'s tag {mine!r}; give them another")
        return config

    @on(Button.Pressed, "#do-dataset")
    def _build_dataset(self) -> None:
        try:
            config = self._dataset_config()
        except ValueError as exc:
            self.notify(str(exc), severity="warning", markup=False)
            return
        chosen = self.query_one("#me", Select).value
        me = chosen if isinstance(chosen, str) else None
        chat_id = self.report.chat_id
        self._show_step("dataset")
        choices = (chat_id, me, json.dumps(config.to_json(), sort_keys=True))
        if choices == self.built and not self.build_failed:
            return  # the same choices again: their dataset (built or on its way) stands
        self.dataset, self.built, self.builds, self.build_failed = (
            None,
            choices,
            self.builds + 1,
            False,
        )
        stats = self.query_one("#dataset-stats", Static)
        stats.update("Building the dataset…")
        stats.remove_class("-failure")
        self.query_one("#dataset-samples", Static).update("")
        self._build(chat_id, me, config, self.builds)

    @work(thread=True, exclusive=True, exit_on_error=False, group="dataset",
          description="build a dataset")  # fmt: skip
    def _build(self, chat_id: int, me: str | None, config: Any, build: int) -> None:
        """Posts `DatasetBuilt` with the record or, failed, the error (shown on the step)."""
        app: Any = self.app
        try:
            with app.workspace() as ws:
                if me is not None:
                    ws.store.set_me(chat_id, me)
                record = ws.build_dataset(chat_id, config)
        except Exception as exc:
            post(self, DatasetBuilt(None, build, exc))
        else:
            post(self, DatasetBuilt(record, build))

    # -- step 3: dataset ----------------------------------------------------------------------

    @on(DatasetBuilt)
    def _dataset_built(self, message: DatasetBuilt) -> None:
        if message.build != self.builds:
            return  # built for choices changed since
        stats = self.query_one("#dataset-stats", Static)
        stats.set_class(message.record is None, "-failure")
        if message.record is None:
            self.build_failed = True
            stats.update(Content(f"Could not build the dataset: {message.error}"))
            return
        record = self.dataset = message.record
        stats.update(dataset_text(record))
        samples = [
            f"── sample {i + 1} ──\n{sample.rstrip()}\n"
            for i, sample in enumerate(record.samples[:3])
        ]
        self.query_one("#dataset-samples", Static).update(Content("\n".join(samples)))
        self.query_one("#to-settings", Button).focus()

    @on(Button.Pressed, "#to-settings")
    def _to_settings(self) -> None:
        if self.dataset is None:
            return
        self._show_step("settings")
        self._update_estimate()
        self.query_one("#do-train", Button).focus()
