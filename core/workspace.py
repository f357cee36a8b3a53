"""A user's convsim workspace: the store plus the files around it, built from explicit paths.

This is the one entry point the CLI, the TUI and tests use for import → store → dataset.
It knows nothing about how results are shown.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.core.chats.importers import AmbiguousDateOrder, ImportOptions, parse_export
from convsim.core.locations import Locations, make_private_dir
from convsim.core.store import ImportReport, Store

if TYPE_CHECKING:
    from convsim.core.data.dataset import DatasetConfig

SAMPLE_CHAT = Path(__file__).parent / "chats" / "samples" / "sample_whatsapp.txt"


def _date_order_key(path: Path) -> str:
    return f"whatsapp.date_order:{path.name}"


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    chat_id: int
    target: str
    path: Path
    stats: dict[str, Any]
    samples: list[str]


class Workspace:
    def __init__(self, locations: Locations) -> None:
        self.locations = locations.ensure()
        self.store = Store.open(locations.store)

    @classmethod
    def open(cls, home: Path | None = None) -> Workspace:
        return cls(Locations.from_env(home))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def import_export(
        self,
        path: Path,
        format: str | None = None,
        options: ImportOptions | None = None,
    ) -> list[ImportReport]:
        """Parse and store one export. An answer to an ambiguous day/month order given in
        `options.date_order` is remembered for later imports of a file with the same name;
        without one, a remembered answer is used or `AmbiguousDateOrder` is raised."""
        options = options or ImportOptions()
        remembered = self.store.setting(_date_order_key(path))
        asked = options.date_order
        if asked is None and remembered is not None:
            options.date_order = remembered
        chats = parse_export(path, format, options)
        reports = self.store.add_import(chats, str(path.resolve()))
        if asked is not None:
            self.store.set_setting(_date_order_key(path), asked)
        return reports

    def build_dataset(self, chat_id: int, config: DatasetConfig) -> DatasetRecord:
        """Build the training dataset of `config.target` in `chat_id`, write it as JSON Lines
        (train.jsonl, validation.jsonl) with config.json and stats.json beside it, and
        register it in the store. Files are staged in a private temporary folder and moved into
        place inside the store transaction, so a failure leaves neither files nor a row."""
        from convsim.core.data import dataset as ds

        messages = self.store.messages(chat_id)
        built = ds.build(messages, config)
        stats = built.stats()
        make_private_dir(self.locations.datasets)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=self.locations.datasets))
        try:
            for split, examples in (("train", built.train), ("validation", built.validation)):
                with open(staging / f"{split}.jsonl", "w", encoding="utf-8") as f:
                    for ex in examples:
                        f.write(json.dumps(asdict(ex), ensure_ascii=False) + "\n")
            (staging / "config.json").write_text(
                json.dumps(config.to_json(), indent=2, ensure_ascii=False)
            )
            (staging / "stats.json").write_text(json.dumps(stats, indent=2))

            def publish(dataset_id: int) -> str:
                final = self.locations.dataset_dir(dataset_id)
                os.replace(staging, final)
                return str(final)

            dataset_id = self.store.add_dataset(
                chat_id, config.target, config.to_json(), stats, publish
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        folder = self.locations.dataset_dir(dataset_id)
        samples = [ex.context + ex.target for ex in built.train[-3:]]
        return DatasetRecord(dataset_id, chat_id, config.target, folder, stats, samples)

    def dataset_files(self, dataset_id: int) -> tuple[list[dict], list[dict], str]:
        """(train, validation, sha256 of both files) of a stored dataset."""
        folder = Path(self.store.dataset(dataset_id)["path"])
        digest = hashlib.sha256()
        for name in ("train.jsonl", "validation.jsonl"):
            digest.update((folder / name).read_bytes())
        return (
            _read_jsonl(folder / "train.jsonl"),
            _read_jsonl(folder / "validation.jsonl"),
            digest.hexdigest(),
        )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dataset_files(ws: Workspace, dataset_id: int) -> tuple[list[dict], list[dict], str]:
    """(train, validation, sha256 of both files) of a stored dataset."""
    folder = Path(ws.store.dataset(dataset_id)["path"])
    digest = hashlib.sha256()
    for name in ("train.jsonl", "validation.jsonl"):
        digest.update((folder / name).read_bytes())
    train = _read_jsonl(folder / "train.jsonl")
    validation = _read_jsonl(folder / "validation.jsonl")
    return train, validation, digest.hexdigest()


__all__ = ["SAMPLE_CHAT", "AmbiguousDateOrder", "DatasetRecord", "ImportOptions", "Workspace"]
