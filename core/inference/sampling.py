"""Sampling settings (`Sampling`), shared by every surface, and the one rule for their values
(`sampling_problem`): the app's sampling panel and the command line both refuse what it refuses."""

from __future__ import annotations

import math
from dataclasses import dataclass

WHOLE = frozenset({"top_k", "seed", "max_tokens", "best_of"})  # the settings that count
# The largest value each setting takes (a count: what llama.cpp's C int holds; a float: any).
MOST = {"top_p": 1, "min_p": 1, "seed": 2**32 - 1, "top_k": 2**31 - 1, "max_tokens": 2**31 - 1,
        "best_of": 2**31 - 1}  # fmt: skip


@dataclass
class Sampling:
    """Sampling controls, shared by every surface."""

    # The defaults sample the persona's own distribution, uncut: the cuts (top-k, top-p,
    # min-p) and a repeat penalty leave out the person's rarer habits and make replies easier
    # to tell from theirs (README, Results: "sampling without cuts").
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # keep the k most likely tokens (0 = all)
    top_p: float = 1.0  # nucleus: keep the smallest set with this much probability (1 = all)
    min_p: float = 0.0  # drop tokens below this share of the top token's probability
    # The penalties look at the message being written (its last 64 tokens), not the prompt.
    repeat_penalty: float = 1.0  # >1 discourages tokens already in the message
    presence_penalty: float = 0.0  # flat penalty on any token already present
    frequency_penalty: float = 0.0  # penalty growing with how often a token appeared
    seed: int | None = None  # None = a fresh random seed per call
    max_tokens: int = 64  # length cap of one message, in tokens
    best_of: int = 1  # persona replies: sample this many and keep the best (see `best_of`)


def sampling_problem(name: str, value: float | None) -> str | None:
    """What is wrong with `value` as the setting `name` ("must be ..."), or None if nothing is.
    None is only a value for the seed (a fresh random one each time)."""
    if value is None:
        return None if name == "seed" else "must be given"
    if name in WHOLE and not isinstance(value, int):
        return f"must be a whole number, not {value}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a number, not {value}"
    least = 1 if name in ("max_tokens", "best_of") else 0
    if value < least:
        return f"must be {least} or more, not {value}"
    most = MOST.get(name)
    if most is not None and value > most:
        return f"must be {most} or less, not {value}"
    return None
