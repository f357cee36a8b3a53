"""Extraction of facts from chats (core/memory/extract.py, gate.py, endpoint.py): the local
extractor on a tiny random GGUF held to the JSON schema by llama.cpp's grammar, the gate, the
job's transactions and resumption (with a deterministic extractor of our own protocol), an
OpenAI-compatible endpoint served for real on localhost, and the key in a real keyring
backend that keeps it in memory."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.backends.null
import keyring.errors
import pytest
from tinymodels import TinyModel

from convsim.core.chats.messages import SYSTEM, TEXT, ParsedChat, ParsedMessage
from convsim.core.inference.llama import LlamaModel
from convsim.core.memory import Facts
from convsim.core.memory.endpoint import (
    EndpointError,
    EndpointExtractor,
    KeyringUnavailable,
    clear_key,
    get_key,
    save_endpoint,
    set_key,
)
from convsim.core.memory.extract import (
    MAX_UNPARSED,
    ExtractError,
    LocalExtractor,
    UnparsedAnswer,
    build_memory,
    extract_live,
    parse_answer,
)
from convsim.core.memory.gate import KEYS, SUPPORT, Candidate, Gate, support
from convsim.core.memory.index import Row, chat_rows, progress_of
from convsim.core.store import Store

# -- a chat with facts in it ---------------------------------------------------------------------

FILLER = ["lol", "ok", "haha yes", "see you", "nice", "true", "omg", "wait what", "same", "ha"]
SAYINGS = {  # message index -> what it says, as (person, key, value) for the extractors here
    3: ("Sam", "workplace", "the bakery on Elm St"),
    25: ("Riya", "pet", "a beagle called Biscuit"),
    47: ("Sam", "workplace", "the hospital"),  # a new job: supersedes the bakery
}


def _message(i: int) -> tuple[str, str]:
    if i in SAYINGS:
        person, key, value = SAYINGS[i]
        return person, f"{'I work at' if key == 'workplace' else 'I have'} {value} now"
    return ("Sam", "Riya")[i % 2], FILLER[i % len(FILLER)]


def chat(n: int, system_only: bool = False) -> ParsedChat:
    if system_only:
        messages = [ParsedMessage(f"2025-01-01T10:{i:02d}:00", None, "joined", SYSTEM)
                    for i in range(3)]  # fmt: skip
    else:
        messages = [
            ParsedMessage(f"2025-01-{1 + i // 30:02d}T10:{i % 30:02d}:00", *_message(i), TEXT)
            for i in range(n)
        ]
    return ParsedChat(
        "whatsapp", "Sam", messages, source_key="chat-1", participants=["Sam", "Riya"]
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "data" / "convsim.db")
    yield s
    s.close()


def imported(store: Store, n: int = 60) -> int:
    return store.add_import([chat(n)], "export.txt")[0].chat_id


class Scripted:
    """A deterministic extractor of our own protocol: reads "I work at X now" / "I have X now"
    and proposes that fact, one unimportant fact and one the messages do not support, per
    message that states something. It can fail (unparsed) on chosen calls and set a stop event."""

    name = "scripted"

    def __init__(
        self, unparsed: Sequence[int] = (), stop_at: tuple[int, threading.Event] | None = None
    ):
        self.calls: list[list[int]] = []
        self.unparsed = set(unparsed)
        self.stop_at = stop_at

    def extract(self, window: Sequence[Row], people: Sequence[str]) -> list[Candidate]:
        self.calls.append([r.id for r in window])
        call = len(self.calls)
        if self.stop_at and call == self.stop_at[0]:
            self.stop_at[1].set()
        if call in self.unparsed:
            raise UnparsedAnswer("not JSON", "Sure! Here are the facts:")
        out = []
        for row in window:
            found = re.match(r"I (work at|have) (.+) now", row.text)
            if found and row.sender:
                key = "workplace" if found[1] == "work at" else "pet"
                out += [
                    Candidate(row.sender, key, found[2], (row.id,), 4),
                    Candidate(row.sender, "likes", "small talk", (row.id,), 1),
                    Candidate(row.sender, "lives in", "Atlantis", (row.id,), 5),
                ]
        return out


# -- the gate -------------------------------------------------------------------------------------


def test_the_gate_keeps_supported_important_facts_and_names_each_rejection() -> None:
    window: dict[int, tuple[str | None, str]] = {
        10: ("Sam", "I started at the bakery on Elm St today"),
        11: ("Sam", "my sister Ana is visiting"),
        12: ("Riya", "how is your new job at the museum?"),
        13: ("Riya", "I love my cat"),
        14: ("Sam", "see u at 11!!"),
        15: ("Sam", "I turn 29 on friday"),
    }
    people = ["Sam", "Riya"]
    gate = Gate()

    def kept(*fact: Any) -> tuple[int, ...] | None:
        found, reason = gate.check(Candidate(*fact), window, people)
        assert (found is None) == bool(reason)
        return found.sources if found else None

    assert kept("Sam", "workplace", "The Bakery, Elm St.", (10,), 4) == (10,)
    # Cited wrong (or outside the window): the window message that supports it is cited.
    assert kept("Sam", "sibling", "sister Ana", (10, 99), 3) == (11,)
    assert kept("Sam", "workplace", "the museum", (12,), 4) == (12,)  # Riya asks Sam: "your"
    assert kept("Sam", "age", "29", (15,), 3) == (15,)
    assert support("bakeries", ["the bakery"]) == 1.0  # stems and prefixes match
    checks = {
        "unknown person": Candidate("Dev", "job", "bakery", (10,), 4),
        "unknown key": Candidate("Sam", "mood", "bakery", (10,), 4),
        "unimportant": Candidate("Sam", "workplace", "bakery", (10,), 1),
        "unsupported": Candidate("Sam", "lives in", "Lisbon", (10,), 5),
    }
    for why, candidate in checks.items():
        assert gate.check(candidate, window, people) == (None, why)
    for fact in [
        ("Sam", "pet", "cat", (13,), 4),  # Riya's cat: a message neither by nor to Sam
        ("Sam", "birthday", "11", (14,), 4),  # bare numbers are an age or nothing
        ("Sam", "age", "the", (10,), 4),  # no content words
    ]:
        assert kept(*fact) is None
    assert Gate(min_importance=1).check(checks["unimportant"], window, people)[0] is not None


def test_answers_parse_only_in_the_shape_asked_for() -> None:
    good = '{"facts": [{"person": "Sam", "key": "Job", "value": " baker ", "source": [3],'
    good += ' "importance": 4.4}]}'
    assert parse_answer(good) == [Candidate("Sam", "job", "baker", (3,), 4)]
    assert parse_answer('{"facts": []}') == []
    for bad in ("Sure! Here you go", '{"fact": 1}', '{"facts": [{"person": "Sam"}]}', "[1]"):
        with pytest.raises(UnparsedAnswer):
            parse_answer(bad)


# -- the job --------------------------------------------------------------------------------------


def test_build_stores_what_passes_the_gate_with_sources_and_dates(store: Store) -> None:
    chat_id = imported(store)
    report = build_memory(store, chat_id, Scripted())
    assert (report.windows, report.messages, report.unparsed) == (3, 60, 0)
    assert (report.added, report.superseded) == (2, 1)  # bakery, beagle; then the hospital
    assert report.rejected == {"unknown person": 0, "unknown key": 0, "unimportant": 3,
                               "unsupported": 3}  # fmt: skip
    facts = {f.value: f for f in Facts(store).list(chat_id=chat_id)}
    assert set(facts) == {"the bakery on Elm St", "a beagle called Biscuit", "the hospital"}
    bakery, hospital = facts["the bakery on Elm St"], facts["the hospital"]
    assert bakery.status == "superseded" and bakery.replaced_by == hospital.id
    assert bakery.origin == "chat" and bakery.importance == pytest.approx(0.8)
    ids = [m.id for m in store.messages(chat_id)]
    assert bakery.sources == [ids[3]] and hospital.last_seen == "2025-01-02T10:17:00"
    assert progress_of(store, chat_id)[2] == ids[-1]
    # Nothing new: nothing read, nothing written.
    again = Scripted()
    assert build_memory(store, chat_id, again).windows == 0 and again.calls == []


def test_a_stop_ends_between_windows_and_the_next_run_goes_on(store: Store) -> None:
    chat_id = imported(store)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []
    report = build_memory(store, chat_id, Scripted(stop_at=(2, stop)),
                          progress=lambda d, t: seen.append((d, t)), stop=stop)  # fmt: skip
    assert report.stopped and report.windows == 2 and seen == [(0, 60), (20, 60)]
    assert len(Facts(store).list(chat_id=chat_id)) == 2  # the hospital is in window 3
    rest = Scripted()
    assert build_memory(store, chat_id, rest).windows == 1
    assert rest.calls == [[m.id for m in store.messages(chat_id)][40:]]
    assert len(Facts(store).list(chat_id=chat_id)) == 3


class FailingGate(Gate):
    """Crashes on the n-th check: a failure in the middle of a window's transaction."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.left = at

    def check(self, *args: Any) -> Any:
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("crash")
        return super().check(*args)


