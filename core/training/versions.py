"""Versions of a persona: the first training is version 1, every update adds one.

Version 1 lives in the model's folder (`adapter/`, `adapter.gguf`, `run.json`); version N >= 2
in `versions/N/` with the same files, its row in the store's `model_versions` table holding its
status and record (what it learnt, its forgetting table, why it was or was not promoted).

The version a chat uses is the newest *kept* one: version 1 always is, an update is kept when
promoted (or when the user keeps it anyway), and a rollback un-keeps every version after the one
it goes back to. Nothing is deleted: a rolled-back version can be used again.

Contract: plain functions over an open `Store`; each write is one transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from convsim.core.store import Store
from convsim.core.store.records import MODELS
from convsim.core.workspace import shown_status

__all__ = ["Version", "add_version", "current", "finish_version", "use_version", "versions"]


@dataclass(frozen=True)
class Version:
    model_id: str
    version: int
    created: str
    status: str  # training, cancelled, failed, done (version 1: the model's own status)
    kept: bool  # the chat may use it; the newest kept version is the current one
    path: Path  # its folder: adapter/, adapter.gguf, run.json
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def adapter_gguf(self) -> Path:
        return self.path / "adapter.gguf"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    def to_json(self, current: int | None = None) -> dict[str, Any]:
        out = {
            "version": self.version,
            "created": self.created,
            "status": self.status,
            "kept": self.kept,
            "current": self.version == current,
            "path": str(self.path),
        }
        return {**out, **{k: self.record[k] for k in ("promoted", "reason") if k in self.record}}


def versions(store: Store, model_id: str) -> list[Version]:
    """Every version of `model_id`, oldest first. KeyError for an unknown model."""
    record = store.model(model_id)
    first = Version(model_id, 1, record.created, _first_status(shown_status(record)), True,
                    Path(record.path), {"promoted": True, "reason": "first training"})  # fmt: skip
    rows = store.conn.execute(
        "SELECT version, created, status, kept, path, record FROM model_versions"
        " WHERE model_id = ? ORDER BY version",
        (model_id,),
    )
    return [first] + [
        Version(
            model_id,
            v,
            created,
            status,
            bool(kept),
            _in_model(path, record.path, v),
            json.loads(rec),
        )
        for v, created, status, kept, path, rec in rows
    ]


def _in_model(stored: str, model_folder: str, version: int) -> Path:
    """A version's folder, in the model's folder as the store finds it now (a data folder
    that was moved or copied: `records.in_home`)."""
    path = Path(stored)
    if path.parts[-4:] == (MODELS, Path(model_folder).name, "versions", str(version)):
        return Path(model_folder) / "versions" / str(version)
    return path


def _first_status(model_status: str) -> str:
    return "done" if model_status == "ready" else model_status


def current(store: Store, model_id: str) -> Version:
    """The version a chat uses: the newest kept one that finished."""
    usable = [v for v in versions(store, model_id) if v.kept and v.status == "done"]
    return usable[-1] if usable else versions(store, model_id)[0]


def add_version(store: Store, model_id: str, record: dict[str, Any]) -> Version:
    """A new version in training, in `versions/N/` of the model's folder."""
    model = store.model(model_id)
    with store.transaction() as conn:
        (top,) = conn.execute(
            "SELECT coalesce(max(version), 1) FROM model_versions WHERE model_id = ?", (model_id,)
        ).fetchone()
        number = int(top) + 1
        folder = Path(model.path) / "versions" / str(number)
        created = datetime.now().isoformat(timespec="seconds")
        conn.execute(
            "INSERT INTO model_versions (model_id, version, created, status, kept, path, record)"
            " VALUES (?, ?, ?, 'training', 0, ?, ?)",
            (model_id, number, created, str(folder), json.dumps(record)),
        )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return versions(store, model_id)[number - 1]


def finish_version(
    store: Store, model_id: str, version: int, status: str, record: dict[str, Any], kept: bool
) -> Version:
    """Record how an update ended (`status`: done, cancelled or failed) and whether it is kept."""
    if version < 2:
        raise ValueError("version 1 is the first training; updates start at 2")
    with store.transaction() as conn:
        conn.execute(
            "UPDATE model_versions SET status = ?, kept = ?, record = ?"
            " WHERE model_id = ? AND version = ?",
            (status, int(kept), json.dumps(record), model_id, version),
        )
    return versions(store, model_id)[version - 1]


def use_version(store: Store, model_id: str, version: int) -> Version:
    """Make `version` the one the chat uses: keep it, un-keep every newer one (a rollback, or
    keeping an update that was not promoted). Raises ValueError for a version that is unknown
    or did not finish."""
    known = versions(store, model_id)
    if not 1 <= version <= len(known):
        raise ValueError(f"model {model_id} has no version {version} (it has 1-{len(known)})")
    target = known[version - 1]
    if target.status != "done":
        raise ValueError(f"version {version} of {model_id} did not finish ({target.status})")
    with store.transaction() as conn:
        conn.execute(
            "UPDATE model_versions SET kept = (version <= ? AND (kept OR version = ?))"
            " WHERE model_id = ?",
            (version, version, model_id),
        )
    return current(store, model_id)
