"""Training runs through the workspace (core/training/runs.py) on a tiny random GGUF base:
continuing a finished model's adapter into a new model, and the typed errors on the way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convsim.core.training import AdapterMissing, ModelNotReady, train_person
from convsim.core.workspace import SAMPLE_CHAT, Workspace

pytest.importorskip("torch")
pytest.importorskip("peft")

FAST = {
    "steps": 2,
    "seq_len": 64,
    "batch_size": 2,
    "rank": 4,
    "alpha": 8.0,
    "eval_every": 0,
    "eval_rows": 2,
    "samples": 0,
    "checkpoint_every": 0,
}


def test_a_finished_model_continues_into_a_new_one(tiny, tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "home") as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        chat = report.chat_id
        first = train_person(ws, chat, "Sam", base=str(tiny.gguf_path), overrides=FAST)
        assert first.model.status == "ready" and first.adapter_gguf is not None

        again = train_person(
            ws, chat, "Sam", start_from=first.model.id, overrides={"steps": 1, "seq_len": 64}
        )
        run = json.loads((Path(again.model.path) / "run.json").read_text())
        assert again.model.status == "ready" and again.model.id != first.model.id
        assert run["start_from"] == first.model.id and again.model.base == first.model.base
        # The adapter's shape and scale come from the model it continues, not the defaults.
        assert (run["train"]["rank"], run["train"]["alpha"]) == (4, 8.0)
        assert run["train"]["init_adapter"] == str(Path(first.model.path) / "adapter")

        with pytest.raises(ValueError, match="cannot continue on"):
            train_person(ws, chat, "Sam", base=str(tmp_path / "other.gguf"),
                         start_from=first.model.id)  # fmt: skip
        ws.store.update_model(first.model.id, "cancelled")
        with pytest.raises(ModelNotReady, match=f"model {first.model.id} is not ready"):
            train_person(ws, chat, "Sam", start_from=first.model.id)
        ws.store.update_model(again.model.id, "ready")
        (Path(again.model.path) / "adapter" / "adapter_model.safetensors").unlink()
        with pytest.raises(AdapterMissing) as caught:
            train_person(ws, chat, "Sam", start_from=again.model.id)
        assert caught.value.person == "Sam" and caught.value.chat_id == chat


def test_unknown_overrides_are_refused_before_any_work(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "home") as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        with pytest.raises(ValueError, match=r"unknown training setting: learning_rat \(valid"):
            train_person(ws, report.chat_id, "Sam", overrides={"learning_rat": 1e-3})
        assert ws.store.datasets() == [] and ws.store.models() == []


def test_speaker_tags_are_the_renames_the_model_was_trained_with(tmp_path: Path) -> None:
    from convsim.core.data.dataset import DatasetConfig
    from convsim.core.store.records import ModelRecord
    from convsim.core.training import speaker_tags

    with Workspace.open(tmp_path / "home") as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        config = DatasetConfig(target="Sam", tags={"Sam": "S", "Riya": "R"})
        dataset = ws.build_dataset(report.chat_id, config)
        record = ModelRecord("s-1", report.chat_id, dataset.id, "Sam", "b.gguf", "0" * 64,
                             "2026-11-29T10:00:00", "ready", str(tmp_path))  # fmt: skip
        assert speaker_tags(ws, record) == {"Sam": "S", "Riya": "R"}
        assert speaker_tags(ws, ModelRecord(**{**record.__dict__, "dataset_id": None})) == {}
