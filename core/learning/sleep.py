"""The consolidation job ("sleep"): one update of a persona, from material to a new version.

Stages, each reported as a `LearnEvent`:
1. material: the feedback no update has learnt yet, the chat's sessions newer than anything
   learnt, and replay drawn from what was learnt before (`material.py`);
2. reference: the current version's log-probabilities of every preference example (the
   reference of DPO and KTO), and its scores on the frozen slices unless an earlier update
   recorded them;
3. train: the current version's adapter continued on the mix, learning rate warmed up again
   (`training.preference.Update` through the ordinary loop: checkpoints, stop, resume);
4. score: the new version on every frozen slice; `forgetting.verdict` decides promotion.

The new version is recorded whatever the verdict (`training.versions`): promoted, it becomes
the one the chat uses; not promoted, the user sees why and may keep it anyway
(`versions.use_version`). A stopped update is resumable; a failed one stays failed. Either
way the chat keeps the previous version. An update holds the model's training lock
(`workspace.training`): a second update of it at once is refused, and so is forgetting it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from convsim.core.config import Config
from convsim.core.files import write_json
from convsim.core.learning.forgetting import SliceScore, frozen_slices, score_slices, verdict
from convsim.core.learning.material import gather
from convsim.core.store import ModelRecord
from convsim.core.training import TrainEvent
from convsim.core.training.versions import Version, add_version, current, finish_version, versions
from convsim.core.workspace import Workspace, training

__all__ = ["LearnEvent", "LearnOutcome", "LearnSettings", "NothingToLearn", "learn"]


class NothingToLearn(ValueError):
    """No feedback and no new messages since the last update."""


@dataclass
class LearnSettings(Config):
    """How an update learns and when it is promoted. Saved in the version's record."""

    setting_kind: ClassVar[str] = "learning"

    replay: float = 0.4  # share of every batch drawn from what was learnt before (0 = none)
    beta: float = 0.5  # temperature of the preference losses (DPO, KTO)
    preference_weight: float = 1.0  # weight of the preference loss beside next messages
    replay_weight: float = 4.0  # weight of a replay token beside a new one (the pull back)
    epochs: float = 1.0  # passes over the new material
    learning_rate: float | None = None  # None: a quarter of the first training's rate
    warmup_steps: int = 4  # the learning rate warms up again from zero
    batch_size: int = 4  # items per step (each: new material plus its replay)
    seq_len: int = 256  # tokens per item row
    context_turns: int = 2  # turns of context kept before each message learnt
    replay_turns: int = 0  # ... and before each message replayed (0: the message alone)
    new_messages: bool = True  # learn the chat's sessions newer than what was learnt
    slice_items: int = 16  # held-out moments per frozen slice
    max_perplexity_rise: float = 0.03  # promote only if no slice's perplexity rises more
    max_hits_drop: float = 0.02  # ... and no slice's Hits@1 drops more (0.02 = 2 points)
    judge: bool = False  # ask the configured endpoint to make pairs (needs a constitution)
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.replay < 1:
            raise ValueError(f"replay must be a share from 0 to below 1, not {self.replay}")
        if self.epochs <= 0 or self.batch_size < 1 or self.seq_len < 32:
            raise ValueError("epochs must be > 0, batch_size >= 1 and seq_len >= 32")
        if self.replay_weight < 0 or self.context_turns < 0 or self.replay_turns < 0:
            raise ValueError("replay_weight, context_turns and replay_turns must be >= 0")


@dataclass(frozen=True)
class LearnEvent:
    """Progress. `stage`: material, reference, train, score, done or cancelled; `train` holds
    the training loop's event during the train stage."""

    stage: str
    message: str = ""
    done: int = 0
    total: int = 0
    train: TrainEvent | None = None


@dataclass
class LearnOutcome:
    model_id: str
    version: int  # the new version
    status: str  # done or cancelled
    promoted: bool
    reason: str  # why it was or was not promoted
    table: list[SliceScore] = field(default_factory=list)  # forgetting, slice by slice
    counts: dict[str, int] = field(default_factory=dict)  # what it learnt from
    seconds: float = 0.0
    current: int = 1  # the version the chat uses now

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "version": self.version,
            "status": self.status,
            "promoted": self.promoted,
            "reason": self.reason,
            "current": self.current,
            "counts": self.counts,
            "forgetting": [s.to_json() for s in self.table],
            "seconds": round(self.seconds, 1),
        }


