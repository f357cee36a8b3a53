"""Plain records the store hands out."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
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


# Where a data folder keeps what the store's rows point at (see `Locations`).
DATASETS, MODELS, BASE_MODELS = "datasets", "models", "base-models"


def home_of(conn: sqlite3.Connection) -> Path:
    """The data folder a store's connection is in (the folder of its database file)."""
    return Path(
        next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")
    ).parent


def in_home(stored: str, home: Path, folder: str, name: str) -> str:
    """A folder a row names, read in the data folder `home` the store is in now. Rows keep
    absolute paths, so a data folder that was moved or copied names the old folder's files: a
    path laid out as convsim lays out its own (`OLD/datasets/3`, `OLD/models/sam-1`) is taken
    in `home` instead, and a copy never reads, writes or deletes the folder it came from."""
    path = Path(stored)
    if path.is_absolute() and path.parent.name == folder and path.name == name:
        return str(home / folder / name)
    return stored


def model_in_home(record: ModelRecord, home: Path) -> ModelRecord:
    """`record` with its folder in `home` (`in_home`), and its base too where the base was the
    old folder's copy (`OLD/base-models/…`) and is gone from there (a base of the user's own,
    anywhere else, is kept as named; a copy reading a base it still finds is harmless)."""
    base = Path(record.base)
    if BASE_MODELS in base.parts[:-1] and not base.exists():  # also OLD/base-models/OWNER--REPO/
        tail = base.parts[len(base.parts) - base.parts[::-1].index(BASE_MODELS) :]
        moved = home.joinpath(BASE_MODELS, *tail)
        if moved.exists():
            record = replace(record, base=str(moved))
    return replace(record, path=in_home(record.path, home, MODELS, record.id))


def dataset_row(row: tuple[Any, ...], home: Path) -> dict[str, Any]:
    """A dataset as `Store.datasets` gives it, from its stored columns (id, chat_id, target,
    created, config, stats, path), its folder in `home` (`in_home`)."""
    i, chat_id, target, created, config, stats, path = row
    return {
        "id": i,
        "chat_id": chat_id,
        "target": target,
        "created": created,
        "config": json.loads(config),
        "stats": json.loads(stats),
        "path": in_home(path, home, DATASETS, str(i)),
    }
