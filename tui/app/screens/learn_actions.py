"""The Learn screen's versions and judge: keep an update anyway, roll back, the constitution
dialog and the judge switch (`learn.LearnScreen`'s docstring says how they fit in).

`LearnActions` is a mixin of `LearnScreen`: it uses the screen's widgets, `model_id`,
`person`, `state`, `outcome`, `current`, `endpoint`, `has_constitution` and `autoload`.
"""

from __future__ import annotations

from typing import Any, cast

from textual import work
from textual.widgets import Button, DataTable, Static, Switch

from convsim.tui.app.messages import JudgeLoaded, VersionUsed, post, reporting

NO_ENDPOINT = "No judge: configure an endpoint first (convsim memory endpoint URL --model M)."
BUTTONS = {"learn-keep": "action_keep", "learn-rollback": "action_rollback",
           "learn-constitution": "action_constitution"}  # fmt: skip
NO_CONSTITUTION = "The judge needs a constitution to judge by: c writes one."


class LearnActions:
    """Versions and the judge, for `LearnScreen`. Needs from the screen, besides the
    attributes below: `app`, `query_one`, `notify`, `has_class`, `remove_class`, `_load`."""

    app: Any
    query_one: Any
    notify: Any
    remove_class: Any
    has_class: Any
    _load: Any
    model_id: str
    person: str
    state: str
    outcome: dict[str, Any] | None
    current: int | None
    endpoint: str | None
    has_constitution: bool
    autoload: bool

    def _read_judge(self, ws: Any) -> None:
        """In a worker: post whether the judge can run (an endpoint, a constitution)."""
        from convsim.core.learning import constitution
        from convsim.core.memory.endpoint import endpoint_settings

        found = endpoint_settings(ws.store)
        endpoint = f"{found[0]} ({found[1] or 'default model'})" if found else None
        post(cast(Any, self), JudgeLoaded(endpoint, bool(constitution(ws, self.model_id).strip())))

    # Handlers go by Textual's naming convention: `@on` handlers of a mixin are not collected.
    def on_judge_loaded(self, message: JudgeLoaded) -> None:
        self.endpoint, self.has_constitution = message.endpoint, message.has_constitution
        self._show_judge()

    def _show_judge(self) -> None:
        switch = self.query_one("#learn-judge", Switch)
        switch.disabled = self.endpoint is None
        if self.endpoint is None:
            switch.value = False
            hint = NO_ENDPOINT
        elif not self.has_constitution:
            hint = NO_CONSTITUTION
        else:
            hint = f"Asks {self.endpoint} which of two replies fits the constitution better."
        self.query_one("#learn-judge-hint", Static).update(hint)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        action = BUTTONS.get(event.button.id or "")
        if action is not None:
            getattr(self, action)()

    # -- versions -----------------------------------------------------------------------------

    def action_keep(self) -> None:
        if self.outcome is not None and self.has_class("-not-promoted"):
            self._use(self.outcome["version"], True)

    def action_rollback(self) -> None:
        table = self.query_one("#learn-versions", DataTable)
        if self.state == "running" or not table.row_count:
            return
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        version = int(key.value or 0)
        if version == self.current:
            self.notify(f"Version {version} is already the one the chat uses.")
            return
        self._use(version, False)

    @work(thread=True, exit_on_error=False, group="learn-use", description="use a version")
    def _use(self, version: int, keep: bool) -> None:
        from convsim.core.training.versions import use_version

        app: Any = self.app
        with reporting(cast(Any, self), f"Could not use version {version}", "learn-use"):
            with app.workspace() as ws:
                now = use_version(ws.store, self.model_id, version)
            post(cast(Any, self), VersionUsed(now.version, keep))

    def on_version_used(self, message: VersionUsed) -> None:
        self.current = message.version
        if message.kept:
            self.remove_class("-not-promoted")
        self.notify(f"The chat now uses version {message.version}.", title="Version",
                    markup=False)  # fmt: skip
        if self.autoload:
            self._load()

    # -- the judge ----------------------------------------------------------------------------

    def action_constitution(self) -> None:
        from convsim.tui.app.screens.constitution import ConstitutionDialog

        def saved(text: str | None) -> None:
            if text is not None:
                self.has_constitution = bool(text.strip())
                self._show_judge()

        self.app.push_screen(ConstitutionDialog(self.model_id, self.person), saved)

    def action_toggle_judge(self) -> None:
        switch = self.query_one("#learn-judge", Switch)
        if switch.disabled:
            self.notify(NO_ENDPOINT, markup=False)
        else:
            switch.value = not switch.value
