"""The convsim app: a Textual front end over `convsim.core`.

Screens: home (chats and personas) → import wizard → training → chat. Every long job (parsing,
training, loading a model, generating) and every read or write of the store or of files runs in
an `@work(thread=True)` worker; the UI thread only draws. Workers open their own `Workspace`
(SQLite connections belong to the thread that opened them) and report back by posting the typed
messages of `messages.py`. Failures arrive as `JobFailed` and become notifications, never
tracebacks; text that comes from the user's data is never read as markup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App
from textual.binding import Binding

from convsim.core.store import is_damage
from convsim.tui.app.messages import JobFailed, ThemeLoaded, post, reporting

THEMES = ("textual-dark", "textual-light")


class ConvsimApp(App[None]):
    """`home`: the convsim home folder (None = the usual one, or CONVSIM_HOME)."""

    TITLE = "convsim"
    SUB_TITLE = "talk like the people you text"
    CSS_PATH = Path(__file__).with_name("convsim.tcss")  # absolute: subclasses live elsewhere
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f5", "toggle_theme", "Theme", show=False),
    ]

    def __init__(self, home: Path | None = None) -> None:
        super().__init__()
        self.home = home

    @contextlib.contextmanager
    def workspace(self) -> Iterator[Any]:
        """A workspace for the calling thread; closed when the block ends."""
        from convsim.core.workspace import Workspace

        ws = Workspace.open(self.home)  # safe from several threads: migrations take turns
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

        self.push_screen(HomeScreen())
        self._load_theme()

    @work(thread=True, exit_on_error=False, group="theme", description="read the theme")
    def _load_theme(self) -> None:
        # An unreadable store must not stop the app from opening: the failure is a notification.
        with reporting(self, "Could not open the convsim store", "theme"), self.workspace() as ws:
            post(self, ThemeLoaded(ws.store.setting("ui.theme")))

    @on(ThemeLoaded)
    def _theme_loaded(self, message: ThemeLoaded) -> None:
        if message.theme in THEMES:
            self.theme = message.theme

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]
        self._save_theme(self.theme)

    @work(thread=True, exclusive=True, exit_on_error=False, group="theme-save",
          description="save the theme")  # fmt: skip
    def _save_theme(self, theme: str) -> None:
        with contextlib.suppress(Exception), self.workspace() as ws:  # a preference, not data
            ws.store.set_setting("ui.theme", theme)

    # -- errors -------------------------------------------------------------------------------

    @on(JobFailed)
    def _job_failed(self, message: JobFailed) -> None:
        self.report_error(message.what, message.error)

    def report_error(self, what: str, exc: BaseException) -> None:
        """Show a failure as a notification: what failed, and the error's own sentence (shown
        as it is: an error may quote a file name or a message with brackets in it)."""
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, MemoryError):
            detail = "out of memory: close other programs, or pick a smaller base model"
        elif is_damage(exc):
            detail += "; quit and run `convsim doctor` (it can restore the last backup)"
        self.notify(detail, title=what, severity="error", timeout=12, markup=False)


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
