"""Plain records the store hands out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class ImportReport:
    """What one import did to one chat. `to_json()` is the CLI's `import --json` contract."""

    chat_id: int
    format: str
    title: str
    messages: int  # non-system messages in the export
    new: int  # messages (any kind) added to the store by this import
    participants: list[dict[str, Any]]
    first: str | None
    last: str | None
    kinds: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # guesses the importer made

    def to_json(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "format": self.format,
            "title": self.title,
            "messages": self.messages,
            "new": self.new,
            "participants": self.participants,
            "first": self.first,
            "last": self.last,
            "kinds": self.kinds,
            "skipped": self.skipped,
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class ChatInfo:
    id: int
    format: str
    title: str
    messages: int
    first: str | None
    last: str | None
    participants: tuple[str, ...]


@dataclass(frozen=True)
class Participant:
    id: int
    chat_id: int
    name: str
    messages: int
    person: str | None
    is_me: bool


@dataclass
class ModelRecord:
    """A trained persona model: a LoRA for `person` on the base GGUF `base`."""

    id: str
    chat_id: int | None
    dataset_id: int | None
    person: str
    base: str
    base_sha256: str
    created: str
    status: str  # training, cancelled, ready, failed
    path: str  # the model's folder (run.json, checkpoint/, adapter/, adapter.gguf, exports)
    metrics: dict[str, Any] | None = None

    INSERT: ClassVar[str] = (
        "INSERT INTO models (id, chat_id, dataset_id, person, base, base_sha256, created,"
        " status, path, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ModelRecord:
        """A record from `INSERT`'s columns as stored (metrics: JSON text, or NULL while it
        trains)."""
        id_, chat, dataset, person, base, sha, created, status, path, metrics = row
        metrics = json.loads(metrics) if metrics else None
        return cls(id_, chat, dataset, person, base, sha, created, status, path, metrics)

    def row(self) -> tuple[Any, ...]:
        """The record as `INSERT`'s values."""
        metrics = json.dumps(self.metrics) if self.metrics is not None else None
        return (
            self.id,
            self.chat_id,
            self.dataset_id,
            self.person,
            self.base,
            self.base_sha256,
            self.created,
            self.status,
            self.path,
            metrics,
        )
