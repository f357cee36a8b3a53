"""Extraction ("hippocampus"): facts about people, read from their messages by a language model.

`build_memory` walks a chat's text messages after its `extracted_upto` mark in windows of
consecutive messages, asks an `Extractor` for candidate facts, passes them through the `Gate`
(gate.py) and stores the survivors with `Facts.add` (which merges repeats and supersedes old
values). Each window's facts and the moved mark are one transaction, so a stop, a crash or a
failing endpoint leaves nothing half-written, and the next call goes on from the mark; a newer
export of the chat adds messages after the mark, so only they are read.

Extractors share one protocol: `extract(window, people) -> list[Candidate]`, raising
`UnparsedAnswer` for an answer that is not the JSON asked for (the job skips that window;
`MAX_UNPARSED` in a row stop it, resumable) and `ExtractError` for anything that must stop the
job. `LocalExtractor` runs a GGUF through llama.cpp with the output held to `fact_schema` by a
grammar, so its answers always parse; `spans.SpanExtractor` asks the GGUF, message by message,
to pick a fact's value among the message's own words (`spans.local_extractor` chooses between
the two methods); `endpoint.EndpointExtractor` asks an OpenAI-compatible server.
`extract_live` does the same for an exchange of a live chat, which is not in the store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from convsim.core.inference.llama import LlamaModel
from convsim.core.memory.facts import Fact, Facts, now
from convsim.core.memory.gate import KEYS, REASONS, Candidate, Gate
from convsim.core.memory.index import Row, chat_rows, progress_of, set_mark, still_stored
from convsim.core.store import Store

WINDOW_MESSAGES = 20  # messages per window...
WINDOW_CHARS = 2400  # ...or fewer, when their text runs past this
MESSAGE_CHARS = 300  # a longer message is cut in the prompt
MAX_FACTS = 5  # per window: the schema's maxItems
VALUE_CHARS = 60  # the schema's maxLength of a value
MAX_UNPARSED = 3  # unparsed answers in a row that stop a job

Progress = Callable[[int, int], None]  # (messages done, messages to do)

INSTRUCTION = (
    "Read the chat and list lasting facts the people state about themselves or their lives"
    " (job, home, family, pets, likes, plans...), as JSON. Each fact: the person it is about,"
    " a key from: " + ", ".join(KEYS) + "; a short value in the chat's own words; the ids"
    " (#) of the messages that say it; importance 1 (trivia) to 5 (defining). Small talk is"
    ' not a fact: answer {"facts": []} when there is none.'
)
_EXAMPLES = (
    (
        "#1 [Ana] I finally got the job at the library!\n#2 [Ben] congrats!! when do you start"
        "\n#3 [Ana] monday. my brother Tom is visiting this weekend too",
        '{"facts": [{"person": "Ana", "key": "workplace", "value": "the library", "source": [1],'
        ' "importance": 4}, {"person": "Ana", "key": "sibling", "value": "brother Tom",'
        ' "source": [3], "importance": 3}]}',
    ),
    ("#7 [Ben] lol\n#8 [Ana] see you later", '{"facts": []}'),
)


class UnparsedAnswer(ValueError):
    """An extractor's answer that is not the JSON asked for; `answer` holds its start."""

    def __init__(self, why: str, answer: str) -> None:
        super().__init__(f"{why}: {answer[:120]!r}")
        self.answer = answer


class ExtractError(Exception):
    """Extraction stopped for a reason the user must see (one line). `report` says what was
    done before (set by `build_memory`); the mark stays at the last stored window."""

    report: BuildReport | None = None


class Extractor(Protocol):
    name: str

    def extract(self, window: Sequence[Row], people: Sequence[str]) -> list[Candidate]: ...


# -- the question and the answer --------------------------------------------------------------


