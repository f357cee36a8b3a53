"""The convsim app: a Textual front end over `convsim.core`.

Screens: home (chats and personas) → import wizard → training → chat. Every long job (parsing,
training, loading a model, generating) runs in a thread worker; the UI thread only draws.
Workers open their own `Workspace` (SQLite connections belong to the thread that opened them)
and report back with `App.call_from_thread`. Failures become notifications, never tracebacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding

THEMES = ("textual-dark", "textual-light")


class ConvsimApp(App[None]):
    """`home`: the convsim home folder (None = the usual one, or CONVSIM_HOME)."""

    TITLE = "convsim"
    SUB_TITLE = "talk like the people you text"
    CSS_PATH = Path(__file__).with_name("convsim.tcss")  # absolute: subclasses live elsewhere
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f5", "toggle_theme", "Theme"),
    ]

    def __init__(self, home: Path | None = None) -> None:
        super().__init__()
        self.home = home

    @contextlib.contextmanager
    def workspace(self) -> Iterator[Any]:
        """A workspace for the calling thread; closed when the block ends."""
        from convsim.core.workspace import Workspace

        ws = Workspace.open(self.home)
        try:
            yield ws
        finally:
            ws.close()

    @property
    def locations(self) -> Any:
        """Where this app's data lives (no store opened)."""
        from convsim.core.locations import Locations

        return Locations.from_env(self.home)

    def on_mount(self) -> None:
        from convsim.tui.app.screens.home import HomeScreen

        try:
            with self.workspace() as ws:
                saved = ws.store.setting("ui.theme")
        except Exception as exc:  # an unreadable store must not stop the app from opening
            self.report_error("Could not open the convsim store", exc)
            saved = None
        if saved in THEMES:
            self.theme = saved
        self.push_screen(HomeScreen())

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]
        with contextlib.suppress(Exception), self.workspace() as ws:
            ws.store.set_setting("ui.theme", self.theme)

    # -- errors and workers -------------------------------------------------------------------

    def report_error(self, what: str, exc: BaseException) -> None:
        """Show a failure as a notification: what failed, and the error's own sentence."""
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, MemoryError):
            detail = "out of memory: close other programs, or pick a smaller base model"
        self.notify(detail, title=what, severity="error", timeout=12)

    def in_thread(
        self,
        what: str,
        job: Callable[[], Any],
        done: Callable[[Any], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        group: str = "default",
    ) -> Any:
        """Run `job` in a thread worker; `done(result)` or `failed(exc)` then run on the UI
        thread. A failure is always reported as a notification headed `what`."""

        def run() -> None:
            try:
                result = job()
            except Exception as exc:
                self.tell(self.report_error, what, exc)
                if failed is not None:
                    self.tell(failed, exc)
                return
            if done is not None:
                self.tell(done, result)

        return self.run_worker(run, thread=True, group=group, exit_on_error=False)

    def tell(self, callback: Callable[..., Any], *args: Any) -> bool:
        """From a worker: `callback(*args)` on the UI thread. False when the app has quit
        meanwhile (nobody is left to tell)."""
        try:
            self.call_from_thread(callback, *args)
        except Exception:
            if self.is_running:
                raise
            return False
        return True


def run_app(home: Path | None = None) -> int:
    ConvsimApp(home).run()
    return 0


def smoke_test(home: Path | None = None, timeout: float = 30.0) -> str:
    """Start the app headless, wait for the home screen to list what is stored, quit. Returns
    one line for the caller to print; raises RuntimeError when the home screen never appears."""
    import asyncio

    from convsim.tui.app.screens.home import HomeScreen

    seen: dict[str, Any] = {}

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(headless=True, size=(100, 30)) as pilot:
            for _ in range(int(timeout * 10)):
                await pilot.pause(0.1)
                screen = app.screen
                if isinstance(screen, HomeScreen) and screen.loaded:
                    seen["chats"] = screen.chat_count
                    seen["personas"] = screen.persona_count
                    break
            await app.action_quit()

    asyncio.run(drive())
    if not seen:
        raise RuntimeError(f"the home screen did not load within {timeout:.0f} s")
    return (
        f"convsim app: started headless, home screen shows {seen['chats']} chats and "
        f"{seen['personas']} personas, quit cleanly"
    )


__all__ = ["ConvsimApp", "run_app", "smoke_test"]