# An update's learning rate against the first training's: it refines a persona, on little
# material, and must not undo what the first training learnt.
UPDATE_RATE = 0.25
MATERIAL_FILE = "material.json"
REFERENCE_FILE = "reference.json"
SCORES_FILE = "scores.json"
VALIDATION_ITEMS = 32  # held-out examples of the first period in the loop's validation loss


def learn(
    ws: Workspace,
    model_id: str,
    *,
    settings: LearnSettings | None = None,
    resume: bool = False,
    on_event: Callable[[LearnEvent], None] | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[Any], None] | None = None,
) -> LearnOutcome:
    """One update of `model_id` (see the module docstring). `resume` continues the newest
    stopped update with its own settings. Raises `NothingToLearn`, training's `ModelNotReady`,
    and ValueError for a model without a dataset or nothing to resume. `progress` gets the
    base model's preparation events (`bases.BaseModelProgress`)."""
    from convsim.core.training.errors import ModelNotReady

    record = ws.store.model(model_id)
    if record.status != "ready":
        raise ModelNotReady(model_id, record.status)
    # One trainer per model (a second update refused with `TrainingRunning`), and no forgetting
    # of the model while it learns.
    with training(record):
        return _learn(ws, record, settings, resume, on_event, cancel, progress)


def _learn(
    ws: Workspace,
    record: ModelRecord,
    settings: LearnSettings | None,
    resume: bool,
    on_event: Callable[[LearnEvent], None] | None,
    cancel: threading.Event | None,
    progress: Callable[[Any], None] | None,
) -> LearnOutcome:
    started = time.perf_counter()
    say = on_event or (lambda e: None)
    cancel = cancel or threading.Event()
    model_id = record.id
    first = _first(ws, model_id)  # the dataset files, read once for the whole update
    if resume:
        version, settings, m = _stopped(ws, model_id)
    else:
        settings = settings or LearnSettings()
        version, m = _begin(ws, model_id, first, settings, say, cancel)
    parent = versions(ws.store, model_id)[version.record["parent"] - 1]
    try:
        slices = frozen_slices(Path(record.path), first, settings.slice_items,
                               _period(m.get("new_period")), settings.seed)  # fmt: skip
        before = _scores(ws, model_id, parent, slices, settings, say, cancel)
        result = _train(ws, model_id, version, parent, settings, m, resume, say, cancel, progress)
        if result is None:
            raise _Stopped
        after = _scores(ws, model_id, version, slices, settings, say, cancel)
    except _Stopped:
        finish_version(ws.store, model_id, version.version, "cancelled", version.record, False)
        say(LearnEvent("cancelled", "stopped; resume to continue"))
        return LearnOutcome(model_id, version.version, "cancelled", False, "stopped",
                            counts=m["counts"], seconds=time.perf_counter() - started,
                            current=current(ws.store, model_id).version)  # fmt: skip
    except BaseException:
        with contextlib.suppress(Exception):
            state = "cancelled" if cancel.is_set() else "failed"
            finish_version(ws.store, model_id, version.version, state, version.record, False)
        raise
    table, promoted, reason = verdict(before, after, settings.max_perplexity_rise,
                                      settings.max_hits_drop)  # fmt: skip
    seconds = time.perf_counter() - started
    rows = [row.to_json() for row in table]
    done = {**version.record, "promoted": promoted, "reason": reason, "metrics": result,
            "forgetting": rows, "seconds": round(seconds, 1)}  # fmt: skip
    finish_version(ws.store, model_id, version.version, "done", done, kept=promoted)
    now = current(ws.store, model_id).version
    say(LearnEvent("done", reason))
    return LearnOutcome(model_id, version.version, "done", promoted, reason, table,
                        m["counts"], seconds, now)  # fmt: skip


