"""Span extraction (core/memory/spans.py): cues found without a model, the grammar that lets the
model name only a span of the message or "none" (on the tiny random GGUF, and the seam's
`generate_choice` itself), and the whole job through `build_memory` and `extract_live`, with a
scripted stand-in for the model where the answer must be known."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from tinymodels import TinyModel

from convsim.core.chats.messages import TEXT, ParsedChat, ParsedMessage
from convsim.core.inference.llama import LlamaModel
from convsim.core.memory import Facts
from convsim.core.memory.extract import LocalExtractor, build_memory, extract_live
from convsim.core.memory.gate import KEYS, SUPPORT, Gate, support
from convsim.core.memory.index import Row, progress_of
from convsim.core.memory.spans import (
    IMPORTANCE,
    MAX_WORDS,
    NONE,
    Cue,
    SpanExtractor,
    candidate_spans,
    find_cues,
    flat,
    local_extractor,
    span_schema,
)
from convsim.core.store import Store

PEOPLE = ["Sam Rivera", "Riya Shah"]


def cues(text: str, sender: str = "Sam Rivera", people: Sequence[str] = PEOPLE) -> set:
    return {(c.person, c.key) for c in find_cues(text, sender, people)}


# -- cues ------------------------------------------------------------------------------------------


def test_cues_name_the_person_the_words_point_at() -> None:
    # First person, or no subject at all (texting drops the "I"): the sender.
    assert cues("I started at the bakery on Elm St today") == {("Sam Rivera", "job")}
    assert cues("moving to leeds in june!!") == {("Sam Rivera", "lives in")}
    assert cues("my sister Ana is visiting") == {("Sam Rivera", "sibling")}
    # "you" (u, ur...) in a two-person chat: the other one.
    assert cues("how's ur new job at the museum?", "Riya Shah") == {("Sam Rivera", "job")}
    assert cues("happy birthday!! 30 looks good on u", "Riya Shah") == {("Sam Rivera", "birthday")}
    # A participant named: them.
    assert cues("Riya moved to Lisbon last week") == {("Riya Shah", "lives in")}
    # Someone outside the chat: no cue for the sender.
    assert cues("she moved to Lisbon last week") == set()
    assert cues("my brother got into uni!!") == {("Sam Rivera", "sibling")}  # not Sam's school
    # With three people, "you" says nobody in particular.
    assert cues("how's your new job?", "Riya Shah", [*PEOPLE, "Dev"]) == set()


def test_small_talk_and_system_lines_have_no_cue() -> None:
    for text in ("lol", "ok see u at 7", "in the car park. twice", "plans for the bank holiday?"):
        assert cues(text) == set(), text
    assert find_cues("Sam joined using this group's invite link", None, PEOPLE) == []


def test_a_cue_knows_its_own_words_and_asks_in_them() -> None:
    [cue] = find_cues("my little brother leo got into plymouth", "Sam Rivera", PEOPLE)
    assert (cue.key, cue.noun, cue.question) == ("sibling", "brother", "Sam Rivera's brother")
    assert "brother" in cue.words and "leo" not in cue.words
    [cue] = find_cues("ok so I work at crumb & co now", "Sam Rivera", PEOPLE)
    assert cue.question == "Sam Rivera's job" and cue.words == {"work"}
    assert set(IMPORTANCE) <= set(KEYS)


def test_candidate_spans_are_runs_of_the_message_words() -> None:
    text = 'first week at Crumb & Co done!!  the  bakery\non elm st is "chaos"'
    spans = candidate_spans(text, frozenset({"week"}))
    message = flat(text)
    assert "Crumb & Co" in spans and "the bakery on elm st" in spans and "elm st" in spans
    for span in spans:
        words = [w for w in span.split() if any(c.isalnum() for c in w)]
        assert span in message and 1 <= len(words) <= MAX_WORDS and "!" not in span
        assert "week" not in span.split() and '"' not in span
        assert span.split()[-1] not in ("on", "the", "is")
    assert spans.index("Crumb & Co") < spans.index("elm st")  # in the order they appear
    assert candidate_spans("rolo the beagle", frozenset()) == ["rolo", "rolo the beagle",
                                                              "the beagle", "beagle"]  # fmt: skip
    assert candidate_spans("you're it!! yes ok lol, the whole day on the", frozenset()) == []
    assert candidate_spans("my mum's jollof 🎉 tonight", frozenset()) == ["mum's", "mum's jollof",
                                                                          "jollof"]  # fmt: skip


# -- the model's choice, held by the grammar -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny: TinyModel) -> LlamaModel:
    return LlamaModel(tiny.gguf_path, n_ctx=4096, threads=2)


def test_the_span_grammar_allows_only_a_span_or_none(tiny_model: LlamaModel) -> None:
    spans = candidate_spans("the café on Elm St, Crumb & Co", frozenset())
    assert "the café on Elm St" in spans and "Crumb & Co" in spans
    prompt = tiny_model.tokenize("[Sam] we are going to the")
    for choices in (spans, ["café", "Crumb & Co"], [NONE]):
        out = list(tiny_model.generate_json(prompt, span_schema(choices)))
        assert tiny_model.is_eog(out[-1])
        assert json.loads(tiny_model.detokenize(out[:-1]).decode("utf-8")) in [NONE, *choices]


def test_every_answer_is_a_span_of_the_message_or_none(tiny_model: LlamaModel) -> None:
    extractor = SpanExtractor(tiny_model)
    messages = [
        ("Sam Rivera", "first week at the bakery on Elm St, chaos but fun"),
        ("Riya Shah", "how's ur new flat in Ancoats?? still no hot water?"),
        ("Sam Rivera", "my sister Maya is a midwife!! she delivered twins at 3am"),
        ("Riya Shah", "allergic to peanuts since forever, epipen in my bag"),
    ]
    answers = []
    for sender, text in messages:
        for cue in find_cues(text, sender, PEOPLE):
            value = extractor.ask(sender, text, cue)
            assert value is None or value in candidate_spans(text, cue.words)
            answers.append(value)
    assert extractor.calls == len(answers) >= len(messages)
    assert extractor.found == sum(a is not None for a in answers)


# -- the job, with a scripted model ----------------------------------------------------------------


class Scripted:
    """Stands in for `LlamaModel` where `SpanExtractor` uses it: answers the first wanted value
    among the choices (any case), else "none", and keeps the prompts it was given."""

    def __init__(self, wanted: Sequence[str]) -> None:
        self.wanted = [w.lower() for w in wanted]
        self.prompts: list[str] = []

    def tokenize(self, text: str) -> list[int]:
        self.prompts.append(text)
        return [0] * (len(text) // 8)

    def n_ctx(self) -> int:
        return 4096

    def is_eog(self, token: int) -> bool:
        return token < 0

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return bytes(tokens)

    def generate_json(self, prompt: list[int], schema: str) -> Iterator[int]:
        choices = json.loads(schema)["enum"]
        assert choices[0] == NONE
        picked = next((c for c in choices[1:] if c.lower() in self.wanted), NONE)
        yield from json.dumps(picked).encode()
        yield -1


SAYINGS = [
    ("Sam Rivera", "lol ok"),
    ("Sam Rivera", "I started at the bakery on Elm St today"),  # job: bakery
    ("Riya Shah", "congrats!! how's ur new flat in Ancoats"),  # Sam lives in Ancoats
    ("Riya Shah", "my boyfriend Raj says hi"),  # Riya's partner
    ("Sam Rivera", "haha hi Raj"),
    ("Sam Rivera", "the cat is asleep on my bed"),  # a cue, but the model says none
]


def chat(sayings: Sequence[tuple[str, str]]) -> ParsedChat:
    messages = [ParsedMessage(f"2025-03-01T10:{i:02d}:00", who, text, TEXT)
                for i, (who, text) in enumerate(sayings)]  # fmt: skip
    return ParsedChat("whatsapp", "Sam", messages, source_key="c", participants=PEOPLE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "convsim.db")
    yield s
    s.close()


def test_no_cue_no_model_call(store: Store) -> None:
    small_talk = chat([("Sam Rivera", "lol"), ("Riya Shah", "ok see u")])
    chat_id = store.add_import([small_talk], "x")[0].chat_id
    model = Scripted(["lol"])
    report = build_memory(store, chat_id, SpanExtractor(model))
    assert (report.messages, report.added) == (2, 0) and model.prompts == []


def test_build_stores_supported_span_facts_and_resumes(store: Store) -> None:
    chat_id = store.add_import([chat(SAYINGS)], "x")[0].chat_id
    model = Scripted(["the bakery on Elm St", "ancoats", "raj", "bed"])
    extractor = SpanExtractor(model)
    report = build_memory(store, chat_id, extractor)
    assert report.unparsed == 0 and extractor.calls == len(model.prompts) == 4
    ids = [m.id for m in store.messages(chat_id)]
    got = {(f.person, f.key, f.value, tuple(f.sources), f.importance)
           for f in Facts(store).list(chat_id=chat_id)}  # fmt: skip
    assert got == {
        ("Sam Rivera", "job", "the bakery on Elm St", (ids[1],), 0.8),
        ("Sam Rivera", "lives in", "Ancoats", (ids[2],), 0.8),
        ("Riya Shah", "partner", "Raj", (ids[3],), 0.8),
        ("Sam Rivera", "pet", "bed", (ids[5],), 0.6),  # the model's misreading, stored as said
    }
    texts = {m.id: m.text for m in store.messages(chat_id)}
    for fact in Facts(store).list(chat_id=chat_id):
        assert fact.value in texts[fact.sources[0]]
        assert support(fact.value, [texts[i] for i in fact.sources]) >= SUPPORT
    # The question names the person and the cue's own word.
    assert any(p.endswith("Riya Shah's boyfriend: ") for p in model.prompts)
    # A rerun reads nothing; a newer export, only its new messages.
    again = Scripted(["the hospital"])
    assert build_memory(store, chat_id, SpanExtractor(again)).messages == 0
    newer = [*SAYINGS, ("Sam Rivera", "new job!! I work at the hospital now")]
    assert store.add_import([chat(newer)], "y")[0].chat_id == chat_id
    report = build_memory(store, chat_id, SpanExtractor(again))
    assert (report.messages, report.superseded) == (1, 1)
    assert [p.rsplit("\n", 1)[1] for p in again.prompts] == [  # "hospital" is a health cue too
        "Sam Rivera's job: ",
        "Sam Rivera's health: ",
    ]
    bakery = [f for f in Facts(store).list(chat_id=chat_id) if f.value.startswith("the bakery")]
    assert bakery[0].status == "superseded"
    assert progress_of(store, chat_id)[2] == max(m.id for m in store.messages(chat_id))


def test_the_gate_still_runs(store: Store) -> None:
    chat_id = store.add_import([chat(SAYINGS)], "x")[0].chat_id
    extractor = SpanExtractor(Scripted(["raj"]))
    report = build_memory(store, chat_id, extractor, gate=Gate(min_importance=5))
    assert report.added == 0 and report.rejected["unimportant"] == 1


def test_live_exchanges_learn_from_spans_too(store: Store) -> None:
    chat_id = store.add_import([chat(SAYINGS[:1])], "x")[0].chat_id
    extractor = SpanExtractor(Scripted(["lisbon", "the zoo"]))
    exchange = [("Riya Shah", "moved to Lisbon last month!"), ("Sam Rivera", "I work at the zoo")]
    got = extract_live(store, chat_id, "Sam Rivera", exchange, extractor)
    assert [(f.person, f.key, f.value, f.origin, f.sources) for f, _ in got] == [
        ("Riya Shah", "lives in", "Lisbon", "live", []),
        ("Sam Rivera", "job", "the zoo", "simulated", []),
    ]


def test_local_extractor_chooses_the_method(tiny_model: LlamaModel) -> None:
    assert isinstance(local_extractor(tiny_model), SpanExtractor)
    assert isinstance(local_extractor(tiny_model, "json"), LocalExtractor)
    with pytest.raises(ValueError, match="unknown extraction method 'words'"):
        local_extractor(tiny_model, "words")
    window = [Row(1, "t", "Sam Rivera", "lol", "")]
    assert SpanExtractor(tiny_model).extract(window, PEOPLE) == []
    assert Cue("Sam", "pet", frozenset()).question == "Sam's pet"


def test_cli_build_takes_the_method(home: Path, tiny: TinyModel, capsys) -> None:
    """`memory build --model GGUF` writes JSON windows unless `--method spans` is asked for;
    either way every answer parses."""
    from convsim.core.workspace import Workspace
    from convsim.tui.cli import main

    with Workspace.open(home) as ws:
        chat_id = ws.store.add_import([chat(SAYINGS)], "x")[0].chat_id
    cli = ["memory", "build", str(chat_id), "--model", str(tiny.gguf_path), "--json"]
    assert main([*cli, "--method", "spans"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["messages"], report["unparsed"], report["windows"]) == (6, 0, 1)
    with pytest.raises(SystemExit):
        main([*cli, "--method", "words"])
    assert "invalid choice: 'words'" in capsys.readouterr().err
