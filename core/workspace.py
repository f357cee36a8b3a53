"""A user's convsim workspace: the store plus the files around it, built from explicit paths.

This is the one entry point the CLI, the TUI and tests use for import → store → dataset.
It knows nothing about how results are shown.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.core import locks
from convsim.core.chats.importers import (
    AmbiguousDateOrder,
    ImportOptions,
    Source,
    detect,
    parse_export,
    stream_export,
)
from convsim.core.files import publishing
from convsim.core.locations import Locations, make_private_dir
from convsim.core.store import (
    ImportReport,
    ModelRecord,
    Store,
    damaged_copies,
    forget,
    list_backups,
)
from convsim.core.store.forget import ForgetPlan

if TYPE_CHECKING:
    from convsim.core.data.dataset import DatasetConfig, Example
    from convsim.core.data.dataset_files import DatasetFiles

SAMPLE_CHAT = Path(__file__).parent / "chats" / "samples" / "sample_whatsapp.txt"
TRAINING_LOCK = "training.lock"
"""Held in a model's folder while it trains (a first training, a resume, an update)."""


class TrainingRunning(ValueError):
    """The model is training now, in another convsim (the app, a command) or another worker:
    a second trainer of it would overwrite the first one's checkpoints, and forgetting it would
    pull its folder from under it."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(
            f"model {model_id} is training now (in the app or another `convsim train`): "
            "let it finish, or stop it there first"
        )


class ImportCancelled(Exception):
    """An import was cancelled before it was stored: nothing of it is in the store."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"the import of {path.name} was cancelled; nothing of it was stored")


def is_training(record: ModelRecord) -> bool:
    """Whether `record` is training now, in this process or another (its status says
    "training" also for a run that was killed)."""
    return locks.is_held(Path(record.path) / TRAINING_LOCK)


def shown_status(record: ModelRecord) -> str:
    """`record.status` as a person should read it: "stopped" for a run whose status still says
    "training" but that no trainer runs any more (it was killed; it can resume)."""
    if record.status == "training" and not is_training(record):
        return "stopped"
    return record.status


def refuse_training(models: list[ModelRecord]) -> None:
    """Raise `TrainingRunning` for the first of `models` that is training now."""
    for model in models:
        if is_training(model):
            raise TrainingRunning(model.id)