def fact_schema(
    people: Sequence[str], ids: Sequence[int], *, pattern: bool = True
) -> dict[str, Any]:
    """The JSON Schema of an answer for one window: people and source ids are enums of the
    chat's people and the window's ids, so a grammar can only cite what exists. Every part is
    bounded (`pattern` keeps backslashes and control characters out of values, for llama.cpp;
    endpoints get a plain maxLength)."""
    value: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": VALUE_CHARS}
    if pattern:
        value = {"type": "string", "pattern": f'^[^"\\\\\\x00-\\x1f]{{1,{VALUE_CHARS}}}$'}
    item = {
        "type": "object",
        "properties": {
            "person": {"enum": list(people)},
            "key": {"enum": list(KEYS)},
            "value": value,
            "source": {"type": "array", "items": {"enum": list(ids)}, "minItems": 1,
                       "maxItems": 3},
            "importance": {"enum": [1, 2, 3, 4, 5]},
        },
        "required": ["person", "key", "value", "source", "importance"],
        "additionalProperties": False,
    }  # fmt: skip
    facts = {"type": "array", "items": item, "maxItems": MAX_FACTS}
    return {
        "type": "object",
        "properties": {"facts": facts},
        "required": ["facts"],
        "additionalProperties": False,
    }


def render_window(window: Sequence[Row]) -> str:
    """The messages as the model reads them: `#id [Name] text`, one a line."""
    lines = []
    for row in window:
        text = " ".join(row.text.split())
        if len(text) > MESSAGE_CHARS:
            text = text[:MESSAGE_CHARS] + "…"
        lines.append(f"#{row.id} [{row.sender or '?'}] {text}")
    return "\n".join(lines)


def parse_answer(text: str) -> list[Candidate]:
    """The candidates of an answer: `{"facts": [{person, key, value, source, importance}]}`
    (a bare list of facts is taken too). Anything else raises `UnparsedAnswer`. Whether the
    person and key exist is the gate's business, not the parser's."""
    try:
        data = json.loads(text)
    except ValueError:
        raise UnparsedAnswer("not JSON", text) from None
    facts = data.get("facts") if isinstance(data, dict) else data
    if not isinstance(facts, list):
        raise UnparsedAnswer('no "facts" list', text)
    out = []
    for item in facts:
        try:
            source = item["source"]
            ids = [source] if isinstance(source, int) else [int(i) for i in source]
            fact = Candidate(
                str(item["person"]).strip(),
                " ".join(str(item["key"]).lower().split()),
                " ".join(str(item["value"]).split()),
                tuple(ids),
                min(5, max(1, round(float(item["importance"])))),
            )
        except (KeyError, TypeError, ValueError):
            raise UnparsedAnswer(
                "a fact without person, key, value, source and importance", text
            ) from None
        if fact.value:
            out.append(fact)
    return out


def _complete_part(text: str) -> str:
    """An answer cut short (token or time cap), closed after its last complete fact."""
    end = text.rfind("}")
    while end > 0:
        try:
            json.loads(text[: end + 1] + "]}")
            return text[: end + 1] + "]}"
        except ValueError:
            end = text.rfind("}", 0, end)
    return '{"facts": []}'


class LocalExtractor:
    """Extraction on a local GGUF (a path, or an open `LlamaModel`), greedy and held to
    `fact_schema` by a llama.cpp grammar, so every answer parses. The prompt is an instruction
    and two worked examples (the default base is a small model that was not instruction-tuned;
    any instruct GGUF does better). An answer still running at `max_seconds` is cut after
    its last complete fact (counted in `truncated`)."""

    name = "local"
    method = "json"

    def __init__(
        self, model: Path | LlamaModel, *, n_ctx: int = 4096, max_seconds: float = 60.0
    ) -> None:
        self.model = model if isinstance(model, LlamaModel) else LlamaModel(model, n_ctx=n_ctx)
        self.max_seconds = max_seconds
        self.truncated = 0
        shots = "".join(f"Chat:\n{chat}\nFacts: {answer}\n\n" for chat, answer in _EXAMPLES)
        self._head = f"{INSTRUCTION}\n\n{shots}Chat:\n"

    def extract(self, window: Sequence[Row], people: Sequence[str]) -> list[Candidate]:
        if not window or not people:
            return []
        model = self.model
        schema = json.dumps(fact_schema(people, [r.id for r in window]))
        prompt = model.tokenize(f"{self._head}{render_window(window)}\nFacts: ")
        # Every token writes at least one byte, so the longest answer the schema allows bounds
        # the tokens; the context may bound them sooner.
        cap = min(_answer_bytes(people, window), model.n_ctx() - len(prompt) - 1)
        if cap < 16:
            raise ExtractError(f"{model.path.name}: a window of messages does not fit its context")
        out: list[int] = []
        deadline = time.monotonic() + self.max_seconds
        with closing(model.generate_json(prompt, schema)) as tokens:
            for token in tokens:
                if model.is_eog(token):
                    break
                out.append(token)
                if len(out) >= cap or time.monotonic() > deadline:
                    break
        text = model.detokenize(out).decode("utf-8", errors="replace")
        try:
            return parse_answer(text)
        except UnparsedAnswer:
            self.truncated += 1
            return parse_answer(_complete_part(text))