def test_a_crash_mid_window_leaves_nothing_of_it_and_a_rerun_matches_a_clean_run(
    store: Store,
) -> None:
    chat_id = imported(store)
    with pytest.raises(RuntimeError):  # window 2: the beagle is added, then the crash
        build_memory(store, chat_id, Scripted(), gate=FailingGate(at=5))
    ids = [m.id for m in store.messages(chat_id)]
    assert progress_of(store, chat_id)[2] == ids[19]
    assert [f.value for f in Facts(store).list(chat_id=chat_id)] == ["the bakery on Elm St"]
    report = build_memory(store, chat_id, Scripted())
    assert (report.added, report.seen, report.superseded) == (1, 0, 1)
    events = store.conn.execute("SELECT count(*) FROM fact_events").fetchone()[0]
    assert events == 3 + 2  # three added, one superseded, one flagged


def test_a_newer_export_is_read_only_from_its_new_messages(store: Store) -> None:
    chat_id = imported(store, 30)
    build_memory(store, chat_id, Scripted())
    assert store.add_import([chat(60)], "export2.txt")[0].chat_id == chat_id
    again = Scripted()
    report = build_memory(store, chat_id, again)
    ids = [m.id for m in store.messages(chat_id)]
    assert [i for call in again.calls for i in call] == ids[30:]
    assert (report.messages, report.superseded) == (30, 1)


