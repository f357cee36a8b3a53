"""Calibration: how hard a vector can push before the persona stops sounding like itself.

The strength (a multiple of the vector) is swept both ways over `GRID` on llama.cpp, the
runtime users chat on, steering the reply only, as the engine does, and then again at
`REFINE` points inside the grid step where each side's limit was crossed. At each strength:
- the perplexity of the person's real replies after their real contexts (held-out ones and the
  latest earlier ones: `build.calibration_contexts`), and
- the share of degenerate generated replies (`degenerate`: a token repeated in a run, a
  repeated phrase, a stray special token, broken text).
The usable range on each side ends where, going outwards, either limit is first crossed:
- the perplexity rise above unsteered, as a one-sided `CONFIDENCE` bootstrap bound over the
  contexts (resampled alike at every strength), passes `MAX_PPL_RISE`. A range that only the
  pooled rise kept inside the limit often went past it on other moments of the same chat (for
  four of the sample persona's five built-in vectors, in 35-68% of random splits of its
  held-out moments): the last grid strength that passes on a few dozen moments is often one
  that passed by luck. Between the last strength that passes and the first that does not,
  the end is where the straight line between their bounds meets the limit. Where the rise
  grows faster than a straight line (it was convex in the strength in every sweep measured),
  the end is on the safe side of it (the refined strengths bring the two close: with only the
  grid, a fitted brief vector's range ended at a rise of 4%);
- more than `MAX_DEGENERATE` of replies degenerate: the end is the last strength before.
A slider at +1 (-1) is that strength towards the positive (negative) pole.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convsim.core.inference.engine import ends_message
from convsim.core.inference.llama import LlamaModel
from convsim.core.steering.pairs import Context

GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)  # strengths tried on each side
REFINE = (0.25, 0.5, 0.75)  # then these shares of the grid step where a side's limit is crossed
MAX_PPL_RISE = 0.10
MAX_DEGENERATE = 0.02
CONFIDENCE = 0.95  # the rise that this share of resampled context sets stays under
RESAMPLES = 400
REPLY_TOKENS = 24  # longest generated reply checked for degeneration
_SPECIAL = re.compile(r"<(?:unused\d+|start_of_turn|end_of_turn|pad|eos|bos|mask|unk)>|\ufffd")


@dataclass(frozen=True)
class Point:
    strength: float  # signed: negative is towards the negative pole
    perplexity: float
    degenerate: float  # share of generated replies
    replies: tuple[str, ...] = ()  # the generated replies, context by context
    nll: tuple[float, ...] = ()  # per context: the negative log-likelihood of its real reply
    tokens: tuple[int, ...] = ()  # per context: the real reply's scored tokens

    def to_json(self) -> dict[str, float]:
        return {"strength": self.strength, "perplexity": self.perplexity,
                "degenerate": self.degenerate}  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    positive: float  # usable strength towards the positive pole (slider +1)
    negative: float  # usable strength towards the negative pole (slider -1), as a size
    baseline: float  # perplexity without steering
    points: list[Point] = field(default_factory=list)

    def strength(self, value: float) -> float:
        """The strength of slider position `value` (-1..1; outside it is clipped)."""
        value = max(-1.0, min(1.0, value))
        return value * (self.positive if value >= 0 else self.negative)


def degenerate(text: str, tokens: Sequence[int]) -> bool:
    """Whether a generated reply has collapsed: one token 4+ times in a row, a 2-3 token
    phrase repeated 3+ times in a row, most of a long reply being the same few tokens, or a
    special token or broken character in the text."""
    if _SPECIAL.search(text):
        return True
    for n, times in ((1, 4), (2, 3), (3, 3)):
        for i in range(len(tokens) - n * times + 1):
            gram = tuple(tokens[i : i + n])
            if all(tuple(tokens[i + k * n : i + (k + 1) * n]) == gram for k in range(times)):
                return True
    return len(tokens) >= 16 and len(Counter(tokens)) / len(tokens) < 0.35


@dataclass
class _Tally:
    nll: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    replies: int = 0
    broken: int = 0
    texts: list[str] = field(default_factory=list)


def sweep(
    model: LlamaModel,
    contexts: Sequence[Context],
    rows: np.ndarray,
    band: tuple[int, int],
    strengths: Sequence[float],
    *,
    generate: int | None = None,
    seed: int = 0,
    reply_tokens: int = REPLY_TOKENS,
    score: bool = True,
    progress: Callable[[int, int], None] | None = None,
    logit_bias: np.ndarray | None = None,
) -> list[Point]:
    """Perplexity of the real replies (pooled, and per context) and the degenerate share of
    `generate` sampled replies (default: one per context) at each strength. `rows` are the
    vector's rows for blocks 1 on (`rows[i]` is added to block i + 1), steering blocks
    `band`. With `score=False` only replies are sampled (perplexity NaN). `logit_bias`
    (n_vocab floats) is added to the logits of the reply's tokens, scored and sampled alike."""
    tallies = {s: _Tally() for s in strengths}
    generate = len(contexts) if generate is None else generate
    for k, c in enumerate(contexts):
        prompt = model.tokenize(c.prompt)
        full = model.tokenize(c.prompt + c.reply)
        steer_from = len(model.tokenize(c.turns))
        scored_from = min(len(prompt), len(full) - 1)
        for i, s in enumerate(strengths):
            _set(model, rows, band, s)
            t = tallies[s]
            if score:
                keep = 0 if i == 0 else steer_from
                lps = model.token_logprobs(full, scored_from, keep, steer_from, logit_bias)
                t.nll.append(-sum(lps))
                t.tokens.append(len(lps))
            if k < generate:
                text, ids = _reply(model, prompt, steer_from, seed + k, reply_tokens, logit_bias)
                t.texts.append(text)
                t.replies += 1
                t.broken += degenerate(text, ids)
        if progress is not None:
            progress(k + 1, len(contexts))
    model.set_control_vector(None)
    return [
        Point(
            s,
            math.exp(sum(t.nll) / max(1, sum(t.tokens))) if score else math.nan,
            t.broken / max(1, t.replies),
            tuple(t.texts),
            tuple(t.nll),
            tuple(t.tokens),
        )
        for s, t in tallies.items()
    ]