def _begin(
    ws: Workspace,
    model_id: str,
    first: tuple[list[Any], list[Any]],
    settings: LearnSettings,
    say: Callable[[LearnEvent], None],
    cancel: threading.Event,
) -> tuple[Version, dict[str, Any]]:
    """Gather the material and open a new version for it (its folder holds the material, so
    a stopped update resumes on exactly the same examples)."""
    parent = current(ws.store, model_id)
    every = versions(ws.store, model_id)
    kept = [v for v in every if v.kept and v.status == "done" and v.version <= parent.version]
    say(LearnEvent("material", "gathering feedback, new messages and replay"))
    judged: list[dict[str, Any]] = []
    if settings.judge:
        judged = _judged(ws, model_id, first[0], parent, settings, say, cancel)
    m = gather(ws, model_id, first, kept, context_turns=settings.context_turns,
               replay_turns=settings.replay_turns, new_messages=settings.new_messages,
               replay=settings.replay > 0, seed=settings.seed, judged=judged)  # fmt: skip
    if not (m.counts["feedback"] or m.counts["new_messages"] or judged):
        raise NothingToLearn(
            f"nothing new to learn for {model_id}: no feedback since the last update and no"
            " newer messages in its chat (give feedback in the chat, or import a newer export)"
        )
    record = {"parent": parent.version, "settings": settings.to_json(), "counts": m.counts,
              "learned_upto": m.learned_upto, "feedback_ids": m.feedback_ids}  # fmt: skip
    version = add_version(ws.store, model_id, record)
    saved = {"examples": m.examples, "validation": m.validation[:VALIDATION_ITEMS],
             "learned": m.learned, "feedback_ids": m.feedback_ids, "counts": m.counts,
             "new_period": _period_json(m.new_period)}  # fmt: skip
    write_json(version.path / MATERIAL_FILE, saved)
    return version, saved


def _stopped(ws: Workspace, model_id: str) -> tuple[Version, LearnSettings, dict[str, Any]]:
    stopped = [v for v in versions(ws.store, model_id)[1:] if v.status in ("cancelled", "training")]
    if not stopped or not (stopped[-1].path / MATERIAL_FILE).is_file():
        raise ValueError(f"{model_id} has no stopped update to resume")
    version = stopped[-1]
    m = json.loads((version.path / MATERIAL_FILE).read_text(encoding="utf-8"))
    return version, LearnSettings.from_json(version.record["settings"]), m


def _train(
    ws: Workspace,
    model_id: str,
    version: Version,
    parent: Version,
    settings: LearnSettings,
    m: dict[str, Any],
    resume: bool,
    say: Callable[[LearnEvent], None],
    cancel: threading.Event,
    progress: Callable[[Any], None] | None,
) -> dict[str, Any] | None:
    """Train the new version's adapter and write its GGUF; its metrics, None when stopped."""
    from convsim.convert.adapter import write_lora_adapter
    from convsim.core import bases
    from convsim.core.learning.material import LEARNED_FILE
    from convsim.core.training.preference import Update
    from convsim.core.training.runs import run_config
    from convsim.core.training.trainer import TrainConfig, Trainer

    record = ws.store.model(model_id)
    first = run_config(Path(record.path))
    config = TrainConfig(
        rank=first.rank, alpha=first.alpha, target_modules=first.target_modules,
        learning_rate=settings.learning_rate or first.learning_rate * UPDATE_RATE,
        warmup_steps=settings.warmup_steps, epochs=settings.epochs, seq_len=settings.seq_len,
        batch_size=settings.batch_size, eval_every=0, checkpoint_every=25, samples=0,
        seed=settings.seed, device=first.device, threads=settings.threads, objective="update",
        init_adapter=str(parent.adapter_dir),
    )  # fmt: skip
    model, tokenizer = bases.load_for_training(Path(record.base), ws.locations, progress=progress)
    objective = Update(settings.replay, settings.beta, settings.preference_weight,
                       settings.replay_weight)  # fmt: skip
    trainer = Trainer(model, tokenizer, m["examples"], m["validation"], config, version.path,
                      lambda e: say(LearnEvent("train", train=e)), cancel, objective)  # fmt: skip
    reference = version.path / REFERENCE_FILE
    if resume and reference.is_file():  # computed before the stop: only what is missing
        objective.ref = json.loads(reference.read_text(encoding="utf-8"))
    say(LearnEvent("reference", "scoring the feedback with the current version"))
    write_json(reference, objective.reference(trainer.model, trainer.train_rows, trainer.setup))
    result = trainer.run(resume=resume and (version.path / "checkpoint").exists())
    if result.cancelled or result.adapter_dir is None:
        return None
    write_lora_adapter(result.adapter_dir, Path(record.base), version.adapter_gguf,
                       alpha=config.alpha, rank=config.rank)  # fmt: skip
    from convsim.core.files import write_jsonl

    write_jsonl(version.path / LEARNED_FILE, m["learned"])
    metrics = {k: v for k, v in result.metrics.items() if k != "history"}
    return {**metrics, "loss": result.metrics["history"]["loss"]}