def test_empty_and_system_only_chats_give_an_empty_memory(store: Store) -> None:
    quiet = store.add_import([chat(0, system_only=True)], "system.txt")[0].chat_id
    extractor = Scripted()
    report = build_memory(store, quiet, extractor)
    assert (report.windows, report.messages, report.added, extractor.calls) == (0, 0, 0, [])
    assert Facts(store).list(chat_id=quiet) == []
    with pytest.raises(KeyError):
        build_memory(store, 999, extractor)


def test_unparsed_answers_skip_a_window_and_enough_in_a_row_stop_resumably(
    store: Store,
) -> None:
    chat_id = imported(store, 140)  # 7 windows
    ids = [m.id for m in store.messages(chat_id)]
    report = build_memory(store, chat_id, Scripted(unparsed=[1]))
    assert (report.unparsed, report.windows) == (1, 6)  # window 1 (the bakery) skipped
    assert progress_of(store, chat_id)[2] == ids[-1]

    other = store.add_import([ParsedChat("whatsapp", "Dev", chat(140).messages,
                                         source_key="chat-2")], "x")[0].chat_id  # fmt: skip
    failing = Scripted(unparsed=range(3, 3 + MAX_UNPARSED))
    with pytest.raises(ExtractError, match="3 answers in a row were not the JSON") as caught:
        build_memory(store, other, failing)
    assert caught.value.report is not None and caught.value.report.windows == 2
    mark = progress_of(store, other)[2]
    assert mark == [m.id for m in store.messages(other)][39]
    rest = Scripted()
    build_memory(store, other, rest)
    assert rest.calls[0][0] == mark + 1


