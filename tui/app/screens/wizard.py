"""The import wizard: file → parse report and people → dataset preview → training settings.

Each step is a pane of one ContentSwitcher. Parsing, dataset building and the time estimate run
in workers; the wizard keeps only plain results (`ImportReport`, `DatasetRecord`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
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

from convsim.tui.app.screens.wizard_info import (
    CPU_TOKENS_PER_S_PER_CORE,
    chat_report,
    estimate_seconds,
    report_text,
    rough_duration,
)
from convsim.tui.app.widgets import PathSuggester, short_path

STEPS = ("file", "people", "dataset", "settings")
DEFAULT_BASE = "default"
CUSTOM_BASE = "custom"


class ImportWizard(Screen[None]):
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
        self.report: Any = None
        self.dataset: Any = None
        self.rate: float | None = None
        self.device = "cpu"

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="steps")
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
                    yield Select([], prompt="(one chat)", id="which-chat")
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
                    yield Input(placeholder="path to a .gguf base model", id="base-path")
                    with Horizontal(classes="row"):
                        yield Label("Epochs:", classes="inline")
                        yield Input("1", id="epochs", type="number")
                        yield Label("Context tokens:", classes="inline")
                        yield Select(
                            [("256", 256), ("512", 512)],
                            value=256,
                            allow_blank=False,
                            id="seq-len",
                        )
                    yield Static("", id="estimate")
                yield Button("Train", variant="success", id="do-train")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#base-path").display = False
        self.query_one("#which-chat").display = False
        self._show_step("file")
        if self.start_chat is not None:
            self.app.in_thread(  # type: ignore[attr-defined]
                "Could not read the chat",
                lambda: self._with_ws(lambda ws: [chat_report(ws, self.start_chat)]),
                self._imported,
            )
        elif self.start_path is not None:
            self.query_one("#path", Input).value = str(self.start_path)
            self.action_import()
        else:
            self.query_one("#path", Input).focus()
        self.app.in_thread("Could not list base models", self._bases, self._show_bases)  # type: ignore[attr-defined]

    def _with_ws(self, fn: Any) -> Any:
        with self.app.workspace() as ws:  # type: ignore[attr-defined]
            return fn(ws)

    def _show_step(self, step: str) -> None:
        self.query_one("#wizard", ContentSwitcher).current = step
        names = ("1 File", "2 People", "3 Dataset", "4 Train")
        marks = [
            f"[reverse] {n} [/]" if s == step else f" {n} "
            for s, n in zip(STEPS, names, strict=True)
        ]
        self.query_one("#steps", Static).update(" › ".join(marks))

    def action_back(self) -> None:
        current = self.query_one("#wizard", ContentSwitcher).current or "file"
        index = STEPS.index(current)
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
        path = Path(os.path.expanduser(event.value.strip()))
        if not event.value.strip() or not path.exists():
            self.query_one("#detected", Static).update("")
            return

        def detect() -> str:
            from convsim.core.chats.importers import detect as detect_format
            from convsim.core.chats.importers.base import Source

            with Source(path) as source:
                return detect_format(source)

        def shown(name: str) -> None:
            self.query_one("#detected", Static).update(f"Detected format: [b]{name}[/b]")

        self.run_worker(lambda: self._quiet(detect, shown), thread=True, group="detect",
                        exclusive=True, exit_on_error=False)  # fmt: skip

    def _quiet(self, job: Any, done: Any) -> None:
        """Detection while typing: a miss is normal, not an error worth a notification."""
        try:
            result = job()
        except Exception as exc:
            self.app.call_from_thread(
                self.query_one("#detected", Static).update, f"[dim]{exc}[/dim]"
            )
            return
        self.app.call_from_thread(done, result)

    @on(Input.Submitted, "#path")
    @on(Button.Pressed, "#do-import")
    def action_import(self) -> None:
        from convsim.core.workspace import ImportOptions

        raw = self.query_one("#path", Input).value.strip()
        if not raw:
            self.notify("Type or pick the path of a chat export.", severity="warning")
            return
        path = Path(os.path.expanduser(raw))
        order = self.query_one("#date-order", Select).value
        options = ImportOptions(date_order=order if isinstance(order, str) else None)
        self.query_one("#detected", Static).update(f"Importing {short_path(path)}…")
        self.app.in_thread(  # type: ignore[attr-defined]
            f"Could not import {path.name}",
            lambda: self._with_ws(lambda ws: ws.import_export(path, None, options)),
            self._imported,
            lambda exc: self.query_one("#detected", Static).update(f"[red]{exc}[/red]"),
        )

    def _imported(self, reports: list[Any]) -> None:
        self.reports = reports
        which = self.query_one("#which-chat", Select)
        which.set_options(
            [(f"{r.title} ({r.messages} messages)", i) for i, r in enumerate(reports)]
        )
        which.display = len(reports) > 1
        if len(reports) > 1:
            which.value = 0
        self._pick_report(reports[0])
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
        names = [(p["name"], p["name"]) for p in report.participants]
        me, target = self.query_one("#me", Select), self.query_one("#target", Select)
        me.set_options(names)
        target.set_options(names)
        by_count = sorted(report.participants, key=lambda p: -p["messages"])
        if by_count:
            target.value = by_count[0]["name"]
        if len(by_count) == 2:
            me.value = by_count[1]["name"]
        tags = self.query_one("#tags", Vertical)
        tags.remove_children()
        tags.mount_all(
            Horizontal(
                Label(p["name"], classes="inline tag-name"),
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
            tag = field.value.strip().replace("[", "(").replace("]", ")")
            if field.name and tag and tag != field.name:
                tags[field.name] = tag
        if len(set(tags.values())) < len(tags):
            raise ValueError("two people have the same tag; give each a different one")
        return DatasetConfig(
            target=target,
            tags=tags,
            scrub=self.query_one("#scrub", Checkbox).value,
            media="placeholder" if self.query_one("#media", Checkbox).value else "drop",
        )

    @on(Button.Pressed, "#do-dataset")
    def _build_dataset(self) -> None:
        try:
            config = self._dataset_config()
        except ValueError as exc:
            self.notify(str(exc), severity="warning")
            return
        me = self.query_one("#me", Select).value
        chat_id = self.report.chat_id

        def build(ws: Any) -> Any:
            if isinstance(me, str):
                ws.store.set_me(chat_id, me)
            return ws.build_dataset(chat_id, config)

        self.query_one("#dataset-stats", Static).update("Building the dataset…")
        self._show_step("dataset")
        self.app.in_thread(  # type: ignore[attr-defined]
            "Could not build the dataset", lambda: self._with_ws(build), self._dataset_built
        )

    # -- step 3: dataset ----------------------------------------------------------------------

    def _dataset_built(self, record: Any) -> None:
        self.dataset = record
        s = record.stats
        self.query_one("#dataset-stats", Static).update(
            f"[b]Dataset {record.id}[/b] for [b]{record.target}[/b]: "
            f"{s['train_examples']} training windows ({s['train_token_estimate']:,} tokens), "
            f"{s['validation_examples']} held out for validation; "
            f"{s['target_turns']} of {record.target}'s messages in {s['sessions']} sessions."
        )
        parts: list[Any] = []
        for i, sample in enumerate(record.samples[:3]):
            parts += [(f"── sample {i + 1} ──\n", "dim"), sample.rstrip("\n") + "\n\n"]
        self.query_one("#dataset-samples", Static).update(Content.assemble(*parts))
        self.query_one("#to-settings", Button).focus()

    @on(Button.Pressed, "#to-settings")
    def _to_settings(self) -> None:
        if self.dataset is None:
            return
        self._show_step("settings")
        self._update_estimate()
        self.query_one("#do-train", Button).focus()

    # -- step 4: settings ---------------------------------------------------------------------

    def _bases(self) -> tuple[list[Any], float | None, str]:
        """Local GGUFs (LM Studio, Ollama, HF cache), this machine's last measured training
        speed, and the device training would use."""
        from convsim.core.bases.prepare import discover_ggufs
        from convsim.core.training.trainer import choose_device

        with self.app.workspace() as ws:  # type: ignore[attr-defined]
            found = [
                f
                for f in discover_ggufs(locations=ws.locations)
                if f.path.parent != ws.locations.base_models  # the default is listed already
            ]
            rates = [
                m.metrics["tokens_per_s"]
                for m in ws.store.models()
                if m.metrics and m.metrics.get("tokens_per_s")
            ]
        return found, (rates[-1] if rates else None), choose_device()[0]

    def _show_bases(self, result: tuple[list[Any], float | None, str]) -> None:
        found, self.rate, self.device = result
        options = [("Gemma 3 270M (default, bundled)", DEFAULT_BASE)]
        options += [(f"{f.name}  ({f.source})", str(f.path)) for f in found]
        options.append(("Another .gguf file…", CUSTOM_BASE))
        self.query_one("#base", Select).set_options(options)
        self.query_one("#base", Select).value = DEFAULT_BASE
        self._update_estimate()

    @on(Select.Changed, "#base")
    def _base_changed(self, event: Select.Changed) -> None:
        self.query_one("#base-path").display = event.value == CUSTOM_BASE
        self._update_estimate()

    @on(Input.Changed, "#epochs")
    def _epochs_changed(self) -> None:
        self._update_estimate()

    def _epochs(self) -> float:
        try:
            value = float(self.query_one("#epochs", Input).value)
        except ValueError:
            raise ValueError("epochs must be a number, like 1 or 2.5") from None
        if not 0 < value <= 50:
            raise ValueError("epochs must be between 0 and 50")
        return value

    def _update_estimate(self) -> None:
        if self.dataset is None:
            return
        try:
            epochs = self._epochs()
        except ValueError as exc:
            self.query_one("#estimate", Static).update(f"[red]{exc}[/red]")
            return
        measured = self.rate is not None
        rate = self.rate or CPU_TOKENS_PER_S_PER_CORE * (os.cpu_count() or 2)
        tokens = self.dataset.stats["train_token_estimate"]
        base = self.query_one("#base", Select).value
        note = "" if base == DEFAULT_BASE else " (for the default base; larger bases are slower)"
        source = "this machine's last run" if measured else "a typical CPU"
        self.query_one("#estimate", Static).update(
            f"Training on [b]{self.device}[/b]: {tokens * epochs:,.0f} tokens, "
            f"{rough_duration(estimate_seconds(tokens, epochs, rate))} at {rate:.0f} tokens/s "
            f"(from {source}){note}. You can stop and resume at any time."
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

        try:
            epochs, base = self._epochs(), self._base_spec()
        except ValueError as exc:
            self.notify(str(exc), severity="warning")
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
