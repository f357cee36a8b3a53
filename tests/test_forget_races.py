"""Forgetting while something else works on the same store (another process, the app's
workers): a memory job that read the chat before the forget stores nothing of what went, and a
plan shown for confirmation also removes what was added before the user said yes. Real SQLite;
each race is forced at the moment it needs, through a second workspace (a second connection)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convsim.core.data.dataset import DatasetConfig
from convsim.core.memory import shared_embedder
from convsim.core.memory.extract import build_memory
from convsim.core.memory.facts import Facts
from convsim.core.memory.gate import Candidate, Gate
from convsim.core.memory.index import Row, update_index
from convsim.core.workspace import SAMPLE_CHAT, Workspace

GONE = "Sam"


def sample(home: Path) -> int:
    with Workspace.open() as ws:
        ws.import_export(SAMPLE_CHAT)
        return ws.store.chats()[0].id


def forget_elsewhere(person: str) -> None:
    """What `convsim forget --person` does from another process."""
    with Workspace.open() as other:
        other.forget(other.forget_plan(person=person))


def message_ids(ws: Workspace) -> set[int]:
    return {i for (i,) in ws.store.conn.execute("SELECT id FROM messages")}


class ForgetsMidway:
    """Proposes a fact about GONE from each window (citing their message); during its second
    window, GONE is forgotten from another connection."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    def extract(self, window: Sequence[Row], people: Sequence[str]) -> list[Candidate]:
        self.calls += 1
        if self.calls == 2:
            forget_elsewhere(GONE)
        theirs = [r for r in window if r.sender == GONE and len(r.text.split()) >= 2]
        return [Candidate(GONE, "likes", r.text[:60], (r.id,), 5) for r in theirs[:1]]


def test_facts_extracted_while_a_person_is_forgotten_are_not_stored(home: Path) -> None:
    chat_id = sample(home)
    with Workspace.open() as ws:
        before = message_ids(ws)
        extractor = ForgetsMidway()
        report = build_memory(
            ws.store, chat_id, extractor, gate=Gate(min_importance=1, min_support=0.0)
        )
        assert extractor.calls > 2 and not report.stopped
        conn = ws.store.conn
        gone = before - message_ids(ws)
        assert gone  # their messages went while the job ran
        # The first window's fact was stored, then forgotten; the later ones were refused.
        assert report.added == 1 and report.rejected["unknown person"] == extractor.calls - 1
        assert conn.execute("SELECT count(*) FROM facts").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM fact_index").fetchone() == (0,)


def test_a_chat_forgotten_during_extraction_stops_the_job(home: Path) -> None:
    chat_id = sample(home)

    class ForgetsTheChat:
        name = "scripted"

        def extract(self, window: Sequence[Row], people: Sequence[str]) -> list[Candidate]:
            with Workspace.open() as other:
                other.forget(other.forget_plan(chat_id=chat_id))
            return [Candidate(GONE, "likes", window[0].text[:60], (window[0].id,), 5)]

    with Workspace.open() as ws:
        report = build_memory(ws.store, chat_id, ForgetsTheChat(), gate=Gate(min_importance=1))
        assert report.stopped
        assert ws.store.conn.execute("SELECT count(*) FROM facts").fetchone() == (0,)
        assert ws.store.conn.execute("SELECT count(*) FROM memory_progress").fetchone() == (0,)


def test_embeddings_computed_while_a_person_is_forgotten_keep_none_of_theirs(home: Path) -> None:
    chat_id = sample(home)
    real = shared_embedder()

    class ForgetsWhileEmbedding:
        calls = 0

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            self.calls += 1
            if self.calls == 1:
                forget_elsewhere(GONE)  # the slow part runs without the lock
            return real.embed(texts)

    with Workspace.open() as ws:
        before = message_ids(ws)
        state = update_index(ws.store, chat_id, ForgetsWhileEmbedding())  # type: ignore[arg-type]
        gone = before - message_ids(ws)
        assert gone and state.embedded > 0
        stored = {i for (i,) in ws.store.conn.execute("SELECT message_id FROM message_vectors")}
        assert stored and not stored & gone
        # The next update fills the full-text index again, without them.
        update_index(ws.store, chat_id)
        senders = {s for (s,) in ws.store.conn.execute("SELECT sender FROM message_index")}
        assert senders and GONE not in senders


def test_what_is_added_while_the_confirmation_is_shown_is_forgotten_too(home: Path) -> None:
    chat_id = sample(home)
    with Workspace.open() as ws:
        plan = ws.forget_plan(chat_id=chat_id)
        assert plan.datasets == [] and plan.facts == []
        with Workspace.open() as other:  # meanwhile, another process adds to the chat
            dataset = other.build_dataset(chat_id, DatasetConfig(target=GONE))
            Facts(other.store).add(GONE, "pet", "a cat called Miso", chat_id=chat_id)
        assert dataset.path.is_dir()
        ws.forget(plan)
        conn = ws.store.conn
        assert not dataset.path.exists()
        assert [d["id"] for d in plan.datasets] == [dataset.id]
        for table in ("datasets", "facts", "fact_index", "messages", "chats"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        # Facts can still be added: no full-text row was left to collide with the next id.
        Facts(ws.store).add("Riya", "pet", "a dog called Biscuit")
        assert conn.execute("SELECT count(*) FROM facts").fetchone() == (1,)