def test_live_exchanges_store_facts_without_sources_and_persona_lines_as_simulated(
    store: Store,
) -> None:
    chat_id = imported(store, 10)
    exchange = [("Riya", "I have a beagle called Biscuit now"), ("Sam", "I work at the zoo now")]
    got = extract_live(store, chat_id, "Sam", exchange, Scripted())
    assert [(f.value, f.origin, f.sources, what) for f, what in got] == [
        ("a beagle called Biscuit", "live", [], "added"),
        ("the zoo", "simulated", [], "added"),
    ]


# -- the local extractor, for real on a tiny random model -------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny: TinyModel) -> LlamaModel:
    return LlamaModel(tiny.gguf_path, n_ctx=4096, threads=2)


def test_grammar_generation_picks_what_llama_cpp_full_vocabulary_grammar_picks(
    tiny: TinyModel, tiny_model: LlamaModel
) -> None:
    from llama_cpp import Llama, LlamaGrammar

    from convsim.convert.llama_logs import quiet_llama_logs
    from convsim.core.inference.llama.machine import model_params_without_amx

    small = {"type": "object", "required": ["who", "what", "n"], "additionalProperties": False}
    small["properties"] = {
        "who": {"enum": ["Sam", "Riya"]},
        "what": {"type": "string", "maxLength": 12},
        "n": {"type": "array", "items": {"enum": [4, 5]}, "maxItems": 3},
    }
    schema = json.dumps(small)
    prompt = tiny_model.tokenize("[Sam] hey we are going")
    ours = list(tiny_model.generate_json(prompt, schema))
    assert tiny_model.is_eog(ours[-1])
    # The grammar matches characters, not bytes: a byte token may leave invalid UTF-8.
    answer = json.loads(tiny_model.detokenize(ours[:-1]).decode("utf-8", errors="replace"))
    assert answer["who"] in ("Sam", "Riya") and len(answer["what"]) <= 12
    with quiet_llama_logs(), model_params_without_amx():  # as convsim loads models
        llm = Llama(str(tiny.gguf_path), n_ctx=256, n_threads=2, verbose=False)
    grammar = LlamaGrammar.from_json_schema(schema, verbose=False)
    theirs = []
    for token in llm.generate(prompt, temp=0.0, repeat_penalty=1.0, grammar=grammar):
        theirs.append(token)
        if len(theirs) == len(ours):
            break
    llm.close()
    assert theirs == ours
    with pytest.raises(ValueError, match="cannot turn this JSON schema"):
        next(tiny_model.generate_json(prompt, '{"type": "object", "properties": 7}'))


class Recording(LocalExtractor):
    proposed = 0

    def extract(self, window: Sequence[Row], people: Sequence[str]) -> list[Candidate]:
        out = super().extract(window, people)
        self.proposed += len(out)
        for fact in out:  # the grammar allows nothing else
            assert fact.person in people and fact.key in KEYS and 1 <= fact.importance <= 5
            assert set(fact.sources) <= {r.id for r in window} and len(fact.value) <= 60
        return out


def test_the_local_extractor_always_parses_and_stores_only_supported_facts(
    store: Store, tiny_model: LlamaModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: Any) -> None:
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    chat_id = imported(store, 40)
    extractor = Recording(tiny_model)
    report = build_memory(store, chat_id, extractor, gate=Gate(min_importance=1))
    assert report.unparsed == 0 and report.windows == 2
    proposed = extractor.proposed
    stored = report.added + report.seen + report.superseded + report.contradicted
    assert stored + sum(report.rejected.values()) == proposed
    texts = {m.id: m.text for m in store.messages(chat_id)}
    for fact in Facts(store).list(chat_id=chat_id):
        assert support(fact.value, [texts[i] for i in fact.sources]) >= SUPPORT
    assert report.rejected["unsupported"] + stored > 0 or proposed == 0


