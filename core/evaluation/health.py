"""Does a forever conversation stay alive? Diversity, repeats and loops of long self-chats,
beside the same figures on the real chat.

Every figure is measured per block of `BLOCK` consecutive messages and averaged, so a 500-turn
conversation and a long real chat compare directly:
- `distinct_2`: distinct word bigrams over all word bigrams (within messages);
- `exact_repeats`: share of messages whose normalised text already appeared in the block;
- `loop_rate`: share of messages that loop on the few before them (`inference.loops.is_loop`).
The conversation runs as the app's does, with loop breaking on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from convsim.core.evaluation.stats import distinct_2
from convsim.core.inference.loops import loop_rate, normalise

if TYPE_CHECKING:
    from convsim.core.data.turns import Turn
    from convsim.core.inference.engine import Engine, Sampling

__all__ = ["BLOCK", "block_figures", "forever_health"]

BLOCK = 100


def block_figures(messages: Sequence[str]) -> dict[str, float]:
    """distinct_2, exact_repeats and loop_rate per block of `BLOCK` messages, averaged."""
    blocks = [messages[i : i + BLOCK] for i in range(0, len(messages), BLOCK)]
    blocks = [b for b in blocks if len(b) >= min(BLOCK, len(messages))]
    figures: dict[str, list[float]] = {"distinct_2": [], "exact_repeats": [], "loop_rate": []}
    for block in blocks:
        seen: set[str] = set()
        repeats = 0
        for m in block:
            key = normalise(m)
            repeats += key in seen
            seen.add(key)
        figures["distinct_2"].append(distinct_2(block))
        figures["exact_repeats"].append(repeats / len(block))
        figures["loop_rate"].append(loop_rate(block))
    return {k: float(np.nanmean(v)) if v else float("nan") for k, v in figures.items()}


def forever_health(
    engine: Engine,
    start: Sequence[Turn],
    speakers: Sequence[str],
    sampling: Sampling,
    real_messages: Sequence[str],
    *,
    turns: int = 500,
    seeds: int = 3,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float | int]:
    """`seeds` forever conversations of `turns` turns among `speakers` after `start`, and the
    figures of their messages against those of `real_messages` (the chat, in order)."""
    runs: list[dict[str, float]] = []
    done, total = 0, turns * seeds
    for k in range(seeds):
        s = replace(sampling, seed=(sampling.seed or 0) + 1000 * k, best_of=1)
        messages = []
        for _, text in engine.forever(start, speakers, s, turns, cancel):
            messages.append(text)
            done += 1
            if progress is not None:
                progress(done, total)
        if cancel is not None and cancel.is_set():
            break
        runs.append(block_figures(messages))
    real = block_figures(real_messages)
    out: dict[str, float | int] = {"turns": turns, "seeds": len(runs)}
    for name in ("distinct_2", "exact_repeats", "loop_rate"):
        measured = [r[name] for r in runs if r[name] == r[name]]  # NaN: no word pairs
        out[name] = float(np.mean(measured)) if measured else float("nan")
        out[f"real_{name}"] = real[name]
    return out
