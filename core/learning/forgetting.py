"""Forgetting, measured and guarded: frozen held-out slices of every period a persona learnt.

A slice is a fixed set of held-out moments (`evaluation.heldout.Item`: the context, the
person's real reply, 19 replies by other people of the chat). The first is drawn from the
first training's held-out sessions; an update that learns newer sessions of the chat holds the
latest of them out as the slice of that period. Slices are written once, to `slices.json` in
the model's folder, and never redrawn: before and after are always measured on the same moments.

Each version is scored on every slice on llama.cpp, as users run it (`evaluation.ranking`):
held-out perplexity of the real replies, and Hits@1 of the real reply among the 20 (against
other people's messages). An update is promoted when no slice's perplexity rises by more than
`max_perplexity_rise` (relative) and no slice's Hits@1 drops by more than `max_hits_drop`
(`verdict`).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from convsim.core.evaluation.heldout import Item, material
from convsim.core.files import write_json

__all__ = ["Slice", "SliceScore", "frozen_slices", "score_slices", "verdict"]

SLICES_FILE = "slices.json"


@dataclass(frozen=True)
class Slice:
    name: str  # e.g. "sessions to 2025-03-20"
    tag: str  # the person's tag
    items: tuple[Item, ...]


@dataclass(frozen=True)
class SliceScore:
    """One row of the forgetting table."""

    slice: str
    items: int
    perplexity_before: float
    perplexity_after: float
    hits_at_1_before: float
    hits_at_1_after: float
    ok: bool = True

    @property
    def perplexity_change(self) -> float:
        """Relative: +0.03 is 3% worse."""
        return self.perplexity_after / self.perplexity_before - 1

    @property
    def hits_at_1_change(self) -> float:
        return self.hits_at_1_after - self.hits_at_1_before

    def to_json(self) -> dict[str, Any]:
        return {
            "slice": self.slice,
            "items": self.items,
            "perplexity_before": round(self.perplexity_before, 3),
            "perplexity_after": round(self.perplexity_after, 3),
            "perplexity_change": round(self.perplexity_change, 4),
            "hits_at_1_before": round(self.hits_at_1_before, 4),
            "hits_at_1_after": round(self.hits_at_1_after, 4),
            "hits_at_1_change": round(self.hits_at_1_change, 4),
            "ok": self.ok,
        }


def frozen_slices(
    folder: Path,
    first: tuple[Sequence[Any], Sequence[Any]],
    items: int,
    new_period: tuple[Sequence[Any], Sequence[Any]] | None = None,
    seed: int = 0,
) -> list[Slice]:
    """The model's slices (`folder/slices.json`), made on first use from `first` (the first
    training's (train, validation) examples); `new_period` adds the slice of a newly learnt
    period ((everything learnt, its held-out examples)). Written atomically."""
    path = folder / SLICES_FILE
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    slices = [_from_json(s) for s in saved]
    wanted = [first] if not slices else []
    if new_period is not None and new_period[1]:
        wanted.append(new_period)
    for train, validation in wanted:
        m = material(train, validation, limit=items, seed=seed)
        ex = validation[-1]
        last = str(ex.get("timestamp", "") if isinstance(ex, dict) else ex.timestamp)
        slices.append(Slice(f"sessions to {last[:10]}", m.tag, tuple(m.items)))
    if wanted:
        write_json(path, [_to_json(s) for s in slices])
    return slices


def score_slices(
    model: Any,
    slices: Sequence[Slice],
    *,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """{slice name: {"perplexity", "hits_at_1", "items"}} of `model` (an `inference.llama`
    LlamaModel with the version's adapter)."""
    from convsim.core.evaluation.ranking import rank

    total = sum(len(s.items) for s in slices)
    done = 0
    out = {}
    for s in slices:
        offset = done

        def step(n: int, _of: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + n, total)

        # Hits@1 is against other people's messages: the same-person pool is not scored.
        items = [replace(i, same_person=()) for i in s.items]
        ranked = rank(model, "", items, s.tag, cancel=cancel, progress=step)
        done += len(s.items)
        tokens = sum(r.tokens for r in ranked)
        out[s.name] = {
            "perplexity": math.exp(sum(r.nll for r in ranked) / max(1, tokens)),
            "hits_at_1": sum(r.rank_others == 1 for r in ranked) / max(1, len(ranked)),
            "items": float(len(ranked)),
        }
    return out


def verdict(
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    max_perplexity_rise: float,
    max_hits_drop: float,
) -> tuple[list[SliceScore], bool, str]:
    """The forgetting table, whether the update may be promoted, and why (or why not)."""
    table, problems = [], []
    for name, b in before.items():
        a = after[name]
        row = SliceScore(name, int(a["items"]), b["perplexity"], a["perplexity"],
                         b["hits_at_1"], a["hits_at_1"])  # fmt: skip
        bad = []
        if row.perplexity_change > max_perplexity_rise:
            bad.append(
                f"perplexity +{row.perplexity_change:.1%} (limit +{max_perplexity_rise:.0%})"
            )
        if -row.hits_at_1_change > max_hits_drop + 1e-9:
            bad.append(f"Hits@1 {row.hits_at_1_change * 100:+.0f} points "
                       f"(limit -{max_hits_drop * 100:.0f})")  # fmt: skip
        if bad:
            problems.append(f"{name}: {', '.join(bad)}")
        table.append(SliceScore(**{**asdict(row), "ok": not bad}))
    if problems:
        return table, False, "it forgot too much: " + "; ".join(problems)
    return table, True, "no slice got worse beyond the limits"


def _to_json(s: Slice) -> dict[str, Any]:
    return {"name": s.name, "tag": s.tag, "items": [asdict(i) for i in s.items]}


def _from_json(d: dict[str, Any]) -> Slice:
    items = tuple(
        Item(i["context"], i["reply"], i["timestamp"], tuple(i["others"]), tuple(i["same_person"]))
        for i in d["items"]
    )
    return Slice(d["name"], d["tag"], items)