def test_a_window_that_cannot_fit_the_model_is_a_clear_error(store: Store, tiny: TinyModel) -> None:
    chat_id = imported(store, 20)
    small = LocalExtractor(LlamaModel(tiny.gguf_path, n_ctx=256, threads=2))
    with pytest.raises(ExtractError, match="does not fit its context") as caught:
        build_memory(store, chat_id, small)
    assert caught.value.report is not None and progress_of(store, chat_id)[2] == 0


# -- an OpenAI-compatible endpoint, served on localhost --------------------------------------------

KEY = "sk-test-5ecret-key-0123456789"


class Handler(BaseHTTPRequestHandler):
    """/good, /no-schema (refuses json_schema), /malformed, /html, /slow, /auth (wants KEY),
    /broken (HTTP 500), /fail-after-2 (HTTP 503 from the third request); each under /v1."""

    requests: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.path.split("/")[1]
        Handler.requests.append((mode, body))
        fmt = body["response_format"]["type"]
        if mode == "slow":
            time.sleep(1.0)
        if mode == "auth" and self.headers.get("Authorization") != f"Bearer {KEY}":
            return self._send(401, b'{"error": "invalid api key"}')
        if mode == "no-schema" and fmt == "json_schema":
            return self._send(400, b'{"error": "response_format json_schema not supported"}')
        if mode == "fail-after-2" and len([m for m, _ in Handler.requests if m == mode]) > 2:
            return self._send(503, b"overloaded")
        if mode == "broken":
            return self._send(500, b"model crashed")
        if mode == "html":
            return self._send(200, b"<html>hello</html>")
        content = "Sure! {facts: none}" if mode == "malformed" else self._facts(body)
        answer = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        self._send(200, json.dumps(answer).encode())

    def _facts(self, body: dict[str, Any]) -> str:
        facts = []
        for line in body["messages"][1]["content"].splitlines():
            found = re.match(r"#(\d+) \[(\w+)\] I (work at|have) (.+) now", line)
            if found:
                key = "workplace" if found[3] == "work at" else "pet"
                facts.append({"person": found[2], "key": key, "value": found[4],
                              "source": [int(found[1])], "importance": 4})  # fmt: skip
        return "```json\n" + json.dumps({"facts": facts}) + "\n```"

    def _send(self, code: int, data: bytes) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (the slow case)
            pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_good_endpoint_builds_memory_and_a_refused_schema_falls_back(
    store: Store, server: str
) -> None:
    chat_id = imported(store)
    report = build_memory(store, chat_id, EndpointExtractor(f"{server}/good/v1", "m"))
    assert (report.added, report.superseded, report.unparsed) == (2, 1, 0)
    Handler.requests.clear()
    other = store.add_import([ParsedChat("whatsapp", "x", chat(60).messages, source_key="2")],
                             "x")[0].chat_id  # fmt: skip
    extractor = EndpointExtractor(f"{server}/no-schema/v1", "m")
    assert build_memory(store, other, extractor).added == 2 and extractor.schema_refused
    formats = [b["response_format"]["type"] for _, b in Handler.requests]
    assert formats == ["json_schema", "json_object", "json_object", "json_object"]
    sent = Handler.requests[0][1]
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["facts"]["maxItems"] == 5


@pytest.mark.parametrize(
    ("url", "kind", "says"),
    [
        ("{closed}/v1", "unreachable", "cannot reach the memory endpoint at http://127.0.0.1:"),
        ("http://no-such-host.invalid/v1", "unreachable", "host not found"),
        ("{server}/slow/v1", "timeout", "did not answer within 0.3 s"),
        ("{server}/auth/v1", "auth", "refused the request (HTTP 401): its API key is missing"),
        ("{server}/broken/v1", "http", "answered HTTP 500: model crashed"),
    ],
)
def test_endpoint_failures_stop_the_job_with_one_clear_line(
    store: Store, server: str, url: str, kind: str, says: str
) -> None:
    chat_id = imported(store, 20)
    target = url.format(closed=f"http://127.0.0.1:{closed_port()}", server=server)
    with pytest.raises(EndpointError) as caught:
        build_memory(store, chat_id, EndpointExtractor(target, "m", timeout=0.3))
    assert caught.value.kind == kind and says in str(caught.value)
    assert "\n" not in str(caught.value) and caught.value.report is not None
    assert progress_of(store, chat_id)[2] == 0 and Facts(store).list() == []


