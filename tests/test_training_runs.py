"""Training runs through the workspace (core/training/runs.py) on a tiny random GGUF base:
continuing a finished model's adapter into a new model, and the typed errors on the way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from convsim.core.training import (
    AdapterMissing,
    ModelForgotten,
    ModelNotReady,
    TrainEvent,
    TrainingRunning,
    TrainOutcome,
    is_training,
    resume_training,
    train_person,
)
from convsim.core.workspace import SAMPLE_CHAT, Workspace
from convsim.tui.cli import main

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

        ws.store.update_model(first.model.id, "ready")
        run_json = Path(first.model.path) / "run.json"
        run_json.write_text('{"model_id": "sam-1", "person": ')  # cut short
        with pytest.raises(ValueError, match=f"{run_json}: cannot read the run's settings"):
            train_person(ws, chat, "Sam", start_from=first.model.id)


def test_exporting_a_model_whose_base_is_gone_says_so(tiny, tmp_path: Path, capsys) -> None:
    import shutil

    base = tmp_path / "bases" / "tiny.gguf"
    base.parent.mkdir()
    shutil.copy(tiny.gguf_path, base)
    home = tmp_path / "home"
    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        model = train_person(ws, report.chat_id, "Sam", base=str(base), overrides=FAST).model
    base.unlink()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONVSIM_HOME", str(home))
        assert main(["export", model.id, "--quant", "f16"]) == 2
    err = capsys.readouterr().err
    assert f"{base}: the base model {model.id} was trained on is missing" in err, err


def test_settings_an_older_version_saved_still_load(tmp_path: Path) -> None:
    """A run.json written before the settings' ranges were checked: a stray space in a module
    name (the trainer then gave that module no LoRA) and values new runs may not take."""
    from convsim.core.training.runs import run_config

    train = {"rank": 4, "alpha": 0.0, "learning_rate": 0.0, "dropout": 0.0,
             "target_modules": ["q_proj", " v_proj"]}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps({"train": train}), encoding="utf-8")
    config = run_config(tmp_path)
    assert config.target_modules == ["q_proj"] and config.learning_rate == 0.0
    with pytest.raises(ValueError, match="learning_rate must be a number above 0"):
        config.check_new()


def test_unknown_overrides_are_refused_before_any_work(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "home") as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        with pytest.raises(ValueError, match=r"unknown training setting: learning_rat \(valid"):
            train_person(ws, report.chat_id, "Sam", overrides={"learning_rat": 1e-3})
        assert ws.store.datasets() == [] and ws.store.models() == []
        # Bad values too, before the base is loaded and the model stored.
        with pytest.raises(ValueError, match="schedule must be cosine, linear or constant"):
            train_person(ws, report.chat_id, "Sam", base=str(tmp_path / "none.gguf"),
                         overrides={"schedule": "sometimes"})  # fmt: skip
        assert ws.store.models() == []


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


# --- two trainings at once (the app and a command) ------------------------------------------


def test_two_trainings_of_one_person_started_at_once_make_two_models(
    tiny, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id was picked, then the base loaded (about a minute), then the model stored: a
    second training meanwhile picked the same id, and the first then failed on it."""
    from convsim.core import bases

    load = bases.load_for_training
    others: list[TrainOutcome] = []
    calls: list[object] = []

    def load_while_another_trains(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:  # the first training: the second one starts and ends meanwhile
            with Workspace.open(home) as other:
                others.append(train_person(other, chat, "Sam", base=base, overrides=FAST))
        return load(*args, **kwargs)

    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        chat, base = report.chat_id, str(tiny.gguf_path)
        monkeypatch.setattr(bases, "load_for_training", load_while_another_trains)
        first = train_person(ws, chat, "Sam", base=base, overrides=FAST)
        (second,) = others
        assert (first.model.id, second.model.id) == ("sam-1", "sam-2")
        for outcome in (first, second):
            run = json.loads((Path(outcome.model.path) / "run.json").read_text())
            assert outcome.model.status == "ready" and run["model_id"] == outcome.model.id
        assert [(m.id, m.status) for m in ws.store.models()] == [
            ("sam-1", "ready"),
            ("sam-2", "ready"),
        ]


def test_a_model_that_is_training_is_not_resumed_a_second_time(
    tiny, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A status of "training" is also what a killed run leaves, and the app offers to resume
    it: a second trainer on a running one would overwrite its checkpoints."""
    seen: list[str] = []

    def on_event(event: TrainEvent) -> None:
        if event.kind != "step" or seen:
            return
        record = ws.store.model("sam-1")
        assert record.status == "training" and is_training(record)
        with Workspace.open(home) as other, pytest.raises(TrainingRunning) as caught:
            resume_training(other, "sam-1")
        seen.append(str(caught.value))
        assert main(["train", "--resume", "sam-1"]) == 2  # the command line says so too
        seen.append(capsys.readouterr().err)

    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        base = str(tiny.gguf_path)
        outcome = train_person(ws, report.chat_id, "Sam", base=base, overrides=FAST,
                               on_event=on_event)  # fmt: skip
        assert outcome.model.status == "ready" and not is_training(outcome.model)
    refused, err = seen
    assert refused.startswith("model sam-1 is training now (in the app or another `convsim")
    assert refused in err and "Traceback" not in err


# --- forgetting a person while their persona trains -----------------------------------------


def test_forgetting_a_person_whose_persona_is_training_is_refused(
    tiny, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trainer would go on writing the forgotten person's adapter and checkpoints."""
    refused: list[str] = []

    def on_event(event: TrainEvent) -> None:
        if event.kind == "step" and not refused:
            with Workspace.open(home) as other, pytest.raises(TrainingRunning) as caught:
                other.forget(other.forget_plan(person="Sam"))
            refused.append(str(caught.value))
            assert main(["forget", "person", "Sam", "--yes"]) == 2
            refused.append(capsys.readouterr().err)

    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        messages = len(ws.store.messages(report.chat_id))
        outcome = train_person(ws, report.chat_id, "Sam", base=str(tiny.gguf_path),
                               overrides=FAST, on_event=on_event)  # fmt: skip
        assert outcome.model.status == "ready"
        assert len(ws.store.messages(report.chat_id)) == messages
    said, err = refused
    assert said == "model sam-1 is training now (in the app or another `convsim train`): " + (
        "let it finish, or stop it there first"
    )
    assert f"{said}; nothing was removed" in err


def test_a_persona_whose_person_is_forgotten_as_it_trains_removes_its_files(
    tiny, home: Path
) -> None:
    """A forget confirmed after its plan was made (before the training began) still takes the
    new model's row; the run then removes what it wrote instead of leaving it behind."""
    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        plan = ws.forget_plan(person="Sam")  # shown, awaiting "yes"
        assert plan.models == []

        def on_event(event: TrainEvent) -> None:
            if event.kind == "step" and event.step == 1:
                with Workspace.open(home) as other:
                    other.forget(plan)  # the user says yes

        with pytest.raises(ModelForgotten, match="model sam-1 was forgotten while it trained"):
            train_person(ws, report.chat_id, "Sam", base=str(tiny.gguf_path), overrides=FAST,
                         on_event=on_event)  # fmt: skip
        assert ws.store.models() == [] and not (ws.locations.models / "sam-1").exists()


def test_a_run_that_died_before_its_first_checkpoint_resumes_from_the_start(
    tiny, home: Path
) -> None:
    """Nothing was saved to continue from: resume trains from step 0 with the run's settings
    (it said "no checkpoint to resume from" and marked the model failed)."""
    from safetensors.torch import load_file

    def die(event: TrainEvent) -> None:
        if event.kind == "step":
            raise RuntimeError("killed")

    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        chat, base = report.chat_id, str(tiny.gguf_path)
        with pytest.raises(RuntimeError, match="killed"):
            train_person(ws, chat, "Sam", base=base, overrides=FAST, on_event=die)
        (died,) = ws.store.models()
        assert died.status == "failed" and not (Path(died.path) / "checkpoint").exists()
        events: list[TrainEvent] = []
        resumed = resume_training(ws, died.id, on_event=events.append)
        assert resumed.model.status == "ready" and events[0].kind == "start"
        assert events[0].step == 0 and events[0].message.startswith(
            "no checkpoint was saved: from the first step; "
        )
        whole = train_person(ws, chat, "Sam", base=base, overrides=FAST)
        adapters = [load_file(Path(o.model.path) / "adapter" / "adapter_model.safetensors")
                    for o in (resumed, whole)]  # fmt: skip
        assert adapters[0].keys() == adapters[1].keys()
        assert all(adapters[0][k].equal(adapters[1][k]) for k in adapters[0])
