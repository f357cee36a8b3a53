"""From a stored chat to a persona model: train and resume.

Each function takes an open `Workspace` and plain arguments, reports progress through a
callback of plain events, and records what it made in the store and as JSON beside the files
(`run.json`: config, base-model hash, dataset hash; `metrics.json`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.core.files import write_json
from convsim.core.store import ModelRecord
from convsim.core.training.errors import ModelForgotten
from convsim.core.training.trainer import TrainConfig, TrainEvent, TrainResult
from convsim.core.workspace import Workspace, training

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
    config = config.with_overrides(**{k: v for k, v in overrides.items() if v is not None})
    config.check_new()
    return config


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
    # Bad settings and a bad base are refused before anything is stored (the default base and
    # a download are prepared after the dataset: they take a while).
    default_config(0, **overrides)
    bases.check_base(base)
    if dataset_id is None:
        dataset_config = DatasetConfig(target=person)
        if max_context is not None:
            dataset_config = dataset_config.with_overrides(max_context=max_context)
        dataset_id = ws.build_dataset(chat_id, dataset_config).id
    base_path = bases.resolve_base(base, ws.locations, progress=progress)
    base_sha256 = bases.sha256_file(base_path, ws.locations)  # not inside the transaction
    record = ws.store.add_new_model(
        person,
        lambda model_id: ModelRecord(
            id=model_id,
            chat_id=chat_id,
            dataset_id=dataset_id,
            person=person,
            base=str(base_path),
            base_sha256=base_sha256,
            created=datetime.now().isoformat(timespec="seconds"),
            status="training",
            path=str(ws.locations.models / model_id),
        ),
        # A folder left by a model forgotten while it still trains is not taken over.
        taken=lambda model_id: (ws.locations.models / model_id).exists(),
    )
    folder = Path(record.path)
    with _failing(ws, record):  # a new model: no other trainer has it
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with training(record):
            model, tokenizer = bases.load_for_training(base_path, ws.locations, progress=progress)
            n_params = sum(p.numel() for p in model.parameters())
            config = default_config(n_params, **overrides)
            train, validation, dataset_sha = ws.dataset_files(dataset_id)
            run = {
                "model_id": record.id,
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
    previous = run_config(folder)
    inherited = {
        "rank": previous.rank,
        "alpha": previous.alpha,
        "target_modules": previous.target_modules,
        "init_adapter": str(adapter),
    }
    return record.base, inherited


def run_config(folder: Path) -> TrainConfig:
    """The training settings a run saved in `folder/run.json`; ValueError naming the file when
    it is missing or damaged (edited by hand, a disk error)."""
    path = folder / "run.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))["train"]
        if isinstance(saved.get("target_modules"), list):  # as the trainer read them then:
            known = set(TrainConfig().target_modules)  # a name it did not know had no LoRA
            saved["target_modules"] = [m for m in saved["target_modules"] if m in known]
        return TrainConfig.from_json(saved)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{path}: cannot read the run's settings ({e}); train the model again"
        ) from None


def resume_training(
    ws: Workspace,
    model_id: str,
    *,
    on_event: Callable[[TrainEvent], None] | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[Any], None] | None = None,
) -> TrainOutcome:
    """Continue a cancelled or killed run from its last checkpoint (from step 0 when it had
    none yet), with its own settings. Raises `TrainingRunning` when the run is still going (in
    this process or another), ValueError when it finished or never began."""
    from convsim.core import bases

    record = ws.store.model(model_id)
    if record.status == "ready":
        raise ValueError(f"model {model_id} has finished training; nothing to resume")
    never = ValueError(f"model {model_id} stopped before its training began: train again")
    if not Path(record.path).is_dir():
        raise never
    with training(record), _failing(ws, record):
        run_file = Path(record.path) / "run.json"
        if not run_file.is_file():
            raise never
        config = run_config(Path(record.path))
        model, tokenizer = bases.load_for_training(
            Path(record.base), ws.locations, progress=progress
        )
        assert record.dataset_id is not None
        train, validation, _ = ws.dataset_files(record.dataset_id)
        _set_status(ws, record, "training")
        examples = (train, validation)
        return _run(ws, record, model, tokenizer, examples, config, True, on_event, cancel)


@contextlib.contextmanager
def _failing(ws: Workspace, record: ModelRecord) -> Iterator[None]:
    """Mark `record` failed when the block raises (a full disk may refuse that write too: the
    error that stopped training is the news)."""
    try:
        yield
    except ModelForgotten:
        raise
    except BaseException as e:
        try:
            _set_status(ws, record, "failed")
        except ModelForgotten as forgotten:
            if isinstance(e, Exception):  # Ctrl-C stays Ctrl-C
                raise forgotten from e
        except Exception:
            pass
        raise


def _set_status(
    ws: Workspace, record: ModelRecord, status: str, metrics: dict[str, Any] | None = None
) -> None:
    """Record `status`; when the model was forgotten meanwhile (`convsim forget` of its person
    or chat while it trained), remove the files this run wrote, and raise `ModelForgotten`."""
    if not ws.store.update_model(record.id, status, metrics):
        shutil.rmtree(record.path, ignore_errors=True)
        raise ModelForgotten(record.id)


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
    trainer = Trainer(model, tokenizer, train, validation, config, folder, on_event, cancel)
    result = trainer.run(resume=resume)
    if result.cancelled:
        _set_status(ws, record, "cancelled", result.metrics)
        return TrainOutcome(ws.store.model(record.id), result, None)
    assert result.adapter_dir is not None
    gguf = write_lora_adapter(
        result.adapter_dir,
        Path(record.base),
        folder / "adapter.gguf",
        alpha=config.alpha,
        rank=config.rank,
    )
    _set_status(ws, record, "ready", result.metrics)
    return TrainOutcome(ws.store.model(record.id), result, gguf)