def test_malformed_answers_stop_after_a_few_and_a_good_server_resumes(
    store: Store, server: str
) -> None:
    chat_id = imported(store, 100)
    for mode in ("malformed", "html"):
        with pytest.raises(ExtractError, match="answers in a row were not the JSON"):
            build_memory(store, chat_id, EndpointExtractor(f"{server}/{mode}/v1", "m"))
        assert progress_of(store, chat_id)[2] == 0
    Handler.requests.clear()
    with pytest.raises(EndpointError, match="HTTP 503: overloaded"):
        build_memory(store, chat_id, EndpointExtractor(f"{server}/fail-after-2/v1", "m"))
    ids = [m.id for m in store.messages(chat_id)]
    assert progress_of(store, chat_id)[2] == ids[39]
    report = build_memory(store, chat_id, EndpointExtractor(f"{server}/good/v1", "m"))
    assert report.windows == 3 and report.superseded == 1
    assert len(Facts(store).list(chat_id=chat_id)) == 3


# -- the key, in real keyring backends ------------------------------------------------------------


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring that keeps passwords in this process only."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("no such password")


@pytest.fixture
def use_keyring() -> Iterator[Any]:
    before = keyring.get_keyring()
    yield keyring.set_keyring
    keyring.set_keyring(before)


def test_the_key_lives_only_in_the_keyring(
    store: Store, server: str, tmp_path: Path, use_keyring: Any
) -> None:
    backend = MemoryKeyring()
    use_keyring(backend)
    assert get_key() is None and clear_key() is False
    set_key(f"  {KEY}\n")
    assert backend.passwords == {("convsim", "memory-endpoint"): KEY} and get_key() == KEY
    save_endpoint(store, f"{server}/auth/v1/", "qwen")
    extractor = EndpointExtractor.from_settings(store)
    assert (extractor.url, extractor.model) == (f"{server}/auth/v1", "qwen")
    assert KEY not in repr(extractor)
    chat_id = imported(store)
    assert build_memory(store, chat_id, extractor).added == 2
    store.conn.execute("PRAGMA wal_checkpoint(FULL)")
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or KEY.encode() not in path.read_bytes(), path
    backend.passwords[("convsim", "memory-endpoint")] = "wrong"
    with pytest.raises(EndpointError, match="its API key was refused") as caught:
        EndpointExtractor.from_settings(store).extract(chat_rows(store, chat_id), ["Sam"])
    assert caught.value.kind == "auth" and "wrong" not in str(caught.value)
    assert clear_key() is True and get_key() is None and backend.passwords == {}
    with pytest.raises(ValueError, match="not an http"):
        save_endpoint(store, "localhost:8080", "m")


def test_a_missing_keyring_is_explained(store: Store, server: str, use_keyring: Any) -> None:
    use_keyring(keyring.backends.fail.Keyring())
    for action in (get_key, lambda: set_key(KEY), clear_key):
        with pytest.raises(KeyringUnavailable, match="no system keyring found: install or unlock"):
            action()
    use_keyring(keyring.backends.null.Keyring())  # accepts the key and forgets it
    with pytest.raises(KeyringUnavailable, match="did not keep the key"):
        set_key(KEY)
    # Without a keyring a local server that needs no key still serves.
    use_keyring(keyring.backends.fail.Keyring())
    save_endpoint(store, f"{server}/good/v1", "m")
    assert EndpointExtractor.from_settings(store)._key is None
