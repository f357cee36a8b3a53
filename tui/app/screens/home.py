"""Home: the imported chats and the trained personas; the way into every other screen.

The store is read by a worker (`StoreListed`); personas are loaded by a worker too
(`PersonaReady`). Chat titles and names go into the tables escaped, never as markup."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static
from textual.worker import get_current_worker

from convsim.tui.app.messages import PersonaReady, StoreListed, post, reporting

WELCOME = (
    "No chats yet. Press [b]i[/b] to import a chat export (WhatsApp, Telegram, Discord, "
    "Signal, iMessage, Messenger/Instagram, SMS backup, CSV) — or [b]s[/b] for the sample chat."
)


CHAT_COLUMNS = ("id", "chat", "format", "messages", "from", "to", "people")
PERSONA_COLUMNS = ("persona", "writes as", "status", "chat", "val loss", "base")


def _fill(
    table: DataTable[Any], labels: tuple[str, ...], rows: list[tuple[str, list[str]]]
) -> None:
    """Replace `table`'s columns and rows. Columns get their width from their text here:
    DataTable widens auto-width columns only when idle, and a header drawn before that keeps
    its old widths. Cells are escaped: DataTable reads a str cell as Rich markup, and titles
    and names are the user's (a name like "[b]Bob" must not turn bold or break)."""
    table.clear(columns=True)
    for i, label in enumerate(labels):
        table.add_column(label, width=max([cell_len(label)] + [cell_len(r[i]) for _, r in rows]))
    for key, cells in rows:
        table.add_row(*map(escape, cells), key=key)


def _day(timestamp: str | None) -> str:
    return (timestamp or "")[:10]


def _val_loss(metrics: dict[str, Any] | None) -> str:
    value = (metrics or {}).get("val_loss")
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


