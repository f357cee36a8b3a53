"""Span extraction: facts read one message at a time, each value copied from the message.

Made for small base models (the default base is Gemma 3 270M, not instruction-tuned), which
cannot write a window's facts as JSON but can finish a line of a pattern they were shown:

1. Cues, without a model (`find_cues`): for each message, the keys it may state a fact about
   and whose fact it would be, from word patterns ("work at", "moved to", "my sister",
   "allergic"...). The person is the one the nearest pronoun or name points at, looking back
   from the cue to the start of its clause, then on to the end of the message: "I"/"my"/"we"
   -> the sender; "you"/"your"/"u"/"ur" -> the other person of a two-person chat; a
   participant's name -> them; "he"/"she"/"my sister"... -> someone outside the chat (no
   cue); nothing -> the sender (texting drops the "I"). A message with no cue costs nothing.
2. The value (`SpanExtractor.ask`): the GGUF reads worked examples, then
   `Message from {sender}: "{text}"` and `{person}'s {key}: `, and answers with a JSON string
   held by a llama.cpp grammar (`span_schema`, through `LlamaModel.generate_json`) to "none"
   or one of the message's `candidate_spans`: 1 to `MAX_WORDS` consecutive words, as
   written. The model only chooses, greedily, so every answer parses. Spans of the cue's own
   words ("work", "sister") are not offered.

A fact is proposed for each answer that is not "none", citing only its message; its importance
comes from the key (`IMPORTANCE`). The value is text of a message that concerns the person, so
the gate's reality check passes by construction (the gate still runs). On the labelled set of
benchmarks/memory_extract.py, whose messages the cue patterns were written against, the default
base asks 82 questions of 1,030 messages and keeps 51 facts, 32 of them true; most wrong ones
are the model picking the wrong words ("coach party" for a job), a few a wrong cue or person.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from convsim.core.inference.llama import LlamaModel
from convsim.core.memory.extract import Extractor, LocalExtractor
from convsim.core.memory.gate import KEYS, Candidate, content_words
from convsim.core.memory.index import Row
from convsim.core.memory.search import STOPWORDS

MAX_WORDS = 6  # longest span offered
MESSAGE_CHARS = 300  # a longer message is cut, in the prompt and for its spans
MAX_CUES = 3  # (person, key) questions per message
NONE = "none"

# Patterns per key. "value" patterns name the thing itself (a hobby, a diet): their words may
# be the value; the others are relations ("work at", "my sister") whose words never are.
_OCCUPATIONS = (
    "nurse|teacher|barista|accountant|analyst|engineer|developer|designer|chef|baker|waiter"
    "|waitress|doctor|lawyer|firefighter|midwife|cashier|manager|intern|electrician|plumber"
    "|carer|paramedic|pharmacist|architect|journalist|programmer|receptionist|mechanic"
    "|librarian|scientist|consultant|solicitor|dentist|student|postman|cleaner|builder"
)
_HOBBIES = (
    "gym|yoga|pilates|climbing|bouldering|running|marathon|parkrun|swimming|cycling|hiking"
    "|football|five[- ]a[- ]side|tennis|rugby|cricket|netball|basketball|golf|chess|knitting"
    "|crochet|painting|pottery|gaming|guitar|bass|piano|drums|violin|choir|my band|in a band"
    "|(?:learning|practising|practicing) \\w+|training for"
)
_CUES: tuple[tuple[str, str, bool], ...] = (
    ("job", r"\b(?:work|works|working|worked|job|started|starting|joined)\s+(?:at|for|as|in)\b",
     False),
    ("job", r"\b(?:work|job|jobs|shifts?|boss|colleagues?|co-?workers?|promot(?:ed|ion)|hired"
     r"|interview|notice|first (?:day|week) at)\b", False),
    ("job", rf"\b(?:i'?m|i am|you'?re|ur|as) an? (?:\w+ )?(?:{_OCCUPATIONS})s?\b", True),
    ("lives in", r"\b(?:live|lives|living|lived|moved|moving|move)\s+(?:in|to|into|near|here)\b",
     False),
    ("lives in", r"\b(?:new|my|your|ur|our|the)\s+(?:house|place|area|city|town|road|street)\b"
     r"|\b(?:flat|apartment|neighbou?rhood|moving|moved|signed the lease|round here)\b",
     False),
    ("hometown", r"\b(?:grew up in|born in|originally from|home ?town)\b", False),
    ("sibling", r"\b(?:my|your|ur|our)\s+(?:(?:little|big|older|younger|baby|twin|kid)\s+)?"
     r"(?:sister|brother|sis|bro|siblings?)\b", False),
    ("parent", r"\b(?:my|your|ur|our)\s+(?:mum|mom|mam|mother|dad|father|parents|folks)\b"
     r"|\b(?:mum|mom) and dad\b|\bparents'", False),
    ("child", r"\b(?:my|your|ur|our)\s+(?:son|daughter|kids?|children|baby)\b|\bpregnant\b",
     False),
    ("other", r"\b(?:my|your|ur)\s+(?:niece|nephew|cousin|aunt|auntie|uncle|grandma|grandad"
     r"|granny|nan|grandpa)\b", False),
    ("partner", r"\b(?:boyfriend|girlfriend|bf|gf|husband|wife|partner|fianc[eé]e?|dating"
     r"|(?:a|first|second|third) date|date with|broke up|split up|engaged|married"
     r"|valentine'?s?|anniversary)\b", False),
    ("pet", r"\b(?:dog|cat|puppy|pup|kitten|rabbit|bunny|hamster|parrot|tortoise|vet|adopted"
     r"|rescue)\b", False),
    ("birthday", r"\b(?:birthday|bday)\b", False),
    ("age", r"\b(?:turn|turned|turning|i'?m|you'?re)\s+(?:\d\d|twenty|thirty|forty|fifty)\b"
     r"|\b(?:\d\d|twenty|thirty|forty|fifty) (?:tomorrow|today|years old)\b", True),
    ("allergy", r"\b(?:allerg\w*|intoleran\w*|epi-?pen|anaphyla\w*|coeliac|celiac)\b", False),
    ("diet", r"\b(?:vegan|vegetarian|veggie|pescatarian|plant[- ]based|dairy|gluten|lactose"
     r"|halal|kosher|no meat)\b", True),
    ("health", r"\b(?:broke|broken|sprained|fractured|injured)\s+(?:my|your|ur)\s+\w+"
     r"|\b(?:hospital|surgery|operation|diagnosed|physio|concussion)\b", False),
    ("studies", r"\b(?:study|studying|studies|degree|module|essay|dissertation|thesis"
     r"|exams?|masters|phd|resit)\b|\b(?:my|your|ur|a|the|this) course\b", False),
    ("school", r"\b(?:uni|university|college|school|an offer from|got into)\b", False),
    ("car", r"\bcar\b(?! park)|\b(?:driving test|driving lessons?|licen[cs]e|mot)\b", False),
    ("hobby", rf"\b(?:{_HOBBIES})\b", True),
    ("likes", r"\b(?:favourite|favorite|fave|obsessed with|fan of|addicted to)\b", False),
    ("trip", r"(?<!bank )\bholiday\b|\b(?:trip|flight|flying|airport|travelling|traveling"
     r"|abroad|booked|off to)\b", False),
    ("plan", r"\b(?:planning|plan to|saving (?:up )?for)\b", False),
    ("friend", r"\b(?:my|your|ur)\s+(?:best\s+)?(?:friend|mate|pal|bestie|flatmate|housemate"
     r"|roommate)s?\b", False),
)  # fmt: skip
CUES = tuple((key, re.compile(pattern, re.I), value) for key, pattern, value in _CUES)
IMPORTANCE = {"job": 4, "workplace": 4, "lives in": 4, "partner": 4, "sibling": 4, "child": 4,
              "allergy": 4, "parent": 3, "hometown": 3, "pet": 3, "birthday": 3, "age": 3,
              "diet": 3, "health": 3, "school": 3, "studies": 3, "car": 3, "hobby": 3,
              "trip": 3, "other": 3, "likes": 2, "dislikes": 2, "plan": 2, "friend": 2}  # fmt: skip
QUESTIONS = {"lives in": "{p} lives in", "sibling": "{p}'s brother or sister",
             "parent": "{p}'s parents", "other": "{p}'s relative", "allergy": "{p} is allergic to",
             "studies": "{p} studies", "likes": "{p} likes"}  # fmt: skip
assert set(IMPORTANCE) <= set(KEYS)

_WORD = re.compile(r"[\w'’&.:/-]*\w", re.UNICODE)


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_FIRST = _set("i i'm im i've ive i'll ill i'd my me mine myself we we're our ours us")
_SECOND = _set("you your yours yourself u ur ya you're youre you've youve")
_THIRD = _set("he she his her hers him they their them he's she's hes shes")
_KIN = _set(
    "sister brother sis bro mum mom mam dad mother father parents boyfriend girlfriend bf gf"
    " husband wife partner son daughter kid kids baby niece nephew cousin aunt auntie uncle"
    " grandma grandad granny nan friend mate flatmate housemate roommate boss"
)
_NOUNS = {"sis": "sister", "bro": "brother", "mom": "mum", "mam": "mum", "bf": "boyfriend",
          "gf": "girlfriend", "kid": "child", "kids": "children", "boss": ""}  # fmt: skip
_VAGUE = _set(  # words that say nothing alone: a value needs another content word
    "whole new old same other own next last first little big good great best bad lot bit way"
    " thing things stuff time times day days week weekend month year morning night today"
    " tonight tomorrow yesterday ok okay yes yeah lol haha omg"
)
_UNSAID = ""  # `_person`: no word says whom
_LEAD = frozenset(["the", "a", "an"])  # stop words a value may start with
_CLAUSE = re.compile(r"[.!?;\n]")
_GAP = re.compile(r"[^ &+/'-]")  # between two words of a value: spaces and these only
_PERSONAL = _FIRST | _SECOND | _THIRD  # no value starts or ends on a pronoun
INSTRUCTION = "Facts people state in chat messages, in the words of the message (none if none)."

_EXAMPLES = (  # (sender, message, question, answer): texting style; a third say none
    ("Alex", "first week at the bakery on elm st, chaos but fun", "Alex's job",
     "the bakery on elm st"),
    ("Ana", "how's the new flat in kelham? still no hot water?", "Ben lives in", "kelham"),
    ("Ben", "ugh my boss. the guy never stops talking", "Ben's job", NONE),
    ("Ben", "my sister tara passed her driving test!!", "Ben's sister", "tara"),
    ("Chris", "took rolo the beagle to the vet, he's fine", "Chris's pet", "rolo the beagle"),
    ("Kim", "any plans for the long weekend?", "Kim's trip", NONE),
    ("Dev", "moving to glasgow in june!!", "Dev lives in", "glasgow"),
    ("Kim", "can't eat anything with sesame, allergic since forever", "Kim is allergic to",
     "sesame"),
    ("Ana", "lol my mum would love that", "Ana's mum", NONE),
    ("Leo", "rehearsal with the band tonight, i'm on drums", "Leo's hobby", "drums"),
    ("Sue", "my boyfriend raj made us dinner", "Sue's boyfriend", "raj"),
    ("Dev", "the dog is asleep on my bed again", "Dev's pet", NONE),
    ("Ana", "quit my job at tesco today!! so free", "Ana's job", "tesco"),
    ("Ana", "my brother joe starts uni in york next week!!", "Ana's brother", "joe"),
    ("Ben", "finally sold the old golf, bought a red mini", "Ben's car", "a red mini"),
    ("Sue", "two weeks vegan and i feel amazing", "Sue's diet", "vegan"),
    ("Chris", "so tired, work was mad today", "Chris's job", NONE),
)  # fmt: skip


@dataclass(frozen=True)
class Cue:
    """A message may state `person`'s `key`; `words`: the cue's own words, never a value;
    `noun`: the relation the cue names ("sister"), which the question then uses."""

    person: str
    key: str
    words: frozenset[str]
    noun: str = ""

    @property
    def question(self) -> str:
        if self.noun:
            return f"{self.person}'s {self.noun}"
        return QUESTIONS.get(self.key, "{p}'s " + self.key).format(p=self.person)


def _person(
    words: Sequence[str], skip: frozenset[str], people: Sequence[str], sender: str
) -> str | None:
    """Whom the first pronoun or name among `words` points at (the cue's own words, `skip`,
    aside): a person, None for someone outside the chat, `_UNSAID` when no word says."""
    names = {part: p for p in people for part in re.findall(r"\w+", p.lower()) if len(part) > 2}
    others = [p for p in people if p != sender]
    for word in words:
        word = word.lower().replace("’", "'").removesuffix("'s")
        if word in skip:
            continue
        if word in _FIRST:
            return sender
        if word in _SECOND:
            return others[0] if len(others) == 1 else None
        if word in names:
            return names[word]
        if word in _THIRD or word in _KIN:
            return None
    return _UNSAID


def find_cues(text: str, sender: str | None, people: Sequence[str]) -> list[Cue]:
    """The (person, key) pairs a message may state a fact about, in the order their cues
    appear, `MAX_CUES` at most (see the module docstring); none without a sender."""
    if not sender:
        return []
    found: dict[tuple[str, str], Cue] = {}
    clauses = _CLAUSE.split(text[:MESSAGE_CHARS])
    for n, clause in enumerate(clauses):
        later = _WORD.findall(" ".join(clauses[n + 1 :]))
        hits = sorted(
            (m.start(), m.end(), key, value) for key, rx, value in CUES for m in rx.finditer(clause)
        )
        for start, end, key, value in hits:
            own = [w.lower() for w in _WORD.findall(clause[start:end])]
            skip = frozenset(own) - _FIRST - _SECOND
            person = _person(_WORD.findall(clause[:end])[::-1], skip, people, sender)
            if person == _UNSAID:  # nothing up to the cue says whom: the words after it may
                person = _person(_WORD.findall(clause[end:]) + later, skip, people, sender)
            if person == _UNSAID:
                person = sender
            if person is not None and (person, key) not in found:
                noun = next((w for w in own if w in _KIN), "")
                words = frozenset() if value else skip - STOPWORDS
                found[(person, key)] = Cue(person, key, words, _NOUNS.get(noun, noun))
    return list(found.values())[:MAX_CUES]


def flat(text: str) -> str:
    """A message as the model reads it: cut at `MESSAGE_CHARS`, one space between words."""
    return " ".join(text[:MESSAGE_CHARS].split())


def candidate_spans(text: str, avoid: frozenset[str] = frozenset()) -> list[str]:
    """The values a model may pick from a message (`flat`): runs of 1 to `MAX_WORDS` words,
    exactly as written (so "Crumb & Co" keeps its "&"), with only spaces, "&", "+", "/", "'"
    or "-" between their words (no clause break, quote or emoji); that start on a content
    word or on "the"/"a"/"an", end on a content word, start and end on no pronoun, hold a word
    that is not vague ("new", "today"...) and no word of `avoid` (lowercase), and no character
    beyond the Basic Multilingual Plane. In the order they appear."""
    text = flat(text)
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
    out: dict[str, None] = {}
    for i, (start, _, first) in enumerate(words):
        if first in avoid or first in _PERSONAL or (first in STOPWORDS and first not in _LEAD):
            continue
        for j in range(i, min(len(words), i + MAX_WORDS)):
            last = words[j][2]
            if last in avoid or (j > i and _GAP.search(text, words[j - 1][1], words[j][0])):
                break
            if last in STOPWORDS or last in _PERSONAL or not content_words(last):
                continue
            span = text[start : words[j][1]]
            if all(w[2] in _VAGUE or w[2] in STOPWORDS for w in words[i : j + 1]) or any(
                ord(c) > 0xFFFF
                for c in span  # the grammar's \u escapes cannot state these
            ):
                continue
            out.setdefault(span, None)
    return list(out)


def span_schema(spans: Sequence[str]) -> str:
    """The JSON Schema (as text) of an answer: "none" or one of `spans`."""
    return json.dumps({"enum": [NONE, *(s for s in spans if s != NONE)]})


class SpanExtractor:
    """Span extraction (see the module docstring) on a local GGUF: a path, or an open
    `LlamaModel` that nothing else uses meanwhile. `calls` counts the model's answers, `found`
    those that named a span, `seconds` the time spent on them."""

    name = "local"
    method = "spans"

    def __init__(self, model: Path | LlamaModel, *, n_ctx: int = 2048) -> None:
        self.model = LlamaModel(model, n_ctx=n_ctx) if isinstance(model, Path | str) else model
        self.calls = 0
        self.found = 0
        self.seconds = 0.0
        shots = "".join(
            f'Message from {who}: "{text}"\n{question}: "{answer}"\n\n'
            for who, text, question, answer in _EXAMPLES
        )
        self._head = f"{INSTRUCTION}\n\n{shots}"

    def extract(self, window: Sequence[Row], people: Sequence[str]) -> list[Candidate]:
        out = []
        for row in window:
            for cue in find_cues(row.text, row.sender, people):
                assert row.sender is not None
                value = self.ask(row.sender, row.text, cue)
                if value is not None:
                    out.append(
                        Candidate(cue.person, cue.key, value, (row.id,), IMPORTANCE[cue.key])
                    )
        return out

    def ask(self, sender: str, text: str, cue: Cue) -> str | None:
        """The span of `text` (`flat`) the model names as `cue.person`'s `cue.key`, or None: it
        said "none", no span could be offered, or the message does not fit the context."""
        spans = candidate_spans(text, cue.words)
        if not spans:
            return None
        model = self.model
        message = f'Message from {sender}: "{flat(text)}"\n{cue.question}: '
        prompt = model.tokenize(self._head + message)
        schema = span_schema(spans)
        cap = max(len(s.encode("utf-8")) for s in spans) + 8  # a token writes a byte or more
        if len(prompt) + cap >= model.n_ctx():
            return None
        began = time.monotonic()
        out: list[int] = []
        with closing(model.generate_json(prompt, schema)) as tokens:
            for token in tokens:
                if model.is_eog(token) or len(out) >= cap:
                    break
                out.append(token)
        self.calls += 1
        self.seconds += time.monotonic() - began
        try:
            value = json.loads(model.detokenize(out).decode("utf-8"))
        except ValueError:  # cut short: the cap is above the longest answer, so never
            return None
        if value == NONE or value not in spans:
            return None
        self.found += 1
        return value


METHODS = ("spans", "json")


def local_extractor(
    model: Path | LlamaModel, method: str = "spans", *, max_seconds: float = 60.0
) -> Extractor:
    """An extractor on a local GGUF. "spans" (`spans.SpanExtractor`: one short, grammar-held
    choice per message that has a cue) is the default: on the default base (Gemma 3 270M, not
    instruction-tuned) it kept 32 true facts of 51 on the labelled set of
    benchmarks/memory_extract.py, at 13 s per 1,000 messages on 2 busy cores, where "json"
    (`LocalExtractor`: a window's facts written as JSON, for a bigger instruct GGUF) kept 0 of
    4 at 91 s. `max_seconds` caps one JSON answer."""
    if method == "json":
        return LocalExtractor(model, max_seconds=max_seconds)
    if method == "spans":
        return SpanExtractor(model)
    raise ValueError(f"unknown extraction method {method!r}: expected {' or '.join(METHODS)}")
