"""Crash safety, tested by doing it: `convsim import` killed with SIGKILL mid-write, a full disk
(a file-size limit, RLIMIT_FSIZE: writes past it fail as on a full disk) during an import, a
dataset and a training checkpoint, and the app and the command line writing the store at once."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from convsim.core.store import store_problem
from convsim.core.workspace import SAMPLE_CHAT, Workspace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from whatsapp_gen import generate  # noqa: E402

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and RLIMIT_FSIZE are POSIX")
CLI = [sys.executable, "-m", "convsim.tui.cli"]


def cli(home: Path, *args: str, limit: int | None = None, **kw) -> subprocess.Popen[str]:
    """`convsim ARGS` in its own process; `limit` caps the size of any file it writes."""

    def cap() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    env = {**os.environ, "CONVSIM_HOME": str(home)}
    return subprocess.Popen([*CLI, *args], env=env, text=True, preexec_fn=cap,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def snapshot(db: Path) -> tuple[str, list[tuple]]:
    """(what is wrong with the file or "ok", every chat with its message count, text length
    and last id)."""
    check = store_problem(db) or "ok"
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT s.chat_id, count(*), sum(length(m.text)), max(m.id) FROM segments s"
            " JOIN messages m ON m.id BETWEEN s.first_id AND s.last_id GROUP BY s.chat_id"
        ).fetchall()
        return check, rows
    finally:
        conn.close()


def writing(db: Path) -> bool:
    """True while another connection holds the store's write lock."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def wait(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        time.sleep(0.002)


@pytest.fixture
def stocked(home: Path) -> Path:
    with Workspace.open(home) as ws:
        ws.import_export(SAMPLE_CHAT)
    return home


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("big") / "WhatsApp Chat with Crowd.txt"
    return path, generate(path, 120_000, seed=1)


def test_sigkill_mid_import_leaves_a_clean_store_and_a_rerun_imports_exactly_once(
    stocked: Path, big_export: tuple[Path, int]
) -> None:
    db = stocked / "convsim.db"
    before = snapshot(db)
    path, count = big_export
    # Killed while parsing, just after the write transaction began, and deep inside it.
    for when in ("parsing", "writing", "late"):
        proc = cli(stocked, "import", str(path))
        if when == "parsing":
            time.sleep(0.15)
        else:
            wait(lambda p=proc: writing(db) or p.poll() is not None)
            assert proc.poll() is None, "the import finished before it could be killed"
            time.sleep(0.0 if when == "writing" else 0.1)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        assert snapshot(db) == before, f"the store changed after a kill while {when}"

    code, out, err = finish(cli(stocked, "import", str(path), "--json"))
    assert code == 0, err
    assert json.loads(out)["new"] == count
    code, out, err = finish(cli(stocked, "import", str(path), "--json"))
    assert code == 0 and json.loads(out)["new"] == 0
    check, rows = snapshot(db)
    assert check == "ok" and [r[1] for r in rows] == [before[1][0][1], count]


def test_full_disk_during_import_is_a_clear_error_and_changes_nothing(
    stocked: Path, big_export: tuple[Path, int]
) -> None:
    db = stocked / "convsim.db"
    before = snapshot(db)
    limit = db.stat().st_size + 256 * 1024
    code, _, err = finish(cli(stocked, "import", str(big_export[0]), limit=limit))
    assert code == 2, err
    assert "no room to write" in err and str(db) in err and "Traceback" not in err
    assert snapshot(db) == before
    code, _, err = finish(cli(stocked, "chats"))  # and the store works on without the limit
    assert code == 0, err


def test_full_disk_while_writing_a_dataset_keeps_the_previous_one(
    stocked: Path, tmp_path: Path
) -> None:
    from convsim.core.data.dataset import DatasetConfig

    chat = tmp_path / "WhatsApp Chat with Many.txt"
    generate(chat, 3000, seed=2)
    with Workspace.open(stocked) as ws:
        (report,) = ws.import_export(chat)
        first = ws.build_dataset(report.chat_id, DatasetConfig(target="Tom"))
    files = {p.name: p.read_bytes() for p in first.path.iterdir()}
    db = stocked / "convsim.db"
    before = snapshot(db)
    limit = db.stat().st_size + 128 * 1024
    # Long contexts: about four times the size of the chat's text, so past the limit.
    args = ("dataset", str(report.chat_id), "--as", "Riya Sharma", "--context", "64")
    code, _, err = finish(cli(stocked, *args, limit=limit))
    assert code == 2 and f"{stocked / 'datasets'}: no room to write" in err, err
    assert snapshot(db) == before
    with Workspace.open(stocked) as ws:
        assert [d["id"] for d in ws.store.datasets()] == [first.id]
    assert {p.name: p.read_bytes() for p in first.path.iterdir()} == files
    assert [p.name for p in (stocked / "datasets").iterdir()] == [str(first.id)]


