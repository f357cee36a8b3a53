"""Forgetting a chat or a person (`convsim forget`): the messages and everything made from them
go (datasets, models and their exports, transcripts), and the text is gone from the bytes of
every file under the data folder, the database file and its WAL included."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from convsim.core.data import transcripts
from convsim.core.data.dataset import DatasetConfig
from convsim.core.store import backup_store
from convsim.core.workspace import SAMPLE_CHAT, Workspace
from convsim.tui.cli import main

# Sentences only the sample chat has; each line of the other chat is its own.
SAMPLE_LINES = ("like a golden retriever in running tights", "I can't feel my calves.")
OTHER = (
    "01/03/2025, 10:00 - Riya: the quince jam recipe is on the fridge door\n"
    "01/03/2025, 10:01 - Jon: thanks, I owe you a jar of marmalade\n"
    "01/03/2025, 10:02 - Riya: bring it on saturday with the blue umbrella\n"
    "13/03/2025, 10:03 - Jon: will do, see you at the allotment gate\n"
)
RIYA_ONLY = ("quince jam recipe is on the fridge door", "with the blue umbrella")
JON_ONLY = ("I owe you a jar of marmalade", "see you at the allotment gate")


def files_holding(home: Path, text: str) -> list[Path]:
    """Every file under `home` whose bytes contain `text` (UTF-8)."""
    needle = text.encode()
    return [p for p in home.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def until(condition, timeout: float = 30.0) -> None:
    """Let the app run until `condition()` holds; fail after `timeout` seconds."""
    import asyncio

    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {condition}")


@pytest.fixture
def filled(home: Path, tmp_path: Path, tiny) -> Path:
    """A home with the sample chat (datasets, a tiny model, a transcript) and a second chat
    in which Riya also writes."""
    pytest.importorskip("peft")
    from convsim.core.training import train_person

    other = tmp_path / "WhatsApp Chat with Jon.txt"
    other.write_text(OTHER, encoding="utf-8")
    with Workspace.open(home) as ws:
        (sample,) = ws.import_export(SAMPLE_CHAT)
        ws.import_export(other)
        ws.build_dataset(sample.chat_id, DatasetConfig(target="Sam"))
        overrides = {"steps": 1, "seq_len": 64, "batch_size": 2, "rank": 4, "eval_every": 0,
                     "eval_rows": 2, "samples": 0, "checkpoint_every": 0}  # fmt: skip
        run = train_person(ws, sample.chat_id, "Sam", base=str(tiny.gguf_path), overrides=overrides)
        assert run.adapter_gguf is not None
        # Memory: both chats searchable, a fact about Riya, one learned from her message.
        from convsim.core.memory import Facts, update_index

        for chat_id in (sample.chat_id, 2):
            update_index(ws.store, chat_id)
        facts = Facts(ws.store)
        facts.add("Riya", "likes", RIYA_ONLY[1], chat_id=2, origin="user")
        (riya_msg,) = [m.id for m in ws.store.messages(2) if RIYA_ONLY[0] in m.text]
        facts.add("Jon", "plan", "quince jam recipe on the fridge door", chat_id=2,
                  sources=[riya_msg], origin="chat")  # fmt: skip
        folder = ws.locations.transcripts
        transcripts.save(folder, "sam", [("Riya", SAMPLE_LINES[1]), ("Sam", "haha")])
        transcripts.save(folder, "unrelated", [("Ann", "hello there"), ("Bo", "hi")])
    backup_store(home / "convsim.db")  # as an upgrade makes one: a copy of every message
    # As `doctor --restore` keeps a damaged store beside the restored one.
    shutil.copy(home / "convsim.db", home / "convsim.db.corrupt-20261201-120000")
    return home


def test_forget_chat_removes_everything_made_from_it(filled: Path, capsys) -> None:
    home = filled
    for line in (*SAMPLE_LINES, *JON_ONLY):
        assert files_holding(home, line), f"the test must see {line!r} before forgetting"
    code = main(["forget", "chat", "1", "--dry-run", "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert code == 0 and plan["forgotten"] is False
    # The dataset built by hand, and the one the training run built for itself.
    assert plan["chats"] == [1] and plan["datasets"] == [1, 2] and len(plan["models"]) == 1
    assert any("transcripts" in f for f in plan["files"])
    assert any("backups" in f for f in plan["files"])
    assert any(".corrupt-" in f for f in plan["files"])

    assert main(["forget", "chat", "1", "--yes", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["forgotten"] is True and done["erased"] is True
    for line in SAMPLE_LINES:
        assert files_holding(home, line) == [], line
    for line in JON_ONLY:  # the other chat is untouched
        assert files_holding(home, line)
    with Workspace.open(home) as ws:
        assert [c.title for c in ws.store.chats()] == ["Jon"]
        assert ws.store.models() == [] and ws.store.datasets() == []
        (left,) = transcripts.saved(ws.locations.transcripts)
        assert left.name.startswith("unrelated")
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_a_copied_data_folder_forgets_its_own_files_not_the_originals(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The store's rows name folders by absolute path: a copy of the data folder (a move, a
    restore from a backup drive) must use, and forget, its own."""
    copy = tmp_path / "copy"
    shutil.copytree(filled, copy)
    monkeypatch.setenv("CONVSIM_HOME", str(copy))
    assert main(["models", "--json"]) == 0
    (model,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert Path(model["path"]) == copy / "models" / model["model_id"]

    assert main(["forget", "chat", "1", "--yes", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert all(Path(f).is_relative_to(copy) for f in done["files"]), done["files"]
    for line in SAMPLE_LINES:
        assert files_holding(copy, line) == [], line
    # The original folder is untouched: its datasets and model are all still there.
    assert (filled / "models" / model["model_id"] / "adapter.gguf").exists()
    assert sorted(p.name for p in (filled / "datasets").iterdir()) == ["1", "2"]


def test_forget_person_removes_their_messages_from_every_chat(filled: Path, capsys) -> None:
    home = filled
    assert main(["forget", "person", "Riya", "--yes", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["chats"] == [] and done["messages"] > 100
    for line in (*RIYA_ONLY, SAMPLE_LINES[1]):
        assert files_holding(home, line) == [], line
    for line in JON_ONLY:
        assert files_holding(home, line)
    with Workspace.open(home) as ws:
        people = {p.name for p in ws.store.participants()}
        assert "Riya" not in people and {"Sam", "Jon"} <= people
        assert [m.text for m in ws.store.messages(2)] == [
            "thanks, I owe you a jar of marmalade",
            "will do, see you at the allotment gate",
        ]
        imports = ws.store.conn.execute("SELECT report FROM imports").fetchall()
        assert all("Riya" not in json.loads(r)["participants"].__repr__() for (r,) in imports)
        assert ws.store.conn.execute("SELECT count(*) FROM facts").fetchone() == (0,)
        # Jon's messages are searchable again once the index is rebuilt.
        from convsim.core.memory import open_searcher

        hits = open_searcher(ws.store, 2, "keyword").search("marmalade")
        assert hits[0].text == "[Jon] thanks, I owe you a jar of marmalade"
    # The database file itself: no free page and no WAL frame still holds her words.
    db = home / "convsim.db"
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert RIYA_ONLY[0].encode() not in db.read_bytes()


def test_forget_asks_and_refuses_without_a_yes(filled: Path, capsys) -> None:
    env = {**os.environ, "CONVSIM_HOME": str(filled)}
    cli = [sys.executable, "-m", "convsim.tui.cli", "forget"]
    done = subprocess.run([*cli, "chat", "2"], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 2 and "pass --yes" in done.stderr
    assert main(["forget", "chat", "99", "--yes"]) == 2
    assert "no chat with id 99" in capsys.readouterr().err
    assert main(["forget", "person", "Nobody", "--yes"]) == 2
    assert "nobody called 'Nobody'" in capsys.readouterr().err
    # At the prompt in a terminal, Ctrl-D (end of input) is a no as well.
    import pty

    parent, child = pty.openpty()
    with open(os.devnull, "w") as quiet:
        asked = subprocess.Popen([*cli, "chat", "2"], env=env, stdin=child, stdout=quiet,
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
    os.close(child)
    os.write(parent, b"\x04")
    _, err = asked.communicate(timeout=60)
    os.close(parent)
    assert asked.returncode == 2 and "nothing was removed" in err and "Traceback" not in err, err
    with Workspace.open(filled) as ws:
        assert len(ws.store.chats()) == 2


def test_erase_leaves_no_copy_in_free_pages_or_the_wal(tmp_path: Path) -> None:
    """SQLite as many builds ship it (secure_delete off: python.org's macOS and Windows builds)
    keeps deleted text in free pages, where the byte search above would find it; `erase`
    leaves none."""
    from convsim.core.store.forget import compact

    def fill(name: str) -> tuple[sqlite3.Connection, Path]:
        db = tmp_path / name
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA secure_delete = OFF")
        conn.execute("CREATE TABLE t (x TEXT)")
        rows = [(f"secret number {i:05d}",) for i in range(3000)]
        conn.executemany("INSERT INTO t VALUES (?)", rows)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return conn, db

    conn, db = fill("plain.db")
    conn.execute("DELETE FROM t")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert b"secret number 01234" in db.read_bytes()
    conn.close()

    conn, db = fill("erased.db")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("DELETE FROM t")
    assert compact(conn) is True
    assert b"secret number 01234" not in db.read_bytes()
    assert db.with_name("erased.db-wal").stat().st_size == 0
    conn.close()


def test_app_forget_dialog_lists_everything_then_forgets(filled: Path) -> None:
    """The home screen's x: the dialog lists what will go, Cancel keeps it, Forget removes it;
    picking a person instead of the chat re-plans."""
    import asyncio

    from textual.widgets import Button, DataTable, Select, Static

    from convsim.tui.app import ConvsimApp
    from convsim.tui.app.screens.forget import ForgetDialog
    from convsim.tui.app.screens.home import HomeScreen

    def listed(app: ConvsimApp) -> str:
        return str(app.screen.query_one("#forget-items", Static).render())

    def ready(app: ConvsimApp) -> bool:
        return (
            isinstance(app.screen, ForgetDialog)
            and not app.screen.query_one("#forget-go", Button).disabled
        )

    async def drive() -> None:
        app = ConvsimApp(filled)
        async with app.run_test(size=(100, 34)) as pilot:
            await until(lambda: isinstance(app.screen, HomeScreen) and app.screen.loaded)
            await pilot.press("x")  # the first chat: the sample
            await until(lambda: ready(app))
            text = listed(app)
            assert "chat 1 (sample_whatsapp)" in text and "dataset 1" in text
            assert "model sam-1" in text and "folder models/sam-1" in text
            await pilot.click("#forget-cancel")
            await until(lambda: isinstance(app.screen, HomeScreen))
            assert app.screen.query_one("#chats", DataTable).row_count == 2

            await pilot.press("x")
            await until(lambda: ready(app))
            app.screen.query_one("#forget-what", Select).value = "Riya"
            await until(lambda: ready(app) and "person Riya" in listed(app))
            app.screen.query_one("#forget-what", Select).value = "chat"
            await until(lambda: ready(app) and "chat 1" in listed(app))
            await pilot.click("#forget-go")
            await until(lambda: isinstance(app.screen, HomeScreen))
            table = app.screen.query_one("#chats", DataTable)
            await until(lambda: table.row_count == 1)
            assert table.get_row_at(0)[1] == "Jon"

    asyncio.run(drive())
    for line in SAMPLE_LINES:
        assert files_holding(filled, line) == [], line


def test_app_forget_dialog_shows_names_as_typed_plans_the_last_choice_and_warns_of_training(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Brackets in a title or a name are text, not markup (`[/]` once crashed the app); a long
    title stays on one line; a plan that comes late for an earlier choice is not the one
    Forget acts on; a persona training now is named before Forget can be pressed."""
    import asyncio
    import time

    from textual.widgets import Button, Select, Static

    from convsim.core.workspace import training
    from convsim.tui.app import ConvsimApp
    from convsim.tui.app.screens.forget import ForgetDialog

    odd = tmp_path / "WhatsApp Chat with [Work] team.txt"
    odd.write_text(
        "01/03/2025, 10:00 - Jane [work]: the slides are in the shared folder\n"
        "13/03/2025, 10:01 - [/]: thanks\n",
        encoding="utf-8",
    )
    with Workspace.open(filled) as ws:
        (report,) = ws.import_export(odd)
        sam = ws.store.model("sam-1")
    slow = Workspace.forget_plan

    def slow_for_people(self, chat_id=None, person=None):
        time.sleep(1.0 if person else 0)  # as on a large store
        return slow(self, chat_id=chat_id, person=person)

    monkeypatch.setattr(Workspace, "forget_plan", slow_for_people)

    async def drive() -> None:
        app = ConvsimApp(filled)
        async with app.run_test(size=(80, 24)) as pilot:
            title = "[Work] [/] team " + "and friends " * 10
            dialog = ForgetDialog(report.chat_id, title, ["Jane [work]", "[/]"])
            await app.push_screen(dialog)
            go = dialog.query_one("#forget-go", Button)
            items = dialog.query_one("#forget-items", Static)
            await until(lambda: not go.disabled)
            what = dialog.query_one("#forget-what", Select)
            shown = [str(prompt) for prompt, _ in what._options]
            assert shown[0].startswith("the whole chat: [Work] [/] team and")
            assert len(shown[0]) <= 56
            assert shown[1:] == ["Jane [work], in every chat", "[/], in every chat"]
            assert what.query_one("#label").render().plain.startswith("the whole chat: [Work]")
            assert go.region.bottom <= 24  # the buttons stay on an 80 × 24 screen

            what.value = "Jane [work]"  # its plan takes a second...
            await pilot.pause(0.2)
            what.value = "chat"  # ...and lands after the chat's
            await until(lambda: not go.disabled and f"chat {report.chat_id}" in str(items.render()))
            await asyncio.sleep(1.5)
            assert dialog.plan.chat == report.chat_id and dialog.plan.person is None
            assert "person Jane" not in str(items.render())
            await pilot.press("escape")

            with training(sam):  # as a `convsim train` elsewhere holds it
                dialog = ForgetDialog(1, "sample_whatsapp", ["Sam", "Riya"])
                await app.push_screen(dialog)
                items = dialog.query_one("#forget-items", Static)
                await until(lambda: "model sam-1" in str(items.render()))
                assert "sam-1 is training now: nothing can be forgotten" in str(items.render())
                assert dialog.query_one("#forget-go", Button).disabled
            # Once it stops, the dialog sees so by itself.
            go = dialog.query_one("#forget-go", Button)
            await until(lambda: not go.disabled, timeout=15)
            assert "training now" not in str(items.render())

    asyncio.run(drive())
    with Workspace.open(filled) as ws:
        assert {c.id for c in ws.store.chats()} == {1, 2, report.chat_id}
