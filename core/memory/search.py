"""Memory search over one chat: its messages and the facts learned from it.

Three modes, so each can be measured against the others (`benchmarks/memory_recall.py`):
- `keyword`: SQLite FTS5 with BM25 (Porter stems, accents folded) over each message, the one
  before it and the sender's name (weighted 1 : 0.3 : 0.2), and over the facts' text;
- `embedding`: cosine similarity of MiniLM embeddings (`embedder`), searched with numpy;
- `hybrid` (the default): both rankings fused by reciprocal rank (RRF), with small boosts for
  the names in play (a message by, or naming, someone the query is about) and for recency.

Contract: `Searcher.search(query, k)` returns at most `k` `Hit`s, best first. A message hit
points at that one message (`message_ids` = [its id]); a fact hit carries the fact id and the
ids of its source messages. Facts shown are active or pinned; pinned facts get a lift. Search
needs no language model, and the query is the only thing embedded at search time: the chat's
vectors are loaded once per `Searcher` (50,000 messages: ~40 MB as float32).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from convsim.core.memory.embedder import Embedder, from_blobs
from convsim.core.memory.facts import SHOWN, Fact, Facts
from convsim.core.memory.index import chat_rows
from convsim.core.store import Store

MODES = ("hybrid", "keyword", "embedding")
RRF_K = 60  # reciprocal-rank constant: 1 / (RRF_K + rank)
CANDIDATES = 100  # per ranking, before fusion
KEYWORD_WEIGHTS = (1.0, 0.3, 0.2)  # text, context, sender
NAME_BOOST = 0.05  # x score, for a message by or naming someone in the query
RECENCY_BOOST = 0.02  # x score, for the newest message, falling linearly to 0 for the oldest
PINNED_BOOST = 0.25
_WORD = re.compile(r"\w+", re.UNICODE)
# Words that carry no topic in a question to a chat (English; other languages go through).
_STOP = """a an the and or but if of to in on at for from by with about as is are was were be been
    being do does did done have has had i you he she it we they me him her them my your his its
    our their what which who whom whose when where why how this that these those there here
    now then still ever any some again just so not no yes can could would should will shall may
    might must tell said say know think"""
STOPWORDS = frozenset(_STOP.split())


@dataclass
class Hit:
    score: float
    text: str
    message_ids: list[int]
    fact_id: int | None = None
    ts: str | None = None
    sender: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 6),
            "fact_id": self.fact_id,
            "message_ids": self.message_ids,
            "text": self.text,
        }


@dataclass
class _Doc:
    ts: str
    sender: str | None
    text: str
    order: float  # 0 for the oldest message, 1 for the newest


@dataclass
class Searcher:
    """Search one chat. Build it after `update_index` (for keyword search the full-text
    index must be current; for embedding search, the vectors too)."""

    store: Store
    chat_id: int
    embedder: Embedder | None = None
    mode: str = "hybrid"
    _docs: dict[int, _Doc] = field(default_factory=dict, init=False)
    _names: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown search mode {self.mode!r}: expected {', '.join(MODES)}")
        if self.mode != "keyword" and self.embedder is None:
            raise ValueError(f"{self.mode} search needs an embedder")
        rows = chat_rows(self.store, self.chat_id)
        n = max(len(rows) - 1, 1)
        self._docs = {r.id: _Doc(r.ts, r.sender, r.text, i / n) for i, r in enumerate(rows)}
        self._segments = self.store.conn.execute(
            "SELECT first_id, last_id FROM segments WHERE chat_id = ?", (self.chat_id,)
        ).fetchall()
        self._names = sorted({r.sender for r in rows if r.sender})
        self._ids: list[int] = []
        self._matrix = None
        if self.embedder is not None:
            vectors = self.store.conn.execute(
                "SELECT v.message_id, v.vec FROM segments s JOIN message_vectors v"
                " ON v.message_id BETWEEN s.first_id AND s.last_id WHERE s.chat_id = ?"
                " ORDER BY v.message_id",
                (self.chat_id,),
            ).fetchall()
            self._ids = [i for i, _ in vectors]
            self._matrix = from_blobs([b for _, b in vectors])

    # -- the rankings -------------------------------------------------------------------------

    def _keyword(self, query: str) -> list[int]:
        terms = [w for w in _WORD.findall(query.lower()) if w not in STOPWORDS]
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in dict.fromkeys(terms))
        weights = ", ".join(map(str, KEYWORD_WEIGHTS))
        found: list[tuple[float, int]] = []
        for first, last in self._segments:
            found += self.store.conn.execute(
                f"SELECT bm25(message_index, {weights}) AS s, rowid FROM message_index"
                " WHERE message_index MATCH ? AND rowid BETWEEN ? AND ? ORDER BY s LIMIT ?",
                (match, first, last, CANDIDATES),
            ).fetchall()
        found.sort()
        return [i for _, i in found[:CANDIDATES] if i in self._docs]

    def _embedding(self, query: str) -> list[int]:
        if self._matrix is None or not self._ids:
            return []
        import numpy as np

        assert self.embedder is not None
        q = self.embedder.embed([query])[0]
        sims = self._matrix @ q
        top = min(CANDIDATES, len(sims))
        best = np.argpartition(-sims, top - 1)[:top]
        best = best[np.argsort(-sims[best])]
        return [self._ids[i] for i in best]

    def _facts(self, query: str) -> list[Fact]:
        terms = [w for w in _WORD.findall(query.lower()) if w not in STOPWORDS]
        facts = {f.id: f for f in Facts(self.store).list(chat_id=self.chat_id, status=SHOWN)}
        if not facts or not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in dict.fromkeys(terms))
        rows = self.store.conn.execute(
            "SELECT rowid FROM fact_index WHERE fact_index MATCH ? AND rowid IN"
            " (SELECT id FROM facts WHERE chat_id = ?) ORDER BY rank LIMIT ?",
            (match, self.chat_id, CANDIDATES),
        ).fetchall()
        return [facts[i] for (i,) in rows if i in facts]

    # -- the search ---------------------------------------------------------------------------

    def search(self, query: str, k: int = 10) -> list[Hit]:
        rankings: list[list[int]] = []
        if self.mode in ("keyword", "hybrid"):
            rankings.append(self._keyword(query))
        if self.mode in ("embedding", "hybrid"):
            rankings.append(self._embedding(query))
        scores: dict[int, float] = {}
        for ranking in rankings:
            for rank, mid in enumerate(ranking):
                scores[mid] = scores.get(mid, 0.0) + 1.0 / (RRF_K + rank + 1)
        named = self._named(query)
        hits = []
        for mid, score in scores.items():
            doc = self._docs[mid]
            lift = 1.0
            if self.mode == "hybrid":
                if named and (doc.sender in named or any(n in doc.text for n in named)):
                    lift += NAME_BOOST
                lift += RECENCY_BOOST * doc.order
            hits.append(Hit(score * lift, f"[{doc.sender}] {doc.text}", [mid], None, doc.ts,
                            doc.sender))  # fmt: skip
        for rank, fact in enumerate(self._facts(query)):
            lift = 1.0 + (PINNED_BOOST if fact.status == "pinned" else 0.0)
            score = 2.0 / (RRF_K + rank + 1) * lift  # a fact stands for its sources at once
            hits.append(Hit(score, fact.text, fact.sources, fact.id, fact.last_seen, fact.person))
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def _named(self, query: str) -> set[str]:
        """The chat's people the query names (by full name or first name)."""
        words = set(_WORD.findall(query.lower()))
        return {n for n in self._names if any(p in words for p in _WORD.findall(n.lower()))}
