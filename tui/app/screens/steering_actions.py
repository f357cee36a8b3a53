"""The chat screen's side of steering (F8): it keeps the persona's vectors, mixes the sliders'
positions for the engine, builds new axes and removes vectors (`core.steering`).

`SteeringActions` (a mixin like `chat_memory.MemoryActions`) mixes the positions
(`core.steering.mix`) on the UI thread and leaves the result as *pending*: the engine is not
thread-safe, so the reply worker, holding the engine's lock, hands the pending mix to
`Engine.set_steering` right before it generates (`steering_for_reply`). A change therefore
applies to the next reply, never to one streaming.

Vectors are read in a worker when the panel first opens. A new axis is built in a worker
(`core.steering.build_vector`, minutes on a CPU) that reports `SteerBuildProgress`; Stop sets its
cancel event; any failure is shown in the panel (`SteerBuildEnded`), never raised. Delete on a
slider asks first, then deletes the vector's file in a worker (`SteerRemoved`); its slider goes
and the next reply is mixed without it.
Handlers are `on_<message>` methods: Textual finds those on mixins, not `@on` ones.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from textual import work

from convsim.tui.app.messages import (
    SteerBuildEnded,
    SteerBuildProgress,
    SteeringLoaded,
    SteerRemoved,
    post,
)
from convsim.tui.app.screens.steering import NO_PERSONA, NO_VECTORS, SteeringPanel
from convsim.tui.app.screens.steering_widgets import SteerSlider, mix_note
from convsim.tui.app.widgets import ConfirmDialog

_UNCHANGED = object()  # no new mix for the engine


class SteeringActions:
    """Needs from the screen: `app`, `persona` (with `model_path` and `model_id`), `notify`,
    `query_one`, `focused`, `refresh_status`, `call_after_refresh`."""

    app: Any
    persona: Any
    notify: Any
    query_one: Any
    focused: Any
    refresh_status: Any
    call_after_refresh: Any

    def _init_steering(self) -> None:
        self.steer_vectors: dict[str, Any] = {}  # name -> core.steering.Vector
        self.steer_values: dict[str, float] = {}  # name -> slider position
        self.steer_loaded = False  # the vectors have been read (the panel was opened)
        self.steer_building = False
        self.steering_applied: Any = None  # the mix the engine steers with (None: none)
        self._steer_loading = False
        self._steer_lock = threading.Lock()  # guards the pending mix between threads
        self._steer_pending: Any = _UNCHANGED
        self._build_cancel: threading.Event | None = None

    @property
    def steering_panel(self) -> SteeringPanel:
        panel: SteeringPanel = self.query_one(SteeringPanel)
        return panel

    # -- the mix, and the engine (called from the reply worker) ---------------------------------

    def steering_note(self) -> str:
        """For the status line: the sliders not at 0 ("" when none)."""
        return mix_note({k: v for k, v in self.steer_values.items() if k in self.steer_vectors})

    def steering_for_reply(self) -> None:
        """In a worker holding the engine's lock: give the engine the latest mix, if it
        changed since the last reply."""
        with self._steer_lock:
            pending, self._steer_pending = self._steer_pending, _UNCHANGED
        if pending is _UNCHANGED:
            return
        engine = self.persona.engine
        if pending is None:
            engine.set_steering(None)
        else:
            engine.set_steering(*pending)
        self.steering_applied = pending

    def _mix(self, values: dict[str, float]) -> None:
        """Mix `values` for the next reply and show them in the status line."""
        from convsim.core.steering import library

        self.steer_values = {k: v for k, v in values.items() if k in self.steer_vectors}
        try:
            mixed = library.mix(self.steer_values, self.steer_vectors)
        except (KeyError, ValueError) as e:
            self.steering_panel.note(f"Cannot mix these sliders: {e}", failure=True)
            return
        with self._steer_lock:
            self._steer_pending = mixed
        self.refresh_status()

    def on_steering_panel_mix_changed(self, message: SteeringPanel.MixChanged) -> None:
        self._mix(message.values)

    # -- the panel ------------------------------------------------------------------------------

    def action_steering(self) -> None:
        panel = self.steering_panel
        panel.toggle_class("-hidden")
        if panel.has_class("-hidden"):
            if self.focused is not None and panel in self.focused.ancestors:
                self.query_one("#draft").focus()
            return
        if self.persona.model_path is None:
            panel.note(NO_PERSONA)
            panel.form_enabled(False)
        elif not self.steer_loaded and not self._steer_loading:
            self._steer_loading = True
            self._load_vectors(Path(self.persona.model_path), Path(self.persona.engine.model.path))
        self.call_after_refresh(self._focus_first_slider)

    @work(thread=True, exit_on_error=False, group="steer-load", description="read the sliders")
    def _load_vectors(self, model_path: Path, model_file: Path) -> None:
        from convsim.core.steering import library
        from convsim.core.steering.build import BASE_ID

        model_id = self.persona.model_id or (BASE_ID if self.persona.plain_base else None)
        how = "" if model_id is None else " (convsim steer remove {} {} removes it)"

        found: list[Any] = []
        problems: list[str] = []
        fits: tuple[str, int, int] | None = None
        try:
            fits = library.model_fits(model_file)
        except (OSError, ValueError) as e:
            problems.append(f"the model's sizes are unknown ({e})")
        try:
            files = sorted(library.folder(model_path).glob("*.gguf"))
        except OSError as e:
            files, problems = [], [*problems, str(e)]
        for path in files:
            try:
                found.append(library.load(path, fits))
            except (OSError, ValueError) as e:
                problems.append(f"{e}{how.format(model_id, path.stem)}")
        screen: Any = self  # a Screen: the mixin is not one itself
        post(screen, SteeringLoaded(found, problems))

    def on_steering_loaded(self, message: SteeringLoaded) -> None:
        self._steer_loading = False
        self.steer_loaded = True
        self.steer_vectors = {v.name: v for v in message.vectors}
        panel = self.steering_panel
        panel.show_vectors(message.vectors, self.steer_values)
        lines = [*message.problems] or ([] if message.vectors else [NO_VECTORS])
        panel.note("\n".join(lines), failure=bool(message.problems))
        if not panel.has_class("-hidden") and (self.focused is None or self.focused.id == "draft"):
            self.call_after_refresh(self._focus_first_slider)

    def _focus_first_slider(self) -> None:
        sliders = self.steering_panel.sliders()
        if sliders:
            sliders[0].focus()

    # -- building a new axis ----------------------------------------------------------------

    def on_steering_panel_build_asked(self, message: SteeringPanel.BuildAsked) -> None:
        panel = self.steering_panel
        if self.steer_building:
            return
        from convsim.core.steering.build import BASE_ID

        # A persona on record, or the plain base (its vectors in the data folder).
        model_id = self.persona.model_id or (BASE_ID if self.persona.plain_base else None)
        if model_id is None:
            panel.build_note("Building needs a trained persona on record.", failure=True)
            return
        self.steer_building = True
        self._build_cancel = threading.Event()
        panel.building(True)
        panel.build_note(f"Building {message.name!r}…")
        self._build_vector(
            model_id, message.name, message.positive, message.negative, self._build_cancel
        )

    def on_steering_panel_stop_asked(self, message: SteeringPanel.StopAsked) -> None:
        self.stop_steering_build()

    def stop_steering_build(self) -> None:
        if self._build_cancel is not None:
            self._build_cancel.set()

    @work(thread=True, exit_on_error=False, group="steer-build", description="build a slider")
    def _build_vector(
        self, model_id: str, name: str, positive: str, negative: str, cancel: threading.Event
    ) -> None:
        from convsim.core import steering

        app: Any = self.app
        screen: Any = self  # a Screen: the mixin is not one itself
        vector, error = None, None
        last: dict[str, float] = {}  # stage -> when its last event was posted

        def report(event: Any) -> None:  # a stage's events: at most 10 a second
            now = time.monotonic()
            if event.done >= event.total or now >= last.get(event.stage, 0.0) + 0.1:
                last[event.stage] = now
                post(screen, SteerBuildProgress(event))

        try:
            spec = steering.Spec(name, poles=(positive, negative))
            with app.workspace() as ws:
                vector = steering.build_vector(ws, model_id, spec, on_event=report, cancel=cancel)
        except KeyError as e:
            error = str(e.args[0]) if e.args else "unknown model"
        except MemoryError:
            error = "out of memory: close other programs and try again"
        except Exception as e:  # Cancelled, ValueError, PairsError: their sentence says it
            error = str(e) or type(e).__name__
        post(screen, SteerBuildEnded(vector, error))

    def on_steer_build_progress(self, message: SteerBuildProgress) -> None:
        if self.steer_building:
            self.steering_panel.progress(message.event)

    def on_steer_build_ended(self, message: SteerBuildEnded) -> None:
        self.steer_building = False
        self._build_cancel = None
        panel = self.steering_panel
        panel.building(False)
        vector = message.vector
        if vector is None:
            panel.build_note(message.error or "Building stopped.", failure=True)
            return
        self.steer_vectors[vector.name] = vector
        self.steer_values[vector.name] = 0.0
        slider = panel.add_vector(vector, set(self.steer_vectors))
        panel.note("")
        panel.build_note(f"New slider: {vector.name}")
        self.notify(f"New steering slider: {vector.name}")
        self._mix(panel.values() | {vector.name: 0.0})
        slider.focus()

    # -- removing a vector ------------------------------------------------------------------

    def on_steer_slider_remove_asked(self, message: SteerSlider.RemoveAsked) -> None:
        vector = self.steer_vectors.get(message.key)
        if vector is None:
            return
        negative, positive = vector.poles[1], vector.poles[0]
        body = (
            f"The slider {vector.name} ({negative} ← → {positive}) is deleted, with its file "
            f"{vector.path}. Building it again takes a few minutes."
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._remove_vector(Path(vector.path), vector.name)

        self.app.push_screen(ConfirmDialog("Remove this slider?", body, "Remove"), confirmed)

    @work(thread=True, exit_on_error=False, group="steer-remove", description="remove a slider")
    def _remove_vector(self, path: Path, name: str) -> None:
        """Delete the file the slider's vector was read from (whatever its name on disk)."""
        error = None
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            error = str(e)
        screen: Any = self  # a Screen: the mixin is not one itself
        post(screen, SteerRemoved(name, error))

    def on_steer_removed(self, message: SteerRemoved) -> None:
        panel = self.steering_panel
        if message.error is not None:
            panel.note(f"Could not remove {message.name}: {message.error}", failure=True)
            return
        self.steer_vectors.pop(message.name, None)
        values = {k: v for k, v in panel.values().items() if k != message.name}
        after = panel.remove_vector(message.name, set(self.steer_vectors))
        self._mix(values)
        if not self.steer_vectors:
            panel.note(NO_VECTORS)
        self.notify(f"Removed the steering slider {message.name}")
        (after or self.query_one("#draft")).focus()
