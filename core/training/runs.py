"""From a stored chat to a persona model: train and resume.

Each function takes an open `Workspace` and plain arguments, reports progress through a
callback of plain events, and records what it made in the store and as JSON beside the files
(`run.json`: config, base-model hash, dataset hash; `metrics.json`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.core.files import write_json
from convsim.core.store import ModelRecord
from convsim.core.training.trainer import TrainConfig, TrainEvent, TrainResult
from convsim.core.workspace import Workspace

if TYPE_CHECKING:
    from convsim.core.data.dataset import Example


@dataclass(frozen=True)
class TrainOutcome:
    model: ModelRecord
    result: TrainResult
    adapter_gguf: Path | None


def default_config(n_params: int, **overrides: Any) -> TrainConfig:
    """Sensible settings for a base of `n_params` parameters; smaller bases take a higher
    learning rate, larger ones a smaller rank (the adapter stays small either way).

    `overrides` replace settings; a None value leaves the default (an option not given). A key
    that is not a setting raises `UnknownSetting` (a ValueError naming it and the valid ones)."""
    TrainConfig.check_keys(overrides)
    if n_params < 600e6:
        config = TrainConfig(rank=16, alpha=32, learning_rate=2e-4)
    elif n_params < 4e9:
        config = TrainConfig(rank=16, alpha=32, learning_rate=1e-4)
    else:
        config = TrainConfig(rank=8, alpha=16, learning_rate=1e-4)
    return config.with_overrides(**{k: v for k, v in overrides.items() if v is not None})


def speaker_tags(ws: Workspace, record: ModelRecord) -> dict[str, str]:
    """The tags a model was trained with where they differ from the names (its dataset's
    renames, e.g. "Riya Kapoor" -> "Riya"): give them to `Engine.set_tags` so the persona is
    prompted under the tag it learned."""
    if record.dataset_id is None:
        return {}
    return dict(ws.store.dataset(record.dataset_id)["config"].get("tags") or {})


def train_person(
    ws: Workspace,
    chat_id: int,
    person: str,
    *,
    base: str | None = None,
    dataset_id: int | None = None,
    max_context: int | None = None,
    overrides: dict[str, Any] | None = None,
    start_from: str | None = None,
    on_event: Callable[[TrainEvent], None] | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[Any], None] | None = None,
) -> TrainOutcome:
    """Train a LoRA that writes like `person` in `chat_id`, on `base` (None = the default
    model; a .gguf path; "hf:owner/repo/file.gguf" downloads). Builds the dataset unless a
    stored `dataset_id` is given (`max_context`: earlier messages per example). `progress`
    receives `bases.BaseModelProgress` events while the base model is prepared (the
    first load of a base takes about a minute).

    `start_from` (a finished model's id) continues training that model's adapter, on its base
    and with its rank, alpha and target modules, into a new model: an update."""
    from convsim.core import bases
    from convsim.core.data.dataset import DatasetConfig

    overrides = dict(overrides or {})
    TrainConfig.check_keys(overrides)
    if start_from is not None:
        base, inherited = _continued(ws, start_from, base)
        overrides = {**inherited, **{k: v for k, v in overrides.items() if v is not None}}
    if dataset_id is None:
        dataset_config = DatasetConfig(target=person)
        if max_context is not None:
            dataset_config = dataset_config.with_overrides(max_context=max_context)
        dataset_id = ws.build_dataset(chat_id, dataset_config).id
    base_path = bases.resolve_base(base, ws.locations, progress=progress)
    model_id = ws.store.new_model_id(person)
    folder = ws.locations.models / model_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    model, tokenizer = bases.load_for_training(base_path, ws.locations, progress=progress)
    n_params = sum(p.numel() for p in model.parameters())
    config = default_config(n_params, **overrides)
    train, validation, dataset_sha = ws.dataset_files(dataset_id)
    record = ModelRecord(
        id=model_id,
        chat_id=chat_id,
        dataset_id=dataset_id,
        person=person,
        base=str(base_path),
        base_sha256=bases.sha256_file(base_path, ws.locations),
        created=datetime.now().isoformat(timespec="seconds"),
        status="training",
        path=str(folder),
    )
    run = {
        "model_id": model_id,
        "person": person,
        "chat_id": chat_id,
        "dataset_id": dataset_id,
        "dataset_sha256": dataset_sha,
        "base": str(base_path),
        "base_sha256": record.base_sha256,
        "base_parameters": n_params,
        "train": config.to_json(),
        "start_from": start_from,
        "created": record.created,
    }
    write_json(folder / "run.json", run)
    ws.store.add_model(record)
    examples = (train, validation)
    return _run(ws, record, model, tokenizer, examples, config, False, on_event, cancel)


def _continued(ws: Workspace, model_id: str, base: str | None) -> tuple[str, dict[str, Any]]:
    """(base, settings) for continuing `model_id`: its base GGUF, and the settings that fix
    its adapter's shape and scale plus the adapter folder to start from."""
    from convsim.core.training.errors import AdapterMissing, ModelNotReady

    record = ws.store.model(model_id)
    if record.status != "ready":
        raise ModelNotReady(model_id, record.status)
    folder = Path(record.path)
    adapter = folder / "adapter"
    if not (adapter / "adapter_model.safetensors").is_file():
        raise AdapterMissing(adapter, model_id, record.chat_id, record.person)
    if base is not None and Path(base).resolve() != Path(record.base).resolve():
        raise ValueError(
            f"model {model_id} was trained on {record.base}; its adapter cannot continue on {base}"
        )
    previous = TrainConfig.from_json(json.loads((folder / "run.json").read_text())["train"])
    inherited = {
        "rank": previous.rank,
        "alpha": previous.alpha,
        "target_modules": previous.target_modules,
        "init_adapter": str(adapter),
    }
    return record.base, inherited


def resume_training(
    ws: Workspace,
    model_id: str,
    *,
    on_event: Callable[[TrainEvent], None] | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[Any], None] | None = None,
) -> TrainOutcome:
    """Continue a cancelled or killed run from its last checkpoint, with its own settings."""
    from convsim.core import bases

    record = ws.store.model(model_id)
    if record.status == "ready":
        raise ValueError(f"model {model_id} has finished training; nothing to resume")
    run = json.loads((Path(record.path) / "run.json").read_text())
    config = TrainConfig.from_json(run["train"])
    model, tokenizer = bases.load_for_training(Path(record.base), ws.locations, progress=progress)
    assert record.dataset_id is not None
    train, validation, _ = ws.dataset_files(record.dataset_id)
    ws.store.update_model(model_id, "training")
    examples = (train, validation)
    return _run(ws, record, model, tokenizer, examples, config, True, on_event, cancel)