@contextmanager
def training(record: ModelRecord) -> Iterator[None]:
    """Hold `record`'s training lock (its folder must exist) for the block; `TrainingRunning`
    when another training of it holds it."""
    try:
        # A moment's wait: someone may be looking (`is_training`) just now.
        held = locks.acquire(Path(record.path) / TRAINING_LOCK, wait=2.0)
    except locks.Busy:
        raise TrainingRunning(record.id) from None
    with held:
        yield


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
        progress: Callable[[float, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[ImportReport]:
        """Parse and store one export. An answer to an ambiguous day/month order given in
        `options.date_order` is remembered for later imports of a file with the same name;
        without one, a remembered answer is used or `AmbiguousDateOrder` is raised.
        `progress` hears (share stored, messages read) while an export too large to read
        whole is stored batch by batch (smaller ones take about a second). `cancel`, set
        before the import's transaction commits, raises `ImportCancelled` and stores nothing
        (checked after parsing, between a large export's batches and before the commit)."""
        options = options or ImportOptions()
        remembered = self.store.setting(_date_order_key(path))
        asked = options.date_order
        if asked is None and remembered is not None:
            options.date_order = remembered
        if format is None:  # detected once, for both the streaming and the whole read
            with Source(path) as source:
                format = detect(source)

        def check() -> None:  # raised inside the import's transaction, it rolls it back
            if cancel is not None and cancel.is_set():
                raise ImportCancelled(path)

        stream = stream_export(path, format, options)
        if stream is not None:  # too large to hold whole: read and stored batch by batch

            def stored(done: float, messages: int) -> None:
                check()
                if progress is not None:
                    progress(done, messages)

            reports = [self.store.add_stream(stream, str(path.resolve()), stored)]
        else:
            chats = parse_export(path, format, options)
            check()
            reports = self.store.add_import(chats, str(path.resolve()), check)
        if asked is not None:
            self.store.set_setting(_date_order_key(path), asked)
        return reports

    # -- forgetting --------------------------------------------------------------------------

    def forget_plan(self, chat_id: int | None = None, person: str | None = None) -> ForgetPlan:
        """What forgetting a chat (or a person, in every chat) removes: rows, and every file
        under the data folder derived from them (`plan.files`). Reads only; KeyError when
        there is no such chat or person."""
        from convsim.core.data.transcripts import mentioning

        conn = self.store.conn
        if person is not None:
            plan = forget.plan_person(conn, person)
        elif chat_id is not None:
            plan = forget.plan_chat(conn, chat_id)
        else:
            raise ValueError("forget_plan needs a chat_id or a person")
        plan.models = [replace(m, status=shown_status(m)) for m in plan.models]  # not "training"
        files = plan.row_folders()
        speakers = {*plan.names, *(m.person for m in plan.models)}
        texts = forget.texts(conn, plan)
        files += mentioning(self.locations.transcripts, speakers, texts)
        # Copies of the whole store (backups before upgrades, a damaged store kept aside)
        # hold these messages too.
        store = self.locations.store
        files += [b.path for b in list_backups(store)] + damaged_copies(store)
        plan.files = [f for f in files if f.exists()]
        plan.folders = {f for f in plan.files if f.is_dir()}
        return plan

    def forget(self, plan: ForgetPlan) -> bool:
        """Carry out a plan: its files first (so that an interrupted run can simply be run
        again: the rows still point at what is left), then the rows, erased from the database
        file and its WAL, then the files of datasets and models made since the plan (which
        `erase` adds to it). Returns False if another program held the WAL open (see
        `store.forget.erase`). A model of the plan that is training now raises
        `TrainingRunning` before anything is removed (a run that begins meanwhile removes its
        own files when it ends, see `training.runs`)."""
        refuse_training(plan.models)
        _remove(plan.files)
        emptied = forget.erase(self.store.conn, plan)
        _remove([p for p in plan.row_folders() if p not in plan.files])
        return emptied

    def build_dataset(self, chat_id: int, config: DatasetConfig) -> DatasetRecord:
        """Build the training dataset of `config.target` in `chat_id`, write it (see
        `core.data.dataset_files`) and register it in the store. Files are staged in a private
        temporary folder and moved into place inside the store transaction, so a failure
        leaves neither files nor a row."""
        from convsim.core.data import dataset as ds
        from convsim.core.data.dataset_files import write_dataset

        messages = self.store.messages(chat_id)
        senders = list(dict.fromkeys(m.sender for m in messages if m.sender is not None))
        unknown = [name for name in config.tags if name not in senders]
        if unknown:  # a new dataset only: an old one is rebuilt (learn) with the tags it had
            present = ", ".join(map(repr, senders))
            raise ValueError(
                f"a tag for {unknown[0]!r}, who sent no message here; senders: {present}"
            )
        built = ds.build(messages, config)
        make_private_dir(self.locations.datasets)
        with publishing(self.locations.datasets) as (staging, publish):
            stats = write_dataset(staging, built)

            def place(dataset_id: int) -> str:
                final = self.locations.dataset_dir(dataset_id)
                publish(final)
                return str(final)

            dataset_id = self.store.add_dataset(
                chat_id, config.target, config.to_json(), stats, place
            )
        folder = self.locations.dataset_dir(dataset_id)
        samples = [ex.context + ex.target for ex in built.train[-3:]]
        return DatasetRecord(dataset_id, chat_id, config.target, folder, stats, samples)

    def dataset(self, dataset_id: int) -> DatasetFiles:
        """A stored dataset's files, read back (format 1 or 2)."""
        from convsim.core.data.dataset_files import read_dataset

        return read_dataset(Path(self.store.dataset(dataset_id)["path"]))

    def dataset_files(self, dataset_id: int) -> tuple[list[Example], list[Example], str]:
        """(train, validation, sha256 of both files) of a stored dataset."""
        files = self.dataset(dataset_id)
        return files.train, files.validation, files.sha256


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


__all__ = [
    "SAMPLE_CHAT",
    "AmbiguousDateOrder",
    "DatasetRecord",
    "ForgetPlan",
    "ImportCancelled",
    "ImportOptions",
    "Workspace",
]
