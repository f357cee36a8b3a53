from __future__ import annotations

import re
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from convsim.core.chats.messages import MEDIA, SYSTEM, TEXT, ParsedChat, ParsedMessage, Skipped
from convsim.core.locations import Locations
from convsim.core.store import Store
from convsim.core.store.migrations import STEPS, VERSION, NewerStoreError, migrate


def chat(messages: list[tuple[str, str | None, str]], **kw: object) -> ParsedChat:
    parsed = [
        ParsedMessage(
            ts, who, text, SYSTEM if who is None else (MEDIA if text == "<Media omitted>" else TEXT)
        )
        for ts, who, text in messages
    ]
    defaults: dict[str, object] = {"format": "whatsapp", "title": "Riya"}
    defaults.update(kw)
    return ParsedChat(messages=parsed, **defaults)  # type: ignore[arg-type]


BASE = [
    ("2024-01-01T10:00:00", None, "Messages are end-to-end encrypted."),
    ("2024-01-01T10:00:00", "Riya", "hey"),
    ("2024-01-01T10:00:00", "Riya", "hey"),  # a real double text in the same minute
    ("2024-01-01T10:01:00", "Sam", "yo"),
    ("2024-01-01T10:02:00", "Sam", "<Media omitted>"),
]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "convsim.db")
    yield s
    s.close()


def test_messages_come_back_in_time_order_across_imports(store: Store) -> None:
    (a,) = store.add_import([chat(BASE)], "/a.txt")
    # A newer export that also holds a message older than everything stored.
    older = [("2023-12-31T23:59:00", "Sam", "last year"), *BASE]
    (b,) = store.add_import([chat(older)], "/b.txt")
    assert b.chat_id == a.chat_id and b.new == 1
    assert store.messages(a.chat_id)[0].text == "last year"
    info = store.chat(a.chat_id)
    assert (info.messages, info.first, info.last) == (5, "2023-12-31T23:59:00", BASE[-1][0])


def test_import_reports_and_reads_back(store: Store) -> None:
    (report,) = store.add_import([chat(BASE, skipped=[Skipped("line 7", "junk")])], "/x.txt")
    assert report.messages == 4 and report.new == 5
    assert report.participants == [{"name": "Riya", "messages": 2}, {"name": "Sam", "messages": 2}]
    assert report.kinds == {"media": 1, "system": 1, "text": 3}
    assert (report.first, report.last) == ("2024-01-01T10:00:00", "2024-01-01T10:02:00")
    assert report.skipped == [{"position": "line 7", "reason": "junk"}]
    got = [(m.timestamp, m.sender, m.text, m.kind) for m in store.messages(report.chat_id)]
    want = [(t, w, x, k.kind) for (t, w, x), k in zip(BASE, chat(BASE).messages, strict=True)]
    assert got == want


def test_reimport_adds_nothing_and_newer_export_adds_only_new(store: Store) -> None:
    (first,) = store.add_import([chat(BASE)], "/a.txt")
    (again,) = store.add_import([chat(BASE)], "/a.txt")
    assert again.chat_id == first.chat_id and again.new == 0
    newer = [
        *BASE,
        ("2024-01-02T09:00:00", "Riya", "morning"),
        ("2024-01-02T09:00:00", "Riya", "hey"),
    ]
    (third,) = store.add_import([chat(newer)], "/b.txt")
    assert third.chat_id == first.chat_id and third.new == 2
    assert [m.text for m in store.messages(first.chat_id)][-2:] == ["morning", "hey"]
    assert len(store.chats()) == 1


def test_unrelated_chat_of_same_format_is_a_new_chat(store: Store) -> None:
    (a,) = store.add_import([chat(BASE)], "/a.txt")
    other = [("2023-05-05T08:00:00", "Ana", "hola"), ("2023-05-05T08:01:00", "Ben", "hi")]
    (b,) = store.add_import([chat(other, title="Ana")], "/c.txt")
    assert b.chat_id != a.chat_id and b.new == 2


def test_source_key_identifies_chat_even_with_no_overlap(store: Store) -> None:
    (a,) = store.add_import([chat(BASE[:2], format="telegram", source_key="telegram:1")], "/r.json")
    (b,) = store.add_import([chat(BASE[3:], format="telegram", source_key="telegram:1")], "/r.json")
    assert a.chat_id == b.chat_id and b.new == 2