class HomeScreen(Screen[None]):
    BINDINGS = [
        Binding("i", "import_chat", "Import"),
        Binding("s", "import_sample", "Sample"),
        Binding("t", "train", "Train"),
        Binding("o", "open_chat", "Chat"),
        Binding("b", "base_chat", "Base"),
        Binding("r", "resume", "Resume", show=False),
        Binding("m", "memory", "Memory"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("l", "learn", "Learn", show=False),
        Binding("x", "forget", "Forget"),
        Binding("f4", "reload", "Refresh", show=False),
    ]

    has_chats = reactive(True)
    """False shows the welcome text in place of the empty chat list."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False
        self.chat_count = 0
        self.persona_count = 0
        self._models: dict[str, Any] = {}
        self._chats: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="home"):
            yield Label("Chats", classes="section-title")
            yield DataTable(id="chats", cursor_type="row", zebra_stripes=True)
            yield Static(WELCOME, id="welcome")
            yield Label("Personas", classes="section-title")
            yield DataTable(id="personas", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def watch_has_chats(self, has_chats: bool) -> None:
        self.query_one("#welcome").set_class(has_chats, "-hidden")

    def on_mount(self) -> None:
        _fill(self.query_one("#chats", DataTable), CHAT_COLUMNS, [])
        _fill(self.query_one("#personas", DataTable), PERSONA_COLUMNS, [])
        self.action_reload()

    def on_screen_resume(self) -> None:
        if self.loaded:
            self.action_reload()

    def action_reload(self) -> None:
        self._list_store()

    @work(thread=True, exclusive=True, exit_on_error=False, group="list",
          description="list the store")  # fmt: skip
    def _list_store(self) -> None:
        app: Any = self.app
        with reporting(self, "Could not read the store", "list"), app.workspace() as ws:
            post(self, StoreListed(ws.store.chats(), ws.store.models()))

    @on(StoreListed)
    def _show(self, listed: StoreListed) -> None:
        from convsim.core.training import shown_status

        chats, models = listed.chats, listed.models
        rows = [
            (str(c.id), [str(c.id), c.title, c.format, str(c.messages), _day(c.first),
                         _day(c.last), ", ".join(c.participants)])
            for c in chats
        ]  # fmt: skip
        _fill(self.query_one("#chats", DataTable), CHAT_COLUMNS, rows)
        self._chats = {str(c.id): c for c in chats}
        self._models = {m.id: m for m in models}
        rows = [
            (m.id, [m.id, m.person, shown_status(m), "–" if m.chat_id is None else str(m.chat_id),
                    _val_loss(m.metrics), m.base.rsplit("/", 1)[-1]])
            for m in models
        ]  # fmt: skip
        _fill(self.query_one("#personas", DataTable), PERSONA_COLUMNS, rows)
        self.has_chats = bool(chats)
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

    def _ready_persona(self) -> Any:
        """The selected persona's record if it has finished training; else None, said."""
        from convsim.core.training import shown_status

        model_id = self._selected("#personas")
        if model_id is None:
            self.notify("No personas yet: select a chat and press t to train one.")
            return None
        record = self._models[model_id]
        if record.status != "ready":
            status = shown_status(record)
            self.notify(
                f"{model_id} is training now: it opens when it has finished."
                if status == "training"
                else f"{model_id} is {status}; press r to resume its training.",
                severity="warning",
                markup=False,
            )
            return None
        return record

    def action_open_chat(self) -> None:
        record = self._ready_persona()
        if record is not None:
            self._open_persona(record.id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="open",
          description="load a persona")  # fmt: skip
    def _open_persona(self, model_id: str | None) -> None:
        """Load `model_id`, or the default base model when None; posts `PersonaReady`."""
        from convsim.tui.app.screens.chat_persona import persona_from_base, persona_from_model

        what = f"Could not open {model_id}" if model_id else "Could not open the default base model"
        with reporting(self, what, "open"):
            if model_id is None:
                persona = persona_from_base(self.app)
            else:
                persona = persona_from_model(self.app, model_id)
            # A newer request replaced this one, or the app has quit: nobody wants this engine.
            if get_current_worker().is_cancelled or not post(self, PersonaReady(persona)):
                persona.engine.close()

    @on(PersonaReady)
    def _persona_ready(self, message: PersonaReady) -> None:
        from convsim.tui.app.screens.chat import ChatScreen

        self.app.push_screen(ChatScreen(message.persona))

    def action_base_chat(self) -> None:
        """Talk to the plain default base model: useful before any persona is trained."""
        self.notify("Preparing the default base model…")
        self._open_persona(None)

    def action_resume(self) -> None:
        from convsim.core.training import shown_status
        from convsim.tui.app.screens.training import TrainingScreen

        model_id = self._selected("#personas")
        if model_id is None:
            return
        status = shown_status(self._models[model_id])
        if status in ("ready", "training"):
            said = "has finished training" if status == "ready" else "is training now"
            self.notify(f"{model_id} {said}.", markup=False)
            return
        self.app.push_screen(TrainingScreen(resume=model_id))

    def action_evaluate(self) -> None:
        """Is it really them? The selected persona's evaluation suite, as charts."""
        from convsim.tui.app.screens.evaluate import EvaluateScreen

        record = self._ready_persona()
        if record is not None:
            self.app.push_screen(EvaluateScreen(record.id, record.person))

    def action_learn(self) -> None:
        """The persona keeps learning: updates from feedback and new messages, versions."""
        from convsim.tui.app.screens.learn import LearnScreen

        record = self._ready_persona()
        if record is not None:
            self.app.push_screen(LearnScreen(record.id, record.person))

    def action_memory(self) -> None:
        """The memory panel of the selected chat: what convsim knows about its people."""
        from convsim.tui.app.screens.memory import MemoryScreen

        chat_id = self._selected("#chats")
        if chat_id is None:
            self.notify("No chats yet: import one first (press i).")
            return
        self.app.push_screen(MemoryScreen(int(chat_id)))

    def action_forget(self) -> None:
        """Forget the selected chat, or one of its people in every chat, after a dialog that
        lists everything that will go."""
        from convsim.tui.app.screens.forget import ForgetDialog

        chat_id = self._selected("#chats")
        if chat_id is None:
            self.notify("Nothing to forget: no chats yet.")
            return
        chat = self._chats[chat_id]

        def done(forgotten: bool | None) -> None:
            if forgotten:
                self.action_reload()

        self.app.push_screen(ForgetDialog(chat.id, chat.title, list(chat.participants)), done)