def _answer_bytes(people: Sequence[str], window: Sequence[Row]) -> int:
    """Bytes of the longest answer the schema allows (every value at 4 bytes a character,
    every optional space taken): a bound on its tokens, as each token writes a byte or more."""
    fact = {"person": max(people, key=lambda p: len(p.encode())), "key": max(KEYS, key=len),
            "value": "\U0001f600" * VALUE_CHARS, "source": [max(r.id for r in window)] * 3,
            "importance": 5}  # fmt: skip
    answer = json.dumps({"facts": [fact] * MAX_FACTS}, ensure_ascii=False)
    return len(answer.encode("utf-8")) + 16 * (MAX_FACTS + 1)


# -- the job ------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    chat_id: int
    extractor: str
    messages: int = 0  # messages read by this call
    windows: int = 0
    added: int = 0
    seen: int = 0  # repeats of facts already held
    superseded: int = 0  # new values that replaced an older one (both kept, pair flagged)
    contradicted: int = 0  # kept aside: a pinned or real fact says otherwise
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    unparsed: int = 0  # answers that were not the JSON asked for (windows skipped)
    truncated: int = 0  # answers cut at the time cap, kept up to their last complete fact
    seconds: float = 0.0
    stopped: bool = False  # by the caller's stop event
    extracted_upto: int = 0  # the chat's mark after this call

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def windows(rows: Sequence[Row]) -> list[list[Row]]:
    """Consecutive messages, `WINDOW_MESSAGES` at most and about `WINDOW_CHARS` of text."""
    out: list[list[Row]] = []
    current: list[Row] = []
    size = 0
    for row in rows:
        length = min(len(row.text), MESSAGE_CHARS) + 16
        if current and (len(current) >= WINDOW_MESSAGES or size + length > WINDOW_CHARS):
            out.append(current)
            current, size = [], 0
        current.append(row)
        size += length
    return [*out, current] if current else out


def chat_people(store: Store, chat_id: int) -> list[str]:
    rows = store.conn.execute(
        "SELECT name FROM participants WHERE chat_id = ? ORDER BY id", (chat_id,)
    )
    return [name for (name,) in rows]


