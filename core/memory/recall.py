"""Facts into generation: which facts a reply's prompt carries in the engine's fixed head.

`Recall.choose(turns)` picks, from a chat's active and pinned facts: every pinned fact, then the
facts most relevant to the last turns (full-text match over the fact, its key's everyday words
and its person; cosine similarity too when an embedder is given), within a token budget. The
head changes only when the chosen set changes: a turn that brings up nothing new keeps the facts
already chosen, so the engine's KV cache keeps its prefix and the reply stays fast. A fact
learned during the chat is taken in by `refresh()`.

Contract: `choose` returns a `Recalled` with the head text (empty when there are no facts) and
the facts in it, in a stable order (pinned first, then by id); equal sets give identical text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from convsim.core.memory.embedder import Embedder
from convsim.core.memory.facts import SHOWN, Fact, Facts
from convsim.core.memory.search import STOPWORDS, matching_facts
from convsim.core.store import Store

HEAD_TITLE = "Facts about the people in this chat:"
BUDGET = 160  # tokens the facts may take in the head
MIN_SIMILARITY = 0.35  # cosine below which a fact is not brought up by meaning alone
_WORD = re.compile(r"\w+")


@dataclass
class Recalled:
    head: str
    facts: list[Fact]


def render(facts: Sequence[Fact]) -> str:
    if not facts:
        return ""
    return "".join([HEAD_TITLE, "\n", *map(_line, facts), "\n"])


def _line(fact: Fact) -> str:
    return f"- {fact.person}, {fact.key}: {fact.value}\n"


class Recall:
    def __init__(
        self,
        store: Store,
        chat_id: int | None,
        count_tokens: Callable[[str], int],
        budget: int = BUDGET,
        embedder: Embedder | None = None,
    ) -> None:
        self.store = store
        self.chat_id = chat_id
        self.count_tokens = count_tokens
        self.budget = budget
        self.embedder = embedder
        self._chosen: list[Fact] = []
        self.refresh()

    def refresh(self) -> None:
        """Reload the chat's facts (after one was learned, edited, pinned or removed)."""
        if self.chat_id is None:
            self._facts: dict[int, Fact] = {}
        else:
            found = Facts(self.store).list(chat_id=self.chat_id, status=SHOWN)
            self._facts = {f.id: f for f in found}
        self._vectors = None
        if self.embedder is not None and self._facts:
            self._vectors = self.embedder.embed([f.text for f in self._facts.values()])
        # Keep what is still there, as it now reads (an edit changes the text).
        self._chosen = [self._facts[f.id] for f in self._chosen if f.id in self._facts]

    def _relevant(self, query: str) -> list[int]:
        """Fact ids relevant to `query`, most relevant first."""
        terms = [w for w in _WORD.findall(query.lower()) if w not in STOPWORDS]
        scores: dict[int, float] = {}
        for rank, fact_id in enumerate(matching_facts(self.store, self.chat_id, terms, 50)):
            if fact_id in self._facts:
                scores[fact_id] = scores.get(fact_id, 0.0) + 1.0 / (1 + rank)
        if self._vectors is not None and self.embedder is not None and query.strip():
            sims = self._vectors @ self.embedder.embed([query])[0]
            for fact_id, sim in zip(self._facts, sims, strict=True):
                if sim >= MIN_SIMILARITY:
                    scores[fact_id] = scores.get(fact_id, 0.0) + float(sim)
        return sorted(scores, key=lambda i: (-scores[i], -self._facts[i].importance, i))

    def apply(self, engine: Any, turns: Sequence[tuple[str, str]]) -> list[Fact]:
        """Choose the facts for the next reply and put them in `engine`'s head (an
        `inference.engine.Engine`; left alone when unchanged, so its cache stays); the facts."""
        chosen = self.choose(turns)
        if chosen.head != engine.head:
            engine.set_head(chosen.head)
        return chosen.facts

    def choose(self, turns: Sequence[tuple[str, str]], look_back: int = 2) -> Recalled:
        """The facts for the next reply after `turns` ((speaker, text) pairs)."""
        query = " ".join(text for _, text in turns[-look_back:])
        pinned = [f for f in self._facts.values() if f.status == "pinned"]
        wanted = [self._facts[i] for i in self._relevant(query)]
        # Newly relevant facts first, then the ones already in the head, until the budget.
        order = pinned + [f for f in wanted if f not in self._chosen] + self._chosen
        chosen: list[Fact] = []
        used = self.count_tokens(HEAD_TITLE + "\n")
        for fact in dict.fromkeys(f.id for f in order):
            cost = self.count_tokens(_line(self._facts[fact]))
            if used + cost > self.budget:
                continue
            chosen.append(self._facts[fact])
            used += cost
        chosen.sort(key=lambda f: (f.status != "pinned", f.id))
        self._chosen = chosen
        return Recalled(render(chosen), list(chosen))