def _scores(
    ws: Workspace,
    model_id: str,
    version: Version,
    slices: list[Any],
    settings: LearnSettings,
    say: Callable[[LearnEvent], None],
    cancel: threading.Event,
) -> dict[str, dict[str, float]]:
    """`version`'s scores on every slice: those it has (`scores.json` in its folder), and the
    missing ones measured now on llama.cpp and added there."""
    from convsim.core.inference.llama import LlamaModel

    path = version.path / SCORES_FILE
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    missing = [s for s in slices if s.name not in known]
    if missing:
        record = ws.store.model(model_id)
        say(LearnEvent("score", f"measuring version {version.version} on the held-out slices"))
        model = LlamaModel(Path(record.base), [(version.adapter_gguf, 1.0)], n_ctx=2048,
                           threads=settings.threads)  # fmt: skip
        try:
            report = lambda d, t: say(LearnEvent("score", f"version {version.version}", d, t))  # noqa: E731
            known.update(score_slices(model, missing, cancel=cancel, progress=report))
        finally:
            model.close()
        if cancel.is_set():
            raise _Stopped
        write_json(path, known)
    return {s.name: known[s.name] for s in slices}


class _Stopped(Exception):
    """The user stopped the update; it is recorded as cancelled, to resume."""


def _first(ws: Workspace, model_id: str) -> tuple[list[Any], list[Any]]:
    record = ws.store.model(model_id)
    if record.dataset_id is None:
        raise ValueError(f"model {model_id} has no dataset: an update needs its examples")
    train, validation, _ = ws.dataset_files(record.dataset_id)
    return train, validation


def _period_json(period: tuple[list[Any], list[Any]] | None) -> Any:
    if period is None:
        return None
    from convsim.core.learning.material import _text

    return [[_text(ex, 10**6) | {"timestamp": _stamp(ex)} for ex in split] for split in period]


def _stamp(ex: Any) -> str:
    return str(ex.get("timestamp", "") if isinstance(ex, dict) else ex.timestamp)


def _period(saved: Any) -> tuple[list[Any], list[Any]] | None:
    return (saved[0], saved[1]) if saved else None


def _judged(
    ws: Workspace,
    model_id: str,
    train: list[Any],
    parent: Version,
    settings: LearnSettings,
    say: Callable[[LearnEvent], None],
    cancel: threading.Event,
) -> list[dict[str, Any]]:
    """Pairs from the configured judge at moments of the chat the persona learnt."""
    import random

    from convsim.core.data.turns import parse
    from convsim.core.inference.engine import Engine, Sampling
    from convsim.core.learning.judge import judge_pairs

    record = ws.store.model(model_id)
    picked = random.Random(settings.seed).sample(list(train), min(JUDGED_MOMENTS, len(train)))
    moments = []
    for ex in picked:
        context = parse(ex.context)[-settings.context_turns :]
        moments.append((context, ex.target[1 : ex.target.index("]")]))
    engine = Engine(Path(record.base), [(parent.adapter_gguf, 1.0)], threads=settings.threads)
    sampling = Sampling(seed=settings.seed, best_of=2)

    def draw(transcript: Any, speaker: str) -> list[str]:
        reply = engine.simulate(transcript, speaker, sampling, cancel).result()
        return [text for text, _ in reply.candidates] or reply.messages

    try:
        report = lambda d, t: say(LearnEvent("material", "asking the judge", d, t))  # noqa: E731
        return judge_pairs(ws, model_id, moments, draw, cancel=cancel, progress=report)
    finally:
        engine.close()


JUDGED_MOMENTS = 32