def _set(model: LlamaModel, rows: np.ndarray, band: tuple[int, int], strength: float) -> None:
    if strength == 0:
        model.set_control_vector(None)
    else:
        model.set_control_vector(rows * strength, band[0], band[1])


def _reply(
    model: LlamaModel,
    prompt: list[int],
    steer_from: int,
    seed: int,
    cap: int,
    logit_bias: np.ndarray | None = None,
) -> tuple[str, Any]:
    """One sampled reply to the end of its line (at most `cap` tokens)."""
    ids: list[int] = []
    gen = model.generate(
        prompt, seed=seed, temperature=0.7, top_k=40, top_p=0.95, min_p=0.05,
        repeat_penalty=1.1, presence_penalty=0.0, frequency_penalty=0.0, steer_from=steer_from,
        logit_bias=logit_bias,
    )  # fmt: skip
    try:
        for token in gen:
            if model.is_eog(token):
                break
            ids.append(token)
            if ends_message(model.detokenize([token])) or len(ids) >= cap:
                break
    finally:
        gen.close()
    return model.detokenize(ids).decode("utf-8", "replace").rstrip("\n"), ids


def rise_bounds(points: Sequence[Point], seed: int = 0) -> dict[float, float]:
    """strength -> the perplexity ratio to strength 0 that `CONFIDENCE` of `RESAMPLES`
    resamples of the contexts stay under (each resample takes the same contexts at every
    strength; a ratio that is not finite counts as infinite). A sweep without per-context
    scores gives its pooled ratios; ValueError when the points' contexts disagree."""
    by = {p.strength: p for p in points}
    if 0.0 not in by:
        raise ValueError("the sweep must include strength 0 (no steering)")
    base = by[0.0]
    if not any(p.nll for p in points):
        return {p.strength: _finite(p.perplexity / base.perplexity) for p in points}
    n = len(base.nll)
    if any(len(p.nll) != n or len(p.tokens) != n for p in points) or not sum(base.tokens):
        raise ValueError("every point of the sweep needs scores for the same contexts")
    picks = np.random.default_rng(seed).integers(0, n, (RESAMPLES, n))
    tokens = np.maximum(np.asarray(base.tokens)[picks].sum(axis=1), 1)
    base_nll = np.asarray(base.nll)[picks].sum(axis=1)
    bounds = {}
    with np.errstate(invalid="ignore", over="ignore"):
        for p in points:
            ratios = np.exp((np.asarray(p.nll)[picks].sum(axis=1) - base_nll) / tokens)
            ratios[~np.isfinite(ratios)] = np.inf
            bound = float(np.quantile(ratios, CONFIDENCE))  # NaN: between two infinities
            bounds[p.strength] = math.inf if math.isnan(bound) else bound
    return bounds


