"""Memory (issue 11): the fact rules, search over messages and facts, facts in the prompt head,
and the `convsim memory` command's contract. Real SQLite, the real embedding model, real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from convsim.core.memory import FactError, Facts, open_searcher, update_index
from convsim.core.memory.facts import SHOWN
from convsim.core.memory.recall import HEAD_TITLE, Recall
from convsim.core.workspace import Workspace
from convsim.tui.cli import main

CHAT = """\
12/01/2025, 09:00 - Alex: morning! first week at the bakery on Elm st, chaos but fun
12/01/2025, 09:01 - Sam: nice, how are the early shifts
12/01/2025, 09:02 - Alex: brutal, alarm at 4am
20/01/2025, 18:30 - Sam: we adopted a little dog yesterday, his name is Pickle
20/01/2025, 18:31 - Alex: omg photos please
20/01/2025, 18:32 - Sam: he already chewed my left shoe
03/02/2025, 20:00 - Alex: my sister Anna is moving to Berlin in March
03/02/2025, 20:01 - Sam: wow big move
"""
NEWER = CHAT + "15/03/2025, 10:00 - Alex: Anna landed in Berlin, she loves the flat\n"


def write(tmp_path: Path, text: str, name: str = "WhatsApp Chat with Alex.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def ws(home: Path, tmp_path: Path):
    with Workspace.open(home) as ws:
        ws.import_export(write(tmp_path, CHAT))
        yield ws


def ids_of(ws: Workspace, *needles: str) -> list[int]:
    return [m.id for m in ws.store.messages(1) for n in needles if n in m.text]


# -- facts ------------------------------------------------------------------------------------


def test_repeats_merge_and_a_new_value_supersedes_the_old_keeping_both(ws: Workspace) -> None:
    facts = Facts(ws.store)
    first, outcome = facts.add("Alex", "Workplace", "the bakery on Elm St.", chat_id=1,
                               sources=[1], origin="chat", seen="2025-01-12T09:00:00")  # fmt: skip
    assert outcome == "added" and first.key == "workplace"
    again, outcome = facts.add("Alex", "workplace", "bakery", chat_id=1, sources=[3],
                               origin="chat", seen="2025-01-20T09:00:00")  # fmt: skip
    assert (outcome, again.id, again.sources) == ("seen", first.id, [1, 3])
    assert again.last_seen == "2025-01-20T09:00:00" and again.first_seen == first.first_seen
    new, outcome = facts.add("Alex", "workplace", "hospital kitchen", chat_id=1, sources=[9],
                             origin="chat", seen="2025-06-01T10:00:00")  # fmt: skip
    assert outcome == "superseded" and new.status == "active"
    old = facts.get(first.id)
    assert (old.status, old.replaced_by) == ("superseded", new.id)
    (pair,) = facts.conflicts(1)
    assert (pair.old.id, pair.new.id, pair.resolution) == (first.id, new.id, None)
    # An older value learned late does not take over.
    late, outcome = facts.add("Alex", "workplace", "a cafe", chat_id=1, origin="chat",
                              seen="2024-01-01T00:00:00")  # fmt: skip
    assert outcome == "superseded" and late.status == "superseded"
    assert facts.get(new.id).status == "active"
    # Several values of a multi-valued key are several facts.
    facts.add("Sam", "pet", "a dog called Pickle", chat_id=1, origin="chat")
    facts.add("Sam", "pet", "a cat called Miso", chat_id=1, origin="chat")
    assert len(facts.list(chat_id=1, person="Sam", status=["active"])) == 2
    assert len(facts.conflicts(1)) == 2  # the late one flagged against the current value


def test_simulated_and_pinned_facts_are_not_overridden(ws: Workspace) -> None:
    facts = Facts(ws.store)
    real, _ = facts.add("Alex", "lives in", "Leeds", chat_id=1, origin="chat", seen="2025-01-01")
    dream, outcome = facts.add("Alex", "lives in", "the moon", chat_id=1, origin="simulated",
                               seen="2025-05-01")  # fmt: skip
    assert (outcome, dream.status) == ("contradicted", "contradicted")
    assert facts.get(real.id).status == "active" and facts.conflicts(1) == []
    facts.pin(real.id)
    moved, outcome = facts.add("Alex", "lives in", "York", chat_id=1, origin="chat",
                               seen="2025-06-01")  # fmt: skip
    assert outcome == "contradicted" and facts.get(real.id).status == "pinned"
    (pair,) = facts.conflicts(1)
    assert (pair.old.id, pair.new.id) == (real.id, moved.id)
    old, new = facts.resolve(real.id, moved.id, "new")
    assert (old.status, new.status) == ("superseded", "active")
    assert facts.conflicts(1) == [] and facts.conflicts(1, unresolved=False)[0].resolution == "new"


def test_every_change_is_an_event_and_nothing_is_deleted(ws: Workspace) -> None:
    facts = Facts(ws.store)
    fact, _ = facts.add("Sam", "pet", "dog", chat_id=1)
    facts.edit(fact.id, value="a dog called Pickle")
    facts.pin(fact.id)
    facts.pin(fact.id, pinned=False)
    facts.remove(fact.id)
    assert [e.action for e in facts.history(fact.id)] == [
        "added", "edited", "pinned", "unpinned", "removed",
    ]  # fmt: skip
    assert facts.history(fact.id)[1].detail == {"old": ["pet", "dog"],
                                                "new": ["pet", "a dog called Pickle"]}  # fmt: skip
    assert facts.list(chat_id=1) == []  # removed is hidden...
    assert facts.list(chat_id=1, status=["removed"])[0].value == "a dog called Pickle"  # ...kept
    with pytest.raises(FactError, match="empty"):
        facts.add("Sam", "pet", "  ", chat_id=1)
    with pytest.raises(FactError, match="no fact with id 99"):
        facts.pin(99)
    with pytest.raises(FactError, match="origin"):
        facts.add("Sam", "pet", "cat", origin="dream")
    with pytest.raises(FactError, match="not a flagged pair"):
        facts.resolve(fact.id, fact.id, "both")
    # Removed means wrong: it is not pinned back nor edited (nothing would use the edit), and
    # a second remove or an edit to the same words records nothing.
    with pytest.raises(FactError, match=f"fact {fact.id} was removed as wrong"):
        facts.pin(fact.id)
    with pytest.raises(FactError, match=f"fact {fact.id} was removed as wrong; add it again"):
        facts.edit(fact.id, value="a cat called Moss")
    facts.remove(fact.id)
    other, _ = facts.add("Sam", "job", "baker", chat_id=1)
    facts.edit(other.id, value="baker")
    assert [e.action for e in facts.history(fact.id)][-1] == "removed"
    assert [e.action for e in facts.history(other.id)] == ["added"]


def test_a_fact_moved_under_another_key_supersedes_what_that_key_held(ws: Workspace) -> None:
    facts = Facts(ws.store)
    held, _ = facts.add("Riya", "job", "interviewing", chat_id=1)
    loose, _ = facts.add("Riya", "job line", "x", chat_id=1)
    moved = facts.edit(loose.id, key="job", value="new job")
    assert [f.value for f in facts.list(chat_id=1, person="Riya", status=SHOWN)] == ["new job"]
    assert facts.get(held.id).status == "superseded" and moved.status == "active"
    (pair,) = facts.conflicts(1)
    assert (pair.old.id, pair.new.id) == (held.id, loose.id)


# -- search -----------------------------------------------------------------------------------


def test_keyword_search_works_right_after_import_and_indexes_only_new_messages(
    ws: Workspace, tmp_path: Path
) -> None:
    hits = open_searcher(ws.store, 1, "keyword").search("Berlin sister", k=3)
    assert hits[0].message_ids == ids_of(ws, "sister Anna") and hits[0].fact_id is None
    assert all(len(h.message_ids) == 1 for h in hits) and len(hits) <= 3
    ws.import_export(write(tmp_path, NEWER))
    state = update_index(ws.store, 1)
    assert (state.indexed, state.messages) == (1, 9)
    assert update_index(ws.store, 1).indexed == 0
    hits = open_searcher(ws.store, 1, "keyword").search("Anna flat", k=2)
    assert hits[0].message_ids == ids_of(ws, "she loves the flat")
    # A fact hit carries its sources.
    source = ids_of(ws, "little dog")
    fact, _ = Facts(ws.store).add("Sam", "pet", "a dog called Pickle", chat_id=1, sources=source)
    hits = open_searcher(ws.store, 1, "keyword").search("Pickle", k=5)
    assert [(h.fact_id, h.message_ids) for h in hits if h.fact_id] == [(fact.id, source)]


def test_embedding_search_finds_what_the_words_miss(ws: Workspace) -> None:
    query = "does anyone here have a puppy"
    keyword = open_searcher(ws.store, 1, "keyword").search(query, k=3)
    assert ids_of(ws, "little dog")[0] not in [i for h in keyword for i in h.message_ids]
    for mode in ("embedding", "hybrid"):
        found = open_searcher(ws.store, 1, mode).search(query, k=3)
        assert ids_of(ws, "little dog")[0] in [i for h in found for i in h.message_ids], mode


TRIP = """\
02/05/2025, 19:00 - Alex: booked the holiday!! tokyo and osaka, three weeks in october
02/05/2025, 19:01 - Sam: jealous. send me snacks
09/05/2025, 08:10 - Sam: running late, save me a seat
09/05/2025, 08:12 - Alex: already on the bus, the driver is singing again
14/05/2025, 21:40 - Sam: did u watch the match
14/05/2025, 21:41 - Alex: no, fell asleep on the sofa by nine
03/11/2025, 22:15 - Alex: osaka > tokyo, fight me
03/11/2025, 22:16 - Sam: the ramen pics were unreal
"""


def test_the_second_round_finds_the_other_half_of_an_answer(
    home: Path, tmp_path: Path, monkeypatch
) -> None:
    """ "osaka > tokyo" shares no word with the question and means little alone; the best first
    hit names the same places, so the second round (the best hit's rarest words) brings it up."""
    from convsim.core.memory import search

    with Workspace.open(home) as ws:
        ws.import_export(write(tmp_path, TRIP))
        booked, later = (ids_of(ws, "booked the holiday")[0], ids_of(ws, "osaka > tokyo")[0])
        searcher = open_searcher(ws.store, 1, "hybrid")
        found = [h.message_ids[0] for h in searcher.search("where did Alex go on holiday?", 2)]
        assert found == [booked, later]
        monkeypatch.setitem(search.WEIGHTS, "feedback", 0.0)
        monkeypatch.setitem(search.WEIGHTS, "feedback_vector", 0.0)
        monkeypatch.setattr(search, "LINK_WEIGHT", 0.0)  # "osaka" would link it too
        alone = [h.message_ids[0] for h in searcher.search("where did Alex go on holiday?", 2)]
        assert alone[0] == booked and later not in alone


SMALL_TALK = [
    "the bus was late again, standing in the rain for 40 mins", "classic",
    "running late, save me a seat", "already on the train",
    "made soup for the whole week, feeling smug", "did u watch the match last night",
    "fell asleep on the sofa by nine", "the new series is actually good",
    "my phone is on 3%", "what are u up to this weekend", "nothing much, laundry",
    "can u call me later", "the heating is broken again", "it's so cold in here",
    "i bought a plant, it's already wilting", "the queue at the post office was huge",
    "going for a walk by the river", "the neighbours are drilling again",
    "pizza tonight?", "my knee hurts from the stairs", "work was long today",
    "the cat next door is in our garden", "i need a holiday", "payday finally",
]  # fmt: skip
SISTER = ["my sister maya just rang. she's pregnant!!! i'm going to be an auntie"]
FLATMATE = [
    "hugo has taken up the trumpet. at 11pm. on a saturday",
    "who is hugo",  # Jo asks
    "my flatmate!! tall, moustache, owns a lot of fleeces",
]
BABY = ["maya did amazing, 14 hours. baby and mum both fine"]


def linked_chat() -> str:
    """Sam and Jo's small talk over a month (taking turns), with SISTER, FLATMATE and BABY in
    between, each said by Sam but for Jo's "who is hugo"."""
    said = [*SMALL_TALK[:8], *SISTER, *SMALL_TALK[8:16], *FLATMATE, *SMALL_TALK[16:], *BABY]
    lines = []
    for i, text in enumerate(said):
        who = ("Jo", "Sam")[i % 2] if text in SMALL_TALK else "Sam"
        who = "Jo" if text == "who is hugo" else who
        lines.append(f"{1 + i // 2:02d}/03/2025, 1{i % 2}:00 - {who}: {text}\n")
    return "".join(lines)


def test_the_best_hits_lend_to_the_messages_linked_to_them(
    home: Path, tmp_path: Path, monkeypatch
) -> None:
    """A name shared with a best hit links a message that shares no word with the question
    ("maya did amazing", by "maya" in "my sister maya just rang"); the messages just before a
    best hit are its other half ("hugo has taken up the trumpet" / "who is hugo" / "my
    flatmate!!"). Each link on its own lifts its message; a message linked to nothing does
    not move. (The second round, which would find "maya" too, is off.)"""
    from convsim.core.memory import search

    monkeypatch.setitem(search.WEIGHTS, "feedback", 0.0)
    monkeypatch.setitem(search.WEIGHTS, "feedback_vector", 0.0)
    word, place = search.LINK_WEIGHT, search.NEIGHBOUR_WEIGHT
    with Workspace.open(home) as ws:
        ws.import_export(write(tmp_path, linked_chat()))
        searcher = open_searcher(ws.store, 1, "hybrid")
        unlinked = ids_of(ws, "did u watch the match")[0]

        def scores(question: str, by_word: float, by_place: float) -> dict[int, float]:
            monkeypatch.setattr(search, "LINK_WEIGHT", by_word)
            monkeypatch.setattr(search, "NEIGHBOUR_WEIGHT", by_place)
            return {h.message_ids[0]: h.score for h in searcher.search(question, 100)}

        cases = [
            ("what is Sam's sister called?", "maya did amazing", (word, 0.0)),
            ("who is Sam's flatmate?", "hugo has taken up", (0.0, place)),
        ]
        for question, text, link in cases:
            linked = ids_of(ws, text)[0]
            lifted, alone = scores(question, *link), scores(question, 0.0, 0.0)
            assert lifted[linked] > alone.get(linked, 0.0) + 0.01, question
            assert lifted[unlinked] == pytest.approx(alone[unlinked]), question


def test_a_text_sent_again_is_one_hit_and_an_emoji_alone_none(home: Path, tmp_path: Path) -> None:
    repeated = (
        CHAT
        + "".join(
            f"0{d}/03/2025, 23:0{d} - Alex: night x\n0{d}/03/2025, 23:1{d} - Sam: Night  X\n"
            for d in range(1, 4)
        )
        + "04/03/2025, 07:00 - Sam: 🙃\n"
    )
    with Workspace.open(home) as ws:
        ws.import_export(write(tmp_path, repeated))
        assert len(ids_of(ws, "night x")) == 3 and len(ids_of(ws, "Night  X")) == 3
        for mode, others in (("keyword", 0), ("hybrid", 4)):
            hits = open_searcher(ws.store, 1, mode).search("night", k=5)
            texts = [" ".join(h.text.split("] ", 1)[1].lower().split()) for h in hits]
            assert texts.count("night x") == 1 and len(texts) == 1 + others, (mode, texts)
            assert "🙃" not in texts


def test_an_empty_or_system_only_chat_has_an_empty_memory(home: Path, tmp_path: Path) -> None:
    notice = "13/01/2025, 09:00 - Messages and calls are end-to-end encrypted.\n"
    with Workspace.open(home) as ws:
        ws.import_export(write(tmp_path, notice + CHAT[:0]))
        assert open_searcher(ws.store, 1, "hybrid").search("anything") == []
        assert Facts(ws.store).list(chat_id=1) == []


# -- facts in the prompt ----------------------------------------------------------------------


def test_recall_keeps_the_head_until_something_new_is_relevant(ws: Workspace) -> None:
    facts = Facts(ws.store)
    job, _ = facts.add("Alex", "job", "baker at the Elm st bakery", chat_id=1)
    sister, _ = facts.add("Alex", "sibling", "sister Anna, in Berlin", chat_id=1)
    pet, _ = facts.add("Sam", "pet", "a dog called Pickle", chat_id=1)
    recall = Recall(ws.store, 1, lambda text: len(text.split()), budget=40)
    assert recall.choose([("Sam", "lol ok")]).facts == []
    first = recall.choose([("Sam", "where do you work these days?")])
    assert first.head.startswith(HEAD_TITLE) and [f.id for f in first.facts] == [job.id]
    # Nothing relevant: the same head, byte for byte (the KV cache keeps it).
    assert recall.choose([("Sam", "haha true")]).head == first.head
    both = recall.choose([("Sam", "how is your brother or sister?")])
    assert [f.id for f in both.facts] == [job.id, sister.id]
    facts.pin(pet.id)
    recall.refresh()
    pinned = recall.choose([("Sam", "ok")])
    assert pinned.facts[0].id == pet.id  # pinned: always, first
    tight = Recall(ws.store, 1, lambda text: len(text.split()), budget=15)
    assert [f.id for f in tight.choose([("Sam", "where do you work")]).facts] == [pet.id]


# -- the command line -------------------------------------------------------------------------


def test_cli_search_json_contract(ws: Workspace, tmp_path: Path, capsys) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("where does Alex work\n\nPickle the dog\nBerlin\n", encoding="utf-8")
    assert main(["memory", "search", "1", "--queries", str(queries), "--json", "--k", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in rows] == ["where does Alex work", "Pickle the dog", "Berlin"]
    stored = {m.id for m in ws.store.messages(1)}
    for row in rows:
        assert set(row) == {"query", "ms", "hits"} and row["ms"] >= 0
        assert 1 <= len(row["hits"]) <= 2
        scores = [h["score"] for h in row["hits"]]
        assert scores == sorted(scores, reverse=True)
        for hit in row["hits"]:
            assert set(hit) == {"score", "fact_id", "message_ids", "text"}
            assert set(hit["message_ids"]) <= stored
    assert rows[2]["hits"][0]["message_ids"] == ids_of(ws, "moving to Berlin")
    assert main(["memory", "search", "1", "Berlin", "--mode", "keyword"]) == 0
    assert "moving to Berlin" in capsys.readouterr().out


def test_cli_errors_name_what_is_wrong(ws: Workspace, tmp_path: Path, capsys) -> None:
    assert main(["memory", "search", "7", "x"]) == 2
    assert "no chat with id 7" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    assert main(["memory", "search", "1", "--queries", str(empty)]) == 2
    assert f"{empty}: no queries in it" in capsys.readouterr().err
    assert main(["memory", "search", "1", "Berlin", "--queries", str(empty)]) == 2
    assert "not both" in capsys.readouterr().err
    missing = tmp_path / "nope.txt"
    assert main(["memory", "search", "1", "--queries", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["memory", "add", "1", "Zed", "job", "pilot"]) == 2
    assert "'Zed' is not in chat 1" in capsys.readouterr().err
    assert main(["memory", "edit", "5", "--value", "x"]) == 2
    assert "no fact with id 5" in capsys.readouterr().err
    assert main(["memory", "list", "Nobody"]) == 2
    assert "nobody called 'Nobody'" in capsys.readouterr().err


def test_cli_fact_commands(ws: Workspace, capsys) -> None:
    def run(*args: str) -> object:
        assert main(["memory", *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    added = run("add", "1", "Alex", "lives in", "Leeds")
    assert added["outcome"] == "added" and added["fact"]["origin"] == "user"
    first = added["fact"]["id"]
    second = run("add", "1", "Alex", "lives in", "York")["fact"]["id"]
    (pair,) = run("conflicts", "1")
    assert (pair["old"]["id"], pair["new"]["id"]) == (first, second)
    assert [f["status"] for f in run("resolve", str(first), str(second), "both")] == [
        "active", "active",
    ]  # fmt: skip
    assert run("pin", str(first))[0]["status"] == "pinned"
    assert run("edit", str(first), "--value", "Leeds, Headingley")[0]["value"] == (
        "Leeds, Headingley"
    )
    assert run("remove", str(second))[0]["status"] == "removed"
    assert [f["id"] for f in run("list", "Alex")] == [first]
    # Newest first: the edit made `first` the newest unless both fall in the same second (then
    # the later id, `second`, comes first).
    listed = [(f["last_seen"], f["id"], f["status"]) for f in run("list", "1", "--status", "all")]
    assert sorted(listed, reverse=True) == listed
    assert {(i, status) for _, i, status in listed} == {(first, "pinned"), (second, "removed")}
    history = run("history", str(first))
    assert [e["action"] for e in history["events"]][:3] == ["added", "superseded", "flagged"]


def test_memory_opens_no_network_socket(ws: Workspace, tmp_path: Path) -> None:
    """With no endpoint configured, search (the embedding model included) and the fact
    commands never create a socket: an audit hook sees every one Python makes."""
    code = (
        "import sys\n"
        "def hook(event, args):\n"
        "    if event.startswith('socket.'):\n"
        "        raise SystemExit(f'network: {event} {args}')\n"
        "sys.addaudithook(hook)\n"
        "from convsim.tui.cli import main\n"
        "assert main(['memory', 'search', '1', 'where does Alex work', '--json']) == 0\n"
        "assert main(['memory', 'add', '1', 'Sam', 'pet', 'dog']) == 0\n"
        "assert main(['memory', 'list', '1']) == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bakery" in done.stdout


def test_simulate_gives_the_persona_its_facts(ws: Workspace, tiny, adapter, capsys) -> None:
    """`simulate --json` names the facts its prompt carried; `--memory off` carries none."""
    import shutil

    from convsim.core.store.records import ModelRecord

    folder = ws.locations.models / "alex-tiny"
    folder.mkdir(parents=True)
    shutil.copy(adapter, folder / "adapter.gguf")
    ws.store.add_model(
        ModelRecord("alex-tiny", 1, None, "Alex", str(tiny.gguf_path), "0" * 64,
                    "2026-01-01T00:00:00", "ready", str(folder))
    )  # fmt: skip
    pinned, _ = Facts(ws.store).add("Alex", "job", "baker", chat_id=1)
    Facts(ws.store).pin(pinned.id)
    cli = ["simulate", "alex-tiny", "--turns", "1", "--max-tokens", "4", "--seed", "0", "--json"]
    assert main(cli) == 0
    assert json.loads(capsys.readouterr().out)["memories"] == [pinned.id]
    assert main([*cli, "--memory", "off"]) == 0
    assert json.loads(capsys.readouterr().out)["memories"] == []


def test_cli_build_reads_each_message_once(ws: Workspace, tiny, tmp_path: Path, capsys) -> None:
    """`memory build` on a local GGUF (the tiny model here): every answer parses, and a second
    run after a newer export reads only the new message."""
    cli = ["memory", "build", "1", "--model", str(tiny.gguf_path), "--json"]
    assert main(cli) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["messages"], report["unparsed"], report["stopped"]) == (8, 0, False)
    assert report["extracted_upto"] == max(m.id for m in ws.store.messages(1))
    ws.import_export(write(tmp_path, NEWER))
    assert main(cli) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 1
    assert main(["memory", "build", "1", "--model", str(tmp_path / "none.gguf")]) == 2
    assert "none.gguf: no such GGUF file" in capsys.readouterr().err


def test_cli_endpoint_and_key(ws: Workspace, monkeypatch, capsys) -> None:
    import io

    import keyring
    from test_memory_extract import MemoryKeyring

    assert main(["memory", "build", "1", "--extractor", "endpoint"]) == 2
    assert "endpoint" in capsys.readouterr().err
    assert main(["memory", "endpoint", "localhost:8080"]) == 2
    assert "is not an http(s) URL" in capsys.readouterr().err
    assert main(["memory", "endpoint", "http://127.0.0.1:9/v1/", "--model", "qwen"]) == 0
    assert "http://127.0.0.1:9/v1 (model qwen)" in capsys.readouterr().out
    before = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        monkeypatch.setattr("sys.stdin", io.StringIO("sk-secret-123\n"))
        assert main(["memory", "key", "set"]) == 0
        assert list(backend.passwords.values()) == ["sk-secret-123"]
        # The endpoint is down: a clear error naming it, nothing stored, the mark unmoved.
        assert main(["memory", "build", "1", "--extractor", "endpoint"]) == 2
        err = capsys.readouterr().err
        assert "127.0.0.1:9" in err and "sk-secret" not in err
        assert Facts(ws.store).list(chat_id=1) == []
        assert main(["memory", "key", "clear"]) == 0
        assert backend.passwords == {}
    finally:
        keyring.set_keyring(before)
