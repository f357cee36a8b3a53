"""Memory: what convsim knows about each person, and search over everything they wrote.

Contract:
- Facts (`Facts`) live in the store (`facts`, with `fact_events` as the audit log and
  `fact_conflicts` for flagged pairs). `Facts.add` is the one way in and applies the rules of
  `facts.py`: repeats merge, a new value supersedes the old (both kept, pair flagged), a
  simulated or contradicting fact never silently overrides a real or pinned one. Nothing is
  deleted but by forgetting a chat or a person.
- Search (`open_searcher` -> `Searcher.search`) works on any imported chat without extraction:
  `update_index` brings the chat's full-text index and embeddings up to date first (only new
  messages; resumable). Modes: hybrid (default), keyword, embedding. No language model runs at
  search time; the embedding model ships in a package (`embedder.py`).
- Nothing here opens a network connection, except `EndpointExtractor` (endpoint.py), and only
  to the URL the user configured; its API key lives only in the system keyring.
"""

from __future__ import annotations

import threading

from convsim.core.memory.embedder import (
    DIM,
    Embedder,
    EmbedderMissing,
    optional_embedder,
    shared_embedder,
)
from convsim.core.memory.endpoint import (
    EndpointError,
    EndpointExtractor,
    KeyringUnavailable,
    clear_key,
    endpoint_settings,
    get_key,
    save_endpoint,
    set_key,
)
from convsim.core.memory.extract import (
    BuildReport,
    ExtractError,
    Extractor,
    LocalExtractor,
    UnparsedAnswer,
    build_memory,
    extract_live,
)
from convsim.core.memory.facts import (
    ORIGINS,
    STATUSES,
    Conflict,
    Event,
    Fact,
    FactError,
    Facts,
)
from convsim.core.memory.gate import KEYS, Candidate, Gate
from convsim.core.memory.index import IndexState, Progress, update_index
from convsim.core.memory.search import MODES, Hit, Searcher
from convsim.core.memory.spans import SpanExtractor, local_extractor
from convsim.core.store import Store

__all__ = [
    "DIM",
    "KEYS",
    "MODES",
    "ORIGINS",
    "STATUSES",
    "BuildReport",
    "Candidate",
    "Conflict",
    "Embedder",
    "EmbedderMissing",
    "EndpointError",
    "EndpointExtractor",
    "Event",
    "ExtractError",
    "Extractor",
    "Fact",
    "FactError",
    "Facts",
    "Gate",
    "Hit",
    "IndexState",
    "KeyringUnavailable",
    "LocalExtractor",
    "Searcher",
    "SpanExtractor",
    "UnparsedAnswer",
    "build_memory",
    "clear_key",
    "endpoint_settings",
    "extract_live",
    "get_key",
    "local_extractor",
    "open_searcher",
    "optional_embedder",
    "save_endpoint",
    "set_key",
    "shared_embedder",
    "update_index",
]


def open_searcher(
    store: Store,
    chat_id: int,
    mode: str = "hybrid",
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Searcher:
    """A searcher over a chat whose index is brought up to date first (embeddings too, unless
    the mode is keyword-only; `progress(done, total)` follows that part)."""
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}: expected {', '.join(MODES)}")
    embedder = None if mode == "keyword" else shared_embedder()
    update_index(store, chat_id, embedder, progress, stop)
    return Searcher(store, chat_id, embedder, mode)
