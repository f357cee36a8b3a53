"""A built dataset on disk: the folder format, written and read in one place.

Folder layout:
- `train.jsonl`, `validation.jsonl`: one example per line, `{"context", "target", "session",
  "timestamp", "context_ids", "target_id", "next_tag"}` (see `dataset.Example`);
- `config.json`: the `DatasetConfig` that built it; `stats.json`: `Dataset.stats()`;
- `format.json`: `{"format": "convsim-dataset", "version": 3}`.

Versions: 1 is the format before source ids were kept (no `format.json`, rows without
`context_ids`/`target_id`); it still loads, its examples with `target_id` None. 2 adds the ids;
3 adds `next_tag` (earlier versions load with `next_tag` "").
A folder from a newer format version is refused, naming the version, since its rows may mean
something this reader does not know. Keys a row has beyond the known ones are ignored.

Contract: `write_dataset(folder, dataset)` fills a folder, each file written atomically; the
caller stages and publishes the folder (`convsim.core.files.publishing`), so a failure leaves
nothing behind. `read_dataset(folder)` raises `DatasetFileError` (a ValueError) naming the file,
line and field of anything malformed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from convsim.core.data.dataset import Dataset, DatasetConfig, Example
from convsim.core.files import write_json, write_jsonl

__all__ = [
    "FORMAT_VERSION",
    "DatasetFileError",
    "DatasetFiles",
    "read_dataset",
    "write_dataset",
]

FORMAT_NAME = "convsim-dataset"
FORMAT_VERSION = 3
SPLITS = ("train", "validation")


class DatasetFileError(ValueError):
    """A dataset file that cannot be read: names the file, and the line and field if any."""

    def __init__(self, path: Path, problem: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class DatasetFiles:
    """A dataset folder as read back."""

    folder: Path
    version: int
    config: DatasetConfig
    train: list[Example]
    validation: list[Example]
    stats: dict[str, Any]
    sha256: str
    """Of train.jsonl then validation.jsonl, byte for byte: what a training run records."""


def write_dataset(folder: Path, dataset: Dataset) -> dict[str, Any]:
    """Write `dataset` into the existing, empty `folder` (usually a staging folder from
    `convsim.core.files.publishing`, moved into place by the caller). Returns the stats."""
    stats = dataset.stats()
    write_jsonl(folder / "train.jsonl", map(_row, dataset.train))
    write_jsonl(folder / "validation.jsonl", map(_row, dataset.validation))
    dataset.config.save(folder / "config.json")
    write_json(folder / "stats.json", stats)
    write_json(folder / "format.json", {"format": FORMAT_NAME, "version": FORMAT_VERSION})
    return stats


def read_dataset(folder: Path) -> DatasetFiles:
    """The dataset in `folder`, format 1 or 2 (see the module docstring)."""
    folder = Path(folder)
    version = _version(folder)
    digest = hashlib.sha256()
    splits: dict[str, list[Example]] = {}
    for split in SPLITS:
        path = folder / f"{split}.jsonl"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DatasetFileError(path, "missing; the dataset folder is incomplete") from None
        digest.update(raw)
        splits[split] = _examples(path, raw, version)
    config_path = folder / "config.json"
    try:
        config = DatasetConfig.load(config_path)
    except FileNotFoundError:
        raise DatasetFileError(config_path, "missing; the dataset folder is incomplete") from None
    stats_path = folder / "stats.json"
    stats = _json(stats_path) if stats_path.exists() else {}
    return DatasetFiles(
        folder=folder,
        version=version,
        config=config,
        train=splits["train"],
        validation=splits["validation"],
        stats=stats if isinstance(stats, dict) else {},
        sha256=digest.hexdigest(),
    )


def _row(example: Example) -> dict[str, Any]:
    row = asdict(example)
    row["context_ids"] = list(example.context_ids)
    return row


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DatasetFileError(path, f"not valid JSON ({exc})") from None


def _version(folder: Path) -> int:
    path = folder / "format.json"
    if not path.exists():
        return 1  # written before the format carried a version
    data = _json(path)
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise DatasetFileError(path, f'expected {{"format": "{FORMAT_NAME}", "version": N}}')
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DatasetFileError(path, f"field 'version' must be a positive integer, not {version!r}")
    if version > FORMAT_VERSION:
        raise DatasetFileError(
            path,
            f"dataset format version {version} was written by a newer convsim "
            f"(this one reads up to {FORMAT_VERSION})",
        )
    return version


def _examples(path: Path, raw: bytes, version: int) -> list[Example]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetFileError(path, f"not UTF-8 text ({exc})") from None
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            examples.append(_example(path, number, line, version))
    return examples


def _example(path: Path, line: int, text: str, version: int) -> Example:
    try:
        row = json.loads(text)
    except ValueError as exc:
        raise DatasetFileError(path, f"not valid JSON ({exc})", line) from None
    if not isinstance(row, dict):
        raise DatasetFileError(path, f"expected a JSON object, got {type(row).__name__}", line)

    def field(name: str, kind: type, what: str) -> Any:
        if name not in row:
            raise DatasetFileError(path, f"field {name!r} is missing (expected {what})", line)
        value = row[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DatasetFileError(
                path, f"field {name!r} must be {what}, not {value!r}"[:300], line
            )
        return value

    if version >= 2:
        context_ids = field("context_ids", list, "a list of message ids")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in context_ids):
            problem = f"field 'context_ids' must hold integer message ids, not {context_ids!r}"
            raise DatasetFileError(path, problem[:300], line)
        target_id = field("target_id", int, "an integer message id")
    else:
        context_ids, target_id = [], None  # format 1 kept no ids
    next_tag = field("next_tag", str, 'a turn\'s tag like "[Sam]", or ""') if version >= 3 else ""
    if next_tag and not (next_tag.startswith("[") and next_tag.endswith("]")):
        problem = f'field \'next_tag\' must be a turn\'s tag like "[Sam]", or "", not {next_tag!r}'
        raise DatasetFileError(path, problem[:300], line)
    return Example(
        context=field("context", str, "a string"),
        target=field("target", str, "a string"),
        session=field("session", int, "an integer session index"),
        timestamp=field("timestamp", str, "an ISO 8601 timestamp string"),
        context_ids=tuple(context_ids),
        target_id=target_id,
        next_tag=next_tag,
    )
