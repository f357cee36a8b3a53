"""Saving and reopening a chat screen's conversation (Ctrl+S, Ctrl+L) as transcript files.

A mixin for `ChatScreen`: the files are written, listed and read by `@work` workers; the
results come back as messages handled here by name (`on_transcript_saved`, ...), which Textual
finds on mixins as on the screen itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work

from convsim.tui.app.messages import (
    TranscriptLoaded,
    TranscriptSaved,
    TranscriptsListed,
    post,
    reporting,
)
from convsim.tui.app.screens.chat_widgets import OpenDialog
from convsim.tui.app.widgets import short_path


class TranscriptActions:
    """Needs from the screen: `app`, `turns`, `persona`, `generating`, `notify`, `_redraw`
    and `_status`."""

    app: Any
    turns: list[tuple[str, str]]
    persona: Any
    generating: bool
    _redraw: Callable[[], None]
    _status: Callable[[str], None]

    def _transcripts(self) -> Path:
        return Path(self.app.locations.transcripts)

    def action_save(self) -> None:
        if not self.turns:
            self.app.notify("Nothing to save yet.")
            return
        self._save(self.persona.model_id or self.persona.speaker, list(self.turns))

    @work(thread=True, exit_on_error=False, group="transcripts", description="save a transcript")
    def _save(self, name: str, turns: list[tuple[str, str]]) -> None:
        from convsim.core.data import transcripts

        screen: Any = self
        with reporting(screen, "Could not save the transcript", "transcripts"):
            path = transcripts.save(self._transcripts(), name, turns)
            post(screen, TranscriptSaved(path))

    def on_transcript_saved(self, message: TranscriptSaved) -> None:
        self.app.notify(
            f"Saved to {short_path(message.path)}", title="Transcript saved", markup=False
        )

    def action_load(self) -> None:
        if not self.generating:
            self._list_transcripts()

    @work(thread=True, exit_on_error=False, group="transcripts", description="list transcripts")
    def _list_transcripts(self) -> None:
        from convsim.core.data import transcripts

        screen: Any = self
        with reporting(screen, "Could not list the transcripts", "transcripts"):
            post(screen, TranscriptsListed(transcripts.saved(self._transcripts())))

    def on_transcripts_listed(self, message: TranscriptsListed) -> None:
        if not message.files:
            self.app.notify("No saved transcripts yet (Ctrl+S saves one).")
            return

        def chosen(path: Path | None) -> None:
            if path is not None:
                self._load(path)

        self.app.push_screen(OpenDialog(message.files), chosen)

    @work(thread=True, exit_on_error=False, group="transcripts", description="open a transcript")
    def _load(self, path: Path) -> None:
        from convsim.core.data import transcripts

        screen: Any = self
        with reporting(screen, "Could not open the transcript", "transcripts"):
            post(screen, TranscriptLoaded(path, transcripts.load(path)))

    def on_transcript_loaded(self, message: TranscriptLoaded) -> None:
        if self.generating:
            return  # a reply started meanwhile: it owns the conversation now
        self.turns = message.turns
        self._redraw()
        self._status(f"Opened {message.path.name}: {len(self.turns)} messages.")
