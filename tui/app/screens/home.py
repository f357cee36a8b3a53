"""Home: the imported chats and the trained personas; the way into every other screen."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

WELCOME = (
    "No chats yet. Press [b]i[/b] to import a chat export (WhatsApp, Telegram, Discord, "
    "Signal, iMessage, Messenger/Instagram, SMS backup, CSV) — or [b]s[/b] for the sample chat."
)


def _day(timestamp: str | None) -> str:
    return (timestamp or "")[:10]


def _val_loss(metrics: dict[str, Any] | None) -> str:
    value = (metrics or {}).get("val_loss")
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


class HomeScreen(Screen[None]):
    BINDINGS = [
        Binding("i", "import_chat", "Import"),
        Binding("s", "import_sample", "Sample chat"),
        Binding("t", "train", "Train"),
        Binding("o", "open_chat", "Chat"),
        Binding("b", "base_chat", "Chat with base"),
        Binding("r", "resume", "Resume", show=False),
        Binding("f4", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False
        self.chat_count = 0
        self.persona_count = 0
        self._models: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="home"):
            yield Label("Chats", classes="section-title")
            yield DataTable(id="chats", cursor_type="row", zebra_stripes=True)
            yield Static(WELCOME, id="welcome")
            yield Label("Personas", classes="section-title")
            yield DataTable(id="personas", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        chats = self.query_one("#chats", DataTable)
        chats.add_columns("id", "chat", "format", "messages", "from", "to", "people")
        personas = self.query_one("#personas", DataTable)
        personas.add_columns("persona", "writes as", "status", "chat", "val loss", "base")
        self.action_reload()

    def on_screen_resume(self) -> None:
        if self.loaded:
            self.action_reload()

    def action_reload(self) -> None:
        def load() -> tuple[list[Any], list[Any]]:
            with self.app.workspace() as ws:  # type: ignore[attr-defined]
                return ws.store.chats(), ws.store.models()

        self.app.in_thread("Could not read the store", load, self._show)  # type: ignore[attr-defined]

    def _show(self, loaded: tuple[list[Any], list[Any]]) -> None:
        chats, models = loaded
        table = self.query_one("#chats", DataTable)
        table.clear()
        for c in chats:
            people = ", ".join(c.participants)
            table.add_row(
                str(c.id), c.title, c.format, str(c.messages), _day(c.first), _day(c.last),
                people, key=str(c.id),
            )  # fmt: skip
        table = self.query_one("#personas", DataTable)
        table.clear()
        self._models = {m.id: m for m in models}
        for m in models:
            base = m.base.rsplit("/", 1)[-1]
            chat = str(m.chat_id) if m.chat_id is not None else "–"
            table.add_row(m.id, m.person, m.status, chat, _val_loss(m.metrics), base, key=m.id)
        self.query_one("#welcome").display = not chats
        self.chat_count, self.persona_count = len(chats), len(models)
        self.loaded = True

    # -- actions ------------------------------------------------------------------------------

    def _selected(self, table_id: str) -> str | None:
        table = self.query_one(table_id, DataTable)
        if not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return key.value

    def action_import_chat(self) -> None:
        from convsim.tui.app.screens.wizard import ImportWizard

        self.app.push_screen(ImportWizard())

    def action_import_sample(self) -> None:
        from convsim.core.workspace import SAMPLE_CHAT
        from convsim.tui.app.screens.wizard import ImportWizard

        self.app.push_screen(ImportWizard(start_path=SAMPLE_CHAT))

    def action_train(self) -> None:
        from convsim.tui.app.screens.wizard import ImportWizard

        chat_id = self._selected("#chats")
        if chat_id is None:
            self.notify("Import a chat first (press i).", severity="warning")
            return
        self.app.push_screen(ImportWizard(chat_id=int(chat_id)))

    def action_open_chat(self) -> None:
        model_id = self._selected("#personas")
        if model_id is None:
            self.notify("No personas yet: select a chat and press t to train one.")
            return
        record = self._models[model_id]
        if record.status != "ready":
            self.notify(
                f"{model_id} is {record.status}; press r to resume its training.",
                severity="warning",
            )
            return
        from convsim.tui.app.screens.chat import ChatScreen, persona_from_model

        def opened(persona: Any) -> None:
            self.app.push_screen(ChatScreen(persona))

        self.app.in_thread(  # type: ignore[attr-defined]
            f"Could not open {model_id}",
            lambda: persona_from_model(self.app, model_id),  # type: ignore[arg-type]
            opened,
        )

    def action_base_chat(self) -> None:
        """Talk to the plain default base model: useful before any persona is trained."""
        from convsim.tui.app.screens.chat import ChatScreen, persona_from_base

        self.notify("Preparing the default base model…")
        self.app.in_thread(  # type: ignore[attr-defined]
            "Could not open the default base model",
            lambda: persona_from_base(self.app),  # type: ignore[arg-type]
            lambda persona: self.app.push_screen(ChatScreen(persona)),
        )

    def action_resume(self) -> None:
        from convsim.tui.app.screens.training import TrainingScreen

        model_id = self._selected("#personas")
        if model_id is None:
            return
        if self._models[model_id].status == "ready":
            self.notify(f"{model_id} has finished training.")
            return
        self.app.push_screen(TrainingScreen(resume=model_id))
