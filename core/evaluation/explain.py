"""Why did the persona say that? The person's real training messages that most resemble a reply,
with the moments they replied to.

Two signals rank every message the persona was trained on (its dataset's train split, each
example's target; the examples carry the store ids of the message and its context):

- `embedding`: what the texts mean. Cosine similarity of sentence embeddings of the reply and of
  each message (MiniLM, handed in by the caller: `memory.shared_embedder()`).
- `hidden`: what the persona makes of them. The persona's own last hidden state (base + LoRA, on
  llama.cpp: `LlamaModel.mean_states`), averaged over the reply's tokens only: not its `[Tag]`,
  not the context, no padding. Each message is read after the last `CONTEXT_TURNS` turns
  before it, as in training; the reply after the last turns of its transcript. The vectors are
  centred on the index's mean before the cosine (a model's hidden states share one large
  direction that would make every cosine near 1).

The combined ranking sums each signal's similarities as z-scores over all the messages, so a
near copy that stands far above the rest in either signal comes first (`benchmarks/
explain_attribution.py` measures it against each signal alone on planted phrases).

The per-model index of the training messages' vectors is cached in the model's folder
(`explain/index.npz`, see `explain_index`) and rebuilt when the dataset, the adapter, the base
or the settings change. It goes when the model does: forgetting a chat or a person removes
the models trained on it, folders included (`Workspace.forget_plan`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from convsim.core.data.turns import render, safe_name
from convsim.core.evaluation.explain_index import (
    INDEX_FORMAT,
    Candidate,
    Index,
    candidates,
    index_dir,
    read_index,
    sha256_file,
    state_item,
    unit,
    write_index,
)

if TYPE_CHECKING:
    import numpy as np

    from convsim.core.workspace import Workspace

SIGNALS = ("embedding", "hidden")
CONTEXT_TURNS = 1  # turns read before a message (and before the reply) for its hidden states
REPLIED_TO = 3  # context messages shown with a match: the latest before it
BATCH = 64  # messages per step of the index build (progress, stopping)


class TextEmbedder(Protocol):
    """Sentence embeddings: unit vectors, one row per text (`memory.Embedder`)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class ExplainStopped(RuntimeError):
    """The index build was stopped (`cancel`); nothing was saved."""


@dataclass(frozen=True)
class ExplainEvent:
    """Progress of the index build: `stage` ("embedding" or "hidden"), `done` of `total`."""

    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class Said:
    """A stored message as shown beside a match."""

    id: int
    ts: str
    sender: str | None
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "sender": self.sender, "text": self.text}


@dataclass(frozen=True)
class Match:
    """One of the person's real messages that resembles the reply."""

    rank: int  # 1 = closest
    message: Said
    replied_to: list[Said]  # the latest messages before it in its training window, oldest first
    score: float  # the combined ranking's score (a sum of z-scores: higher is closer)
    similarity: dict[str, float]  # cosine per signal
    chat_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": round(self.score, 4),
            "similarity": {k: round(v, 4) for k, v in self.similarity.items()},
            "chat_id": self.chat_id,
            "message": self.message.to_json(),
            "replied_to": [s.to_json() for s in self.replied_to],
        }


@dataclass
class Explanation:
    model_id: str
    person: str
    reply: str
    signals: list[str]  # the signals the ranking used
    candidates: int  # training messages compared
    matches: list[Match]
    seconds: float
    index_built: bool  # whether this call (re)built the model's index

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "person": self.person,
            "reply": self.reply,
            "signals": self.signals,
            "candidates": self.candidates,
            "seconds": round(self.seconds, 3),
            "index_built": self.index_built,
            "matches": [m.to_json() for m in self.matches],
        }