def test_failed_import_leaves_store_unchanged(store: Store, tmp_path: Path) -> None:
    store.add_import([chat(BASE)], "/a.txt")
    before = store.conn.execute("SELECT count(*) FROM messages").fetchone()
    bad = chat([("2024-02-01T10:00:00", "Riya", "new one")])
    bad.messages.append(None)  # type: ignore[arg-type]  # breaks half-way through the insert
    with pytest.raises(AttributeError):
        store.add_import([chat([("2024-03-01T00:00:00", "Zed", "z")], title="Zed"), bad], "/b.txt")
    assert store.conn.execute("SELECT count(*) FROM messages").fetchone() == before
    assert [c.title for c in store.chats()] == ["Riya"]
    # The file on disk agrees (nothing half-written survives a reopen).
    store.close()
    with Store.open(store.path) as again:
        assert [c.title for c in again.chats()] == ["Riya"]


def test_merge_people_across_chats(store: Store) -> None:
    (wa,) = store.add_import([chat(BASE)], "/a.txt")
    tg_msgs = [("2024-01-03T10:00:00", "Riya K", "hi from telegram")]
    (tg,) = store.add_import([chat(tg_msgs, format="telegram", source_key="telegram:9")], "/r.json")
    merged = store.merge("Riya", [(wa.chat_id, "Riya"), (tg.chat_id, "Riya K")])
    assert {(p.chat_id, p.name) for p in merged} == {(wa.chat_id, "Riya"), (tg.chat_id, "Riya K")}
    with pytest.raises(KeyError):
        store.merge("Sam", [(wa.chat_id, "Sam"), (tg.chat_id, "Nobody")])
    assert all(p.person != "Sam" for p in store.participants())  # all-or-nothing
    store.set_me(wa.chat_id, "Sam")
    assert [p.name for p in store.participants(wa.chat_id) if p.is_me] == ["Sam"]


def test_migrates_old_store_forward_keeping_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store.open(path) as store:
        (report,) = store.add_import([chat(BASE)], "/a.txt")
    # Take the file back to schema v1, as an older convsim left it.
    conn = sqlite3.connect(path, isolation_level=None)
    for table in re.findall(r"CREATE (?:VIRTUAL )?TABLE (\w+)", "".join(STEPS[1:])):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with Store.open(path) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == VERSION
        assert [m.text for m in store.messages(report.chat_id)] == [t for _, _, t in BASE]
        assert store.models() == []  # the v2 table exists and works
        assert store.conn.execute("SELECT count(*) FROM facts").fetchone() == (0,)  # and v3's
        (again,) = store.add_import([chat(BASE)], "/a.txt")
        assert again.chat_id == report.chat_id and again.new == 0


def test_migrate_runs_each_step_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    assert migrate(conn, upto=1) == 1
    assert migrate(conn) == VERSION
    assert migrate(conn) == VERSION


def migrate_at_once(path: Path, connections: int = 4) -> list[Exception]:
    """Open `path` from `connections` threads, released together, each migrating it; what
    each raised."""
    ready, errors = threading.Barrier(connections), []

    def open_it() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        ready.wait()
        try:
            migrate(conn)
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=open_it) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_a_new_store_opened_by_several_processes_at_once_is_created_once(tmp_path: Path) -> None:
    """The app's workers and a command may open a store that does not exist yet at the same
    moment: each must find it whole, none may fail creating its tables twice."""
    path, errors = tmp_path / "s.db", []
    for _ in range(5):  # the race is timing-dependent: give it several chances
        path.unlink(missing_ok=True)
        errors += migrate_at_once(path)
    assert errors == []
    with Store.open(path) as store:
        assert store.chats() == []


def test_refuses_store_from_newer_convsim(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {VERSION + 1}")
    conn.close()
    with pytest.raises(NewerStoreError):
        Store.open(path)


def test_home_and_store_are_private(tmp_path: Path) -> None:
    loc = Locations(tmp_path / "h").ensure()
    with Store.open(loc.store):
        pass
    assert stat.S_IMODE(loc.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(loc.store.stat().st_mode) == 0o600


def test_settings_roundtrip(store: Store) -> None:
    assert store.setting("k") is None
    store.set_setting("k", "dmy")
    store.set_setting("k", "mdy")
    assert store.setting("k") == "mdy"
