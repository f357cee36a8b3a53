"""What the evaluation suite measures on: the person's held-out moments and the texts around
them, read from a persona's dataset and the store.

Contract: `material(...)` is deterministic for a seed. Held-out means the dataset's validation
split (its latest sessions): nothing of it was trained on. Every item is a moment with a
context (a session's opening message has none to reply to, so it is left out) and the
person's real reply; distractors for ranking are drawn per item from two pools, the other
people's messages and the person's own messages at other moments, never the true reply's text
nor a text of the item's own context.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convsim.core.data.packing import example_fields
from convsim.core.data.style import turn_sizes
from convsim.core.data.turns import Turn, parse, tag_of

__all__ = ["DISTRACTORS", "Item", "Material", "material", "trained_texts"]

DISTRACTORS = 19  # the true reply against 19 others: Hits@1 out of 20


@dataclass(frozen=True)
class Item:
    """One held-out moment: the rendered context, the person's real reply, its distractors."""

    context: str  # `[Tag] text\n` turns
    reply: str  # the person's real message (text only)
    timestamp: str
    others: tuple[str, ...]  # texts by other people in the chat
    same_person: tuple[str, ...]  # texts by the person at other moments

    @property
    def turns(self) -> list[Turn]:
        return parse(self.context)


@dataclass(frozen=True)
class Material:
    tag: str  # the person's tag, as the model learnt it
    items: list[Item]
    train_texts: list[str]  # the person's trained-on messages (for prompts and style)
    real_turn_sizes: list[int]  # messages per turn of the person in the held-out sessions
    other_tags: list[str]  # the other people of the held-out sessions, most active first
    heldout_replies: list[str]  # every held-out message of the person
    heldout_others: list[str]  # every held-out message of the other people
    heldout_ids: set[int]  # store ids of the held-out messages (context and replies)


def of_model(
    ws: Any, model_id: str, *, limit: int | None = None, seed: int = 0
) -> tuple[Material, Path, Path]:
    """`material` of the dataset `model_id` was trained on, with the paths of its base GGUF and
    its adapter GGUF; ValueError for a model without a dataset."""
    from convsim.core.training import adapter_gguf

    record = ws.store.model(model_id)
    if record.dataset_id is None:
        raise ValueError(f"model {model_id} has no dataset to evaluate on")
    adapter = adapter_gguf(ws, model_id)
    train, validation, _ = ws.dataset_files(record.dataset_id)
    m = material(train, validation, limit=limit, seed=seed)
    return m, Path(record.base), adapter


def trained_texts(ws: Any, model_id: str) -> list[str]:
    """The person's messages `model_id` was trained on (the style best-of-N aims at); [] for
    a model without a dataset."""
    record = ws.store.model(model_id)
    if record.dataset_id is None:
        return []
    train, _, _ = ws.dataset_files(record.dataset_id)
    return [_body(example_fields(ex)[1]) for ex in train]


def _body(rendered: str) -> str:
    return rendered[len(tag_of(rendered)) :].strip()


def material(
    train: Sequence[Any], validation: Sequence[Any], *, limit: int | None = None, seed: int = 0
) -> Material:
    """The held-out items (at most `limit`, spread evenly over the validation split) and their
    surroundings. Raises ValueError when there is nothing held out to measure on."""
    if not validation:
        raise ValueError("no held-out messages: the chat has too few sessions to hold one out")
    tag = tag_of(example_fields(validation[0])[1])[1:-1]
    others: dict[str, None] = {}
    heldout_others: dict[str, None] = {}
    speakers: dict[str, int] = {}
    sequence: dict[int, str] = {}  # store id -> who wrote it, over the held-out sessions
    for ex in list(train) + list(validation):
        for name, text in parse(example_fields(ex)[0]):
            if name != tag and text.strip():
                others[text.strip()] = None
    for ex in validation:
        context, target = example_fields(ex)
        names = [name for name, _ in parse(context)]
        for name, text in parse(context):
            speakers[name] = speakers.get(name, 0) + (name != tag)
            if name != tag and text.strip():
                heldout_others[text.strip()] = None
        for msg_id, name in zip(getattr(ex, "context_ids", ()) or (), names, strict=False):
            sequence[msg_id] = name
        if getattr(ex, "target_id", None) is not None:
            sequence[ex.target_id] = tag
    own = [_body(example_fields(ex)[1]) for ex in validation]
    own += [_body(example_fields(ex)[1]) for ex in train]
    with_context = [ex for ex in validation if example_fields(ex)[0].strip()]
    if limit is not None and len(with_context) > limit:
        step = len(with_context) / limit
        with_context = [with_context[int(i * step)] for i in range(limit)]
    rng = random.Random(seed)
    other_pool, own_pool = list(others), list(dict.fromkeys(t for t in own if t))
    items = []
    for ex in with_context:
        context, target = example_fields(ex)
        reply = _body(target)
        seen = {text.strip() for _, text in parse(context)} | {reply}
        items.append(
            Item(
                context=context,
                reply=reply,
                timestamp=str(getattr(ex, "timestamp", "")),
                others=tuple(_draw(rng, other_pool, seen)),
                same_person=tuple(_draw(rng, own_pool, seen)),
            )
        )
    if not items:
        raise ValueError("no held-out replies with a context to reply to")
    order = [sequence[k] for k in sorted(sequence)]
    return Material(
        tag=tag,
        items=items,
        train_texts=[_body(example_fields(ex)[1]) for ex in train],
        real_turn_sizes=turn_sizes(order, tag),
        other_tags=[n for n, c in sorted(speakers.items(), key=lambda kv: -kv[1]) if c],
        heldout_replies=[_body(example_fields(ex)[1]) for ex in validation],
        heldout_others=list(heldout_others),
        heldout_ids=set(sequence),
    )


def _draw(rng: random.Random, pool: list[str], exclude: set[str]) -> list[str]:
    """DISTRACTORS texts of `pool` not in `exclude` (fewer only if the pool is that small)."""
    picked: list[str] = []
    for text in rng.sample(pool, min(len(pool), DISTRACTORS * 3)):
        if text not in exclude and text not in picked:
            picked.append(text)
        if len(picked) == DISTRACTORS:
            break
    return picked