class Explainer:
    """Answers "why did it say that?" for one persona: opens its model (base + adapter) and its
    index (built and cached on first use), then `explain` ranks the person's training messages
    against any reply. `embedder` None leaves out the `embedding` signal. Close it when done;
    the workspace must stay open while it is used."""

    def __init__(
        self,
        ws: Workspace,
        model_id: str,
        embedder: TextEmbedder | None,
        *,
        threads: int | None = None,
        context_turns: int = CONTEXT_TURNS,
        progress: Callable[[ExplainEvent], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        from convsim.core.inference.llama import LlamaModel
        from convsim.core.training import adapter_gguf, speaker_tags

        record = ws.store.model(model_id)  # KeyError for an unknown id
        adapter = adapter_gguf(ws, model_id)  # ModelNotReady, AdapterMissing
        if record.dataset_id is None:
            raise ValueError(f"model {model_id} has no dataset: nothing to compare replies with")
        self.ws, self.record, self.embedder = ws, record, embedder
        self.context_turns = context_turns
        self.tags = speaker_tags(ws, record)
        self.speaker_tag = self.tags.get(record.person) or safe_name(record.person)
        self.signals = [s for s in SIGNALS if s != "embedding" or embedder is not None]
        self.model = LlamaModel(Path(record.base), [(adapter, 1.0)], n_ctx=512, threads=threads)
        try:
            self.index, self.built = self._load_or_build(adapter, progress, cancel)
        except BaseException:
            self.model.close()
            raise

    def close(self) -> None:
        self.model.close()

    def __enter__(self) -> Explainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the index ------------------------------------------------------------------------------

    def _key(self, adapter: Path, dataset_sha: str) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "dataset_sha256": dataset_sha,
            "adapter_sha256": sha256_file(adapter),
            "base_sha256": self.record.base_sha256,
            "context_turns": self.context_turns,
            "signals": self.signals,
            "embedder": type(self.embedder).__name__ if self.embedder is not None else None,
        }

    def _load_or_build(
        self,
        adapter: Path,
        progress: Callable[[ExplainEvent], None] | None,
        cancel: threading.Event | None,
    ) -> tuple[Index, bool]:
        assert self.record.dataset_id is not None
        train, _, dataset_sha = self.ws.dataset_files(self.record.dataset_id)
        key = self._key(adapter, dataset_sha)
        path = index_dir(self.record.path) / "index.npz"
        cached = read_index(path, key)
        if cached is not None:
            return cached, False
        found = candidates(train, self.context_turns)
        if not found:
            raise ValueError(
                f"dataset {self.record.dataset_id} keeps no message ids (it predates them): "
                f"train the model again to explain its replies"
            )
        index = self._build(found, key, progress, cancel)
        write_index(path, index)
        return index, True

    def _build(
        self,
        found: list[Candidate],
        key: dict[str, Any],
        progress: Callable[[ExplainEvent], None] | None,
        cancel: threading.Event | None,
    ) -> Index:
        import numpy as np

        say = progress or (lambda e: None)
        vectors: dict[str, np.ndarray] = {}
        parts: dict[str, list[np.ndarray]] = {s: [] for s in self.signals}
        for stage in self.signals:
            for start in range(0, len(found), BATCH):
                if cancel is not None and cancel.is_set():
                    raise ExplainStopped("stopped before the index was built")
                say(ExplainEvent(stage, start, len(found)))
                chunk = found[start : start + BATCH]
                if stage == "embedding":
                    assert self.embedder is not None
                    rows = self.embedder.embed([c.body for c in chunk])
                else:
                    items = [state_item(self.model, c.before, self.speaker_tag, c.body)
                             for c in chunk]  # fmt: skip
                    rows = self.model.mean_states(items)
                parts[stage].append(np.asarray(rows, dtype=np.float32))
            say(ExplainEvent(stage, len(found), len(found)))
            vectors[stage] = np.concatenate(parts[stage])
        mean = None
        if "hidden" in vectors:
            mean = vectors["hidden"].mean(axis=0)
            vectors["hidden"] = vectors["hidden"] - mean
        ids = np.array([c.id for c in found], dtype=np.int64)
        units = {k: unit(v) for k, v in vectors.items()}
        return Index(ids, [c.context_ids for c in found], units, mean, key)

    # -- the question ---------------------------------------------------------------------------

    def similarities(
        self, reply: str, turns: Sequence[tuple[str, str]] = ()
    ) -> dict[str, np.ndarray]:
        """Cosine similarity of `reply` (said after `turns`) to every indexed message, per
        signal (arrays in `index.ids` order)."""
        import numpy as np

        body = reply.strip()
        if not body:
            raise ValueError("nothing to explain: the reply is empty")
        out: dict[str, np.ndarray] = {}
        if "embedding" in self.signals:
            assert self.embedder is not None
            q = np.asarray(self.embedder.embed([body])[0], dtype=np.float32)
            out["embedding"] = self.index.vectors["embedding"] @ unit(q)
        if "hidden" in self.signals:
            before = ""
            if self.context_turns and turns:
                kept = turns[-self.context_turns :]
                before = render([(self.tags.get(n) or safe_name(n), t) for n, t in kept])
            item = state_item(self.model, before, self.speaker_tag, body)
            q = self.model.mean_states([item])[0]
            assert self.index.hidden_mean is not None
            out["hidden"] = self.index.vectors["hidden"] @ unit(q - self.index.hidden_mean)
        return out

    def explain(
        self,
        reply: str,
        turns: Sequence[tuple[str, str]] = (),
        k: int = 5,
        signals: Sequence[str] | None = None,
    ) -> Explanation:
        """The `k` training messages closest to `reply` (said after `turns`, the conversation
        before it), best first, by the combined ranking of `signals` (default: all that this
        explainer has)."""
        started = time.perf_counter()
        sims = self.similarities(reply, turns)
        used = [s for s in (signals or self.signals) if s in sims]
        if not used:
            raise ValueError(f"no such signal here: {list(signals or [])}; have {self.signals}")
        scores = combine({s: sims[s] for s in used})
        order = scores.argsort()[::-1][:k]
        matches = self._matches(order, scores, sims)
        return Explanation(self.record.id, self.record.person, reply, used,
                           len(self.index.ids), matches, time.perf_counter() - started,
                           self.built)  # fmt: skip

    def _matches(self, order: Any, scores: Any, sims: dict[str, Any]) -> list[Match]:
        index = self.index
        shown = {int(index.ids[i]) for i in order}
        for i in order:
            shown.update(index.context_ids[i][-REPLIED_TO:])
        said = _messages(self.ws, sorted(shown))
        out = []
        for rank, i in enumerate(order, 1):
            mid = int(index.ids[i])
            message = said.get(mid) or Said(mid, "", self.record.person, "(no longer stored)")
            before = [said[c] for c in index.context_ids[i][-REPLIED_TO:] if c in said]
            similarity = {s: float(v[i]) for s, v in sims.items()}
            out.append(Match(rank, message, before, float(scores[i]), similarity,
                             self.record.chat_id))  # fmt: skip
        return out


def combine(similarities: dict[str, np.ndarray]) -> np.ndarray:
    """The combined score: the sum over signals of each similarity as a z-score over all the
    candidates (a signal that cannot tell them apart adds nothing)."""
    import numpy as np

    total: np.ndarray | None = None
    for sims in similarities.values():
        std = float(sims.std())
        z = (sims - sims.mean()) / std if std > 1e-9 else np.zeros_like(sims)
        total = z if total is None else total + z
    assert total is not None
    return total


def explain(
    ws: Workspace,
    model_id: str,
    reply: str,
    turns: Sequence[tuple[str, str]] = (),
    *,
    embedder: TextEmbedder | None,
    k: int = 5,
    threads: int | None = None,
    progress: Callable[[ExplainEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> Explanation:
    """The `k` real messages of the persona's person that most resemble `reply` (said after
    `turns`), with the messages they replied to (see the module docstring). The first call for
    a model builds its index (seconds to minutes: `progress`, `cancel`)."""
    with Explainer(ws, model_id, embedder, threads=threads, progress=progress,
                   cancel=cancel) as explainer:  # fmt: skip
        return explainer.explain(reply, turns, k)


def surrounding(ws: Workspace, message_id: int, around: int = 5) -> tuple[int, list[Said]]:
    """(chat id, the chat's messages from `around` before `message_id` to `around` after it,
    in chat order). KeyError when no chat holds that message."""
    conn = ws.store.conn
    row = conn.execute(
        "SELECT chat_id FROM segments WHERE ? BETWEEN first_id AND last_id", (message_id,)
    ).fetchone()
    if (
        row is None
        or not conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone()
    ):
        raise KeyError(f"no message with id {message_id}")
    chat_id = int(row[0])
    messages = ws.store.messages(chat_id)
    at = next(i for i, m in enumerate(messages) if m.id == message_id)
    window = messages[max(0, at - around) : at + around + 1]
    return chat_id, [Said(m.id, m.timestamp, m.sender, m.text) for m in window]


def _messages(ws: Workspace, ids: Sequence[int]) -> dict[int, Said]:
    out: dict[int, Said] = {}
    conn = ws.store.conn
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        rows = conn.execute(
            "SELECT m.id, m.ts, p.name, m.text FROM messages m"
            " LEFT JOIN participants p ON p.id = m.participant_id"
            f" WHERE m.id IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
        out.update({i: Said(i, ts, name, text) for i, ts, name, text in rows})
    return out