TRAIN = """
import json, resource, sys
from pathlib import Path
from convsim.core.training import train_person
from convsim.core.store import store_problem
from convsim.core.workspace import SAMPLE_CHAT, Workspace
home, base = Path(sys.argv[1]), sys.argv[2]
def on_event(event):
    if event.kind == "checkpoint" and event.step == 1:  # from here on, no room
        (checkpoint,) = home.glob("models/*/checkpoint")
        biggest = max(p.stat().st_size for p in checkpoint.iterdir())
        resource.setrlimit(resource.RLIMIT_FSIZE, (biggest // 2, resource.RLIM_INFINITY))
with Workspace.open(home) as ws:
    (report,) = ws.import_export(SAMPLE_CHAT)
    overrides = {"steps": 3, "seq_len": 64, "batch_size": 2, "rank": 4, "eval_every": 0,
                 "eval_rows": 2, "samples": 0, "checkpoint_every": 1}
    try:
        train_person(ws, report.chat_id, "Sam", base=base, overrides=overrides, on_event=on_event)
    except OSError as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def test_full_disk_at_a_training_checkpoint_keeps_the_previous_checkpoint(home: Path, tiny) -> None:
    pytest.importorskip("peft")
    from convsim.core.training import resume_training

    done = subprocess.run([sys.executable, "-c", TRAIN, str(home), str(tiny.gguf_path)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    failure = json.loads(done.stdout.strip().splitlines()[-1])
    assert failure["error"] == "DiskFullError" and "no room to write" in failure["message"]
    with Workspace.open(home) as ws:
        (model,) = ws.store.models()
        run_dir = Path(model.path)
        assert str(run_dir) in failure["message"]
        meta = json.loads((run_dir / "checkpoint" / "trainer.json").read_text())
        assert meta["step"] == 1  # the checkpoint before the full disk, whole
        assert not list(run_dir.glob(".building-*"))
        resumed = resume_training(ws, model.id)
        assert resumed.model.status == "ready" and resumed.result.steps == 3


def test_app_and_command_line_write_the_store_at_the_same_time(
    stocked: Path, big_export: tuple[Path, int], tmp_path: Path
) -> None:
    """A long writer (here: a held write transaction, longer than Python's 5 s default
    wait) and a real large import by the CLI, while the app imports through its wizard and
    another command marks who is who: everybody waits their turn, nobody crashes."""
    from textual.widgets import Input

    from convsim.tui.app import ConvsimApp
    from convsim.tui.app.screens.home import HomeScreen
    from convsim.tui.app.screens.wizard import ImportWizard

    small = tmp_path / "WhatsApp Chat with Ola.txt"
    small.write_text("12/01/2024, 09:00 - Ola: hei\n13/01/2024, 09:01 - Per: hallo\n")
    db = stocked / "convsim.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO settings (key, value) VALUES ('held', 'yes')")
    release = threading.Timer(6.0, lambda: holder.execute("COMMIT"))
    release.start()
    big = cli(stocked, "import", str(big_export[0]), "--json")
    me = cli(stocked, "people", "me", "1", "Riya")

    async def drive() -> None:
        app = ConvsimApp(stocked)
        async with app.run_test(size=(100, 34)) as pilot:
            while not (isinstance(app.screen, HomeScreen) and app.screen.loaded):
                await asyncio.sleep(0.05)
            await pilot.press("i")
            while not isinstance(app.screen, ImportWizard):
                await asyncio.sleep(0.05)
            app.screen.query_one("#path", Input).value = str(small)
            await pilot.click("#do-import")
            deadline = time.monotonic() + 120
            while getattr(app.screen, "report", None) is None:
                assert time.monotonic() < deadline, [n.message for n in app._notifications]
                await asyncio.sleep(0.05)

    try:
        asyncio.run(drive())
    finally:
        release.join()
        holder.close()
    assert finish(big)[0] == 0 and finish(me)[0] == 0
    with Workspace.open(stocked) as ws:
        titles = sorted(c.title for c in ws.store.chats())
        assert titles == ["Crowd", "Ola", "sample_whatsapp"]
        assert ws.store.setting("held") == "yes"
        assert [p.name for p in ws.store.participants(1) if p.is_me] == ["Riya"]