def build_memory(
    store: Store,
    chat_id: int,
    extractor: Extractor,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    gate: Gate | None = None,
) -> BuildReport:
    """Extract facts from the chat's messages after its mark (see the module docstring).
    `progress(done, total)` counts messages; `stop` ends the job between windows (the report
    says `stopped`). Raises KeyError for an unknown chat, and `ExtractError` (with `report`)
    when the extractor fails or `MAX_UNPARSED` answers in a row do not parse."""
    if not store.has_chat(chat_id):
        raise KeyError(f"no chat with id {chat_id}")
    gate = gate or Gate()
    start = time.monotonic()
    report = BuildReport(chat_id, extractor.name, extracted_upto=progress_of(store, chat_id)[2])
    people = chat_people(store, chat_id)
    todo = chat_rows(store, chat_id, after=report.extracted_upto)
    truncated_before = getattr(extractor, "truncated", 0)
    done, failures = 0, 0
    try:
        for window in windows(todo):
            if stop is not None and stop.is_set():
                report.stopped = True
                break
            if progress:
                progress(done, len(todo))
            try:
                candidates = extractor.extract(window, people)
            except UnparsedAnswer as exc:
                report.unparsed += 1
                failures += 1
                if failures >= MAX_UNPARSED:
                    raise ExtractError(
                        f"{extractor.name} extractor: {failures} answers in a row were not the"
                        f" JSON asked for (last: {exc}); facts up to message"
                        f" #{report.extracted_upto} are kept and a new run resumes there"
                    ) from exc
                done += len(window)
                report.messages = done
                continue
            failures = 0
            if not _store_window(store, chat_id, window, candidates, gate, report):
                report.stopped = True  # the chat was forgotten meanwhile
                break
            done += len(window)
            report.messages = done
        if progress and not report.stopped:
            progress(done, len(todo))
    except ExtractError as exc:
        exc.report = report
        raise
    finally:
        report.truncated = getattr(extractor, "truncated", 0) - truncated_before
        report.seconds = round(time.monotonic() - start, 3)
    return report


def _store_window(
    store: Store,
    chat_id: int,
    window: Sequence[Row],
    candidates: Sequence[Candidate],
    gate: Gate,
    report: BuildReport,
) -> bool:
    """Store what the gate keeps of `candidates`; False (nothing stored) when the chat is
    gone. The chat's people and messages are read again under the write lock: a person or
    messages forgotten since the job read them are neither stored about nor cited."""
    stamps = {r.id: r.ts for r in window}
    facts = Facts(store)
    with store.transaction() as conn:
        if not store.has_chat(chat_id):
            return False
        people = chat_people(store, chat_id)
        kept_ids = still_stored(conn, [r.id for r in window])
        texts = {r.id: (r.sender, r.text) for r in window if r.id in kept_ids}
        for candidate in candidates:
            kept, reason = gate.check(candidate, texts, people)
            if kept is None:
                report.rejected[reason] += 1
                continue
            _, outcome = facts.add(
                kept.person, kept.key, kept.value, chat_id=chat_id, sources=kept.sources,
                origin="chat", seen=max(stamps[i] for i in kept.sources),
                importance=kept.importance / 5,
            )  # fmt: skip
            setattr(report, outcome, getattr(report, outcome) + 1)
        set_mark(conn, chat_id, "extracted_upto", window[-1].id)
    report.windows += 1
    report.extracted_upto = window[-1].id
    return True


def extract_live(
    store: Store,
    chat_id: int | None,
    person: str,
    exchange: Sequence[tuple[str, str]],
    extractor: Extractor,
    origin: str = "live",
    gate: Gate | None = None,
) -> list[tuple[Fact, str]]:
    """Facts from an exchange of a live chat: (speaker, text) pairs, not in the store, so the
    facts have no sources. `person` is the persona the model speaks as: what its lines say is
    the model's invention and is stored as "simulated"; the other lines are stored with
    `origin` ("live" for the user's own words; pass "simulated" when the model wrote both
    sides). Facts about people outside the chat and the exchange are dropped. Returns each
    stored fact with what `Facts.add` did; `UnparsedAnswer` and `ExtractError` propagate."""
    known = chat_people(store, chat_id) if chat_id is not None else []
    people = list(dict.fromkeys([*known, *(speaker for speaker, _ in exchange)]))
    stamp, gate = now(), gate or Gate()
    window = [Row(i, stamp, who, text, "") for i, (who, text) in enumerate(exchange, 1)]
    texts = {r.id: (r.sender, r.text) for r in window}
    checked = [gate.check(c, texts, people)[0] for c in extractor.extract(window, people)]
    facts, out = Facts(store), []
    with store.transaction():
        for kept in filter(None, checked):
            speakers = {window[i - 1].sender for i in kept.sources}
            fact_origin = "simulated" if person in speakers else origin
            out.append(
                facts.add(kept.person, kept.key, kept.value, chat_id=chat_id,
                          origin=fact_origin, seen=stamp, importance=kept.importance / 5)
            )  # fmt: skip
    return out