def _finite(ratio: float) -> float:
    return ratio if math.isfinite(ratio) else math.inf


def usable(points: Sequence[Point]) -> Calibration:
    """The usable range from a sweep that includes strength 0 (see the module docstring)."""
    bounds = rise_bounds(points)
    limits = [_side(points, bounds, sign)[0] for sign in (1, -1)]
    base = next(p.perplexity for p in points if p.strength == 0.0)
    return Calibration(limits[0], limits[1], base, sorted(points, key=lambda p: p.strength))


def _side(
    points: Sequence[Point], bounds: dict[float, float], sign: int
) -> tuple[float, tuple[float, float] | None]:
    """Going outwards on one side (`sign`): the end of the usable range, and the strengths
    (unsigned) between which it was found, the last inside and the first past a limit (None
    when no strength swept passes one)."""
    by = {p.strength: p for p in points}
    top = 1 + MAX_PPL_RISE
    end, last = 0.0, 1.0  # the last strength inside, and its bound
    for s in sorted(abs(p.strength) for p in points if p.strength * sign > 0):
        bound = bounds[s * sign]
        if by[s * sign].degenerate > MAX_DEGENERATE:
            return end, (end, s)
        if bound > top:  # an infinite bound adds nothing
            inside = end
            end += math.floor(100 * (s - end) * (top - last) / (bound - last)) / 100
            return end, (inside, s)
        end, last = s, bound
    return end, None


def calibrate(
    model: LlamaModel,
    contexts: Sequence[Context],
    rows: np.ndarray,
    band: tuple[int, int],
    *,
    grid: Sequence[float] = GRID,
    generate: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Sweep `grid` both ways over `contexts`, then `REFINE` strengths inside the step of the
    grid where each side's limit was crossed, and find the usable range."""
    if not contexts:
        raise ValueError("no contexts to calibrate on")
    coarse = [0.0, *grid, *(-s for s in grid)]
    total = len(contexts) * (len(coarse) + 2 * len(REFINE))

    def done(before: int, per_context: int) -> Callable[[int, int], None]:
        return lambda k, _n: progress(before + k * per_context, total) if progress else None

    points = sweep(model, contexts, rows, band, coarse, generate=generate,
                   progress=done(0, len(coarse)))  # fmt: skip
    bounds = rise_bounds(points)
    fine = []
    for sign in (1, -1):
        _, step = _side(points, bounds, sign)
        if step is not None:
            a, b = step
            fine += [sign * round(a + q * (b - a), 4) for q in REFINE]
    if fine:
        points += sweep(model, contexts, rows, band, fine, generate=generate,
                        progress=done(len(contexts) * len(coarse), len(fine)))  # fmt: skip
    if progress is not None and len(fine) < 2 * len(REFINE):  # a side needed no second look
        progress(total, total)
    return usable(points)