def _run(
    ws: Workspace,
    record: ModelRecord,
    model: Any,
    tokenizer: Any,
    examples: tuple[list[Example], list[Example]],
    config: TrainConfig,
    resume: bool,
    on_event: Callable[[TrainEvent], None] | None,
    cancel: threading.Event | None,
) -> TrainOutcome:
    from convsim.convert.adapter import write_lora_adapter
    from convsim.core.training.trainer import Trainer

    train, validation = examples
    folder = Path(record.path)
    try:
        trainer = Trainer(model, tokenizer, train, validation, config, folder, on_event, cancel)
        result = trainer.run(resume=resume)
    except BaseException:
        # A full disk may refuse this write too: the error that stopped training is the news.
        with contextlib.suppress(Exception):
            ws.store.update_model(record.id, "failed")
        raise
    if result.cancelled:
        ws.store.update_model(record.id, "cancelled", result.metrics)
        return TrainOutcome(ws.store.model(record.id), result, None)
    assert result.adapter_dir is not None
    gguf = write_lora_adapter(
        result.adapter_dir,
        Path(record.base),
        folder / "adapter.gguf",
        alpha=config.alpha,
        rank=config.rank,
    )
    ws.store.update_model(record.id, "ready", result.metrics)
    return TrainOutcome(ws.store.model(record.id), result, gguf)
