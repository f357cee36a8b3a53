"""What an update learns from: feedback, the chat's newer sessions, and replay.

`gather` turns them into the example dicts of `training.preference.Update`:
- feedback no update has learnt yet: an edit (better, edited) is a pair, the better text over
  the reply; a thumbs up or a suggestion taken is a desirable reply, a thumbs down, a
  regenerate or a dismissed suggestion an undesirable one (weights in `feedback.WEIGHTS`);
  pairs the judge made (`judge.py`) join them;
- with `new_messages`, the person's turns in sessions of the chat newer than anything learnt
  (a newer export imported since), rendered with the first training's dataset settings; when
  there are at least three such sessions, the latest are held out as the new period's slice;
- replay: examples learnt before (the first training's, and each earlier kept update's new
  ones, `learned.jsonl` in its folder), drawn with a seed.

Contexts are cut to their last `context_turns` turns (`replay_turns` for replay): an update is
short and every token of context costs training time. Replay keeps less of it, so that the same
time replays more of what the person said.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convsim.core.data.dataset import DatasetConfig, build
from convsim.core.data.packing import example_fields
from convsim.core.data.turns import parse, render
from convsim.core.learning.feedback import DESIRABLE, PAIRED, WEIGHTS, Feedback, FeedbackItem
from convsim.core.training.versions import Version
from convsim.core.workspace import Workspace

__all__ = ["LEARNED_FILE", "Material", "gather"]

LEARNED_FILE = "learned.jsonl"
REPLAY_POOL = 2000  # at most this many earlier examples are candidates for replay


@dataclass
class Material:
    examples: list[dict[str, Any]]  # new material and replay, for `Update.prepare`
    validation: list[dict[str, Any]]  # the first training's held-out examples
    new_period: tuple[list[Any], list[Any]] | None  # (all learnt, new held-out) or None
    learned: list[dict[str, Any]]  # the new sessions' examples this update learns
    feedback_ids: list[int]
    learned_upto: int  # the newest message id learnt after this update
    counts: dict[str, int] = field(default_factory=dict)


def gather(
    ws: Workspace,
    model_id: str,
    first: tuple[list[Any], list[Any]],
    kept: list[Version],
    *,
    context_turns: int,
    replay_turns: int,
    new_messages: bool,
    replay: bool,
    seed: int,
    judged: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> Material:
    """The material of the next update of `model_id`, whose first training's (train,
    validation) examples are `first` and whose kept versions are `kept` (oldest first). Reads
    only."""
    record = ws.store.model(model_id)
    assert record.dataset_id is not None  # the caller read its files
    stored = ws.store.dataset(record.dataset_id)
    config = DatasetConfig.from_json(stored["config"])
    train, validation = first
    tag = config.tag_for(record.person)

    items = Feedback(ws.store).items(model_id, unused=True)
    speakers = {record.person: tag, model_id: tag}
    examples = [_from_feedback(item, speakers, context_turns) for item in items]
    examples += list(judged)
    counts = {
        "feedback": len(items),
        "pairs": sum(e["type"] == "pair" for e in examples),
        "unpaired": sum(e["type"] == "unpaired" for e in examples),
        "judged": len(judged),
    }

    learnt = [*train, *_learned(kept)]
    upto = max([_upto(train, validation)] + [int(v.record.get("learned_upto", 0)) for v in kept])
    fresh: list[Any] = []
    held: list[Any] = []
    if new_messages and record.chat_id is not None and ws.store.has_chat(record.chat_id):
        fresh, held = _new_sessions(ws, record.chat_id, config, upto)
    learned = [_text(ex, context_turns) for ex in fresh]
    examples += learned
    counts["new_messages"] = len(fresh)
    counts["new_held_out"] = len(held)

    pool = list(learnt)
    random.Random(seed).shuffle(pool)
    replayed = [{**_text(ex, replay_turns), "replay": True} for ex in pool[:REPLAY_POOL]]
    if replay:
        examples += replayed
    counts["replay_pool"] = len(replayed) if replay else 0
    everything = [*fresh, *held]
    ids = [getattr(ex, "target_id", None) or 0 for ex in everything]
    return Material(
        examples=examples,
        validation=[_text(ex, context_turns) for ex in validation],
        new_period=([*learnt, *fresh], held) if held else None,
        learned=learned,
        feedback_ids=[i.id for i in items],
        learned_upto=max([upto, *ids]),
        counts=counts,
    )


def _from_feedback(item: FeedbackItem, tags: dict[str, str], turns: int) -> dict[str, Any]:
    speaker = tags.get(item.speaker, item.speaker)  # the person's name -> their tag
    context = render(item.transcript[-turns:]) if turns else ""
    weight = WEIGHTS[item.kind]
    if item.kind in PAIRED:
        assert item.better is not None
        return {"type": "pair", "context": context, "weight": weight,
                "chosen": _turns(speaker, item.better),
                "rejected": _turns(speaker, item.reply)}  # fmt: skip
    return {"type": "unpaired", "context": context, "weight": weight,
            "reply": _turns(speaker, item.reply),
            "desirable": item.kind in DESIRABLE}  # fmt: skip


def _turns(speaker: str, text: str) -> str:
    """A reply of several messages ("\n" between them, as `Reply.text` joins them) as the
    several turns the persona writes them in."""
    return render((speaker, line) for line in text.split("\n") if line.strip())


def _text(ex: Any, turns: int) -> dict[str, Any]:
    context, target = example_fields(ex)
    kept = parse(context)[-turns:] if turns else []
    return {"type": "text", "context": render(kept), "target": target}


def _upto(*splits: list[Any]) -> int:
    ids = [0]
    for split in splits:
        for ex in split:
            ids.append(getattr(ex, "target_id", None) or 0)
            ids.extend(getattr(ex, "context_ids", ()) or ())
    return max(ids)


def _learned(kept: list[Version]) -> list[dict[str, Any]]:
    out = []
    for v in kept:
        path = Path(v.path) / LEARNED_FILE
        if v.version > 1 and path.is_file():
            out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return out


def _new_sessions(
    ws: Workspace, chat_id: int, config: DatasetConfig, upto: int
) -> tuple[list[Any], list[Any]]:
    """(to learn, to hold out): the person's examples after message `upto`, by session."""
    dataset = build(ws.store.messages(chat_id), config)
    new = [ex for ex in [*dataset.train, *dataset.validation] if (ex.target_id or 0) > upto]
    sessions = sorted({ex.session for ex in new})
    if len(sessions) < 3:
        return new, []
    held = set(sessions[-max(1, len(sessions) // 10) :])
    return [ex for ex in new if ex.session not in held], [ex for ex in new if ex.session in held]
