"""Do generated replies read like the person? Style match, authorship, and real-or-generated.

- `style_match`: per style feature (`data.style.FEATURES`, plus messages per turn), the
  two-sample KS statistic and the relative error of the mean, generated against real; the
  per-message features over what was written (`data.style.written`: a photo, sticker or call
  placeholder is no message to measure; it still counts in its turn). `style_intervals`: the
  bootstrap 95% interval of each feature's KS. `style_versus`: per feature, one variant's KS
  less another's on the same moments, with a paired interval: whether a closer figure is
  closer beyond what other samples of the same size would change.
- `Authorship`: a classifier of the person against everyone else in the store (held-out
  sessions excluded); a reply's score is placed on the scale 0 = other people's held-out
  messages (floor), 1 = the person's own held-out messages (ceiling).
- `detector`: a classifier trained to tell the real held-out replies from generated ones,
  cross-validated, in balanced rounds that use every generated reply; 0.5 accuracy means they
  cannot be told apart. `detector_accuracy`: its accuracy on generated turns, with an interval
  that resamples a real reply's rounds, and a moment's replies, together.

Contract: deterministic for a seed; figures are plain floats, and every per-reply value is
returned too so the suite can bootstrap intervals over replies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convsim.core.data.style import FEATURES, features, written
from convsim.core.evaluation.classify import NaiveBayes, cross_validated
from convsim.core.evaluation.stats import (
    BOOTSTRAP_SAMPLES,
    bootstrap_two,
    grouped_mean_interval,
    ks_statistic,
    percentile_interval,
)

__all__ = [
    "MAX_MESSAGES",
    "STYLE_FEATURES",
    "Authorship",
    "detector",
    "detector_accuracy",
    "message_moments",
    "style_intervals",
    "style_match",
    "style_versus",
]

MAX_MESSAGES = 4  # a generated turn may hold this many messages (real turns are clipped to it)
STYLE_FEATURES = (*FEATURES, "messages_per_turn")


def style_match(
    generated: Sequence[Sequence[str]], real: Sequence[str], real_turn_sizes: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Per feature: `ks` (KS statistic), `relative_error` (|mean generated - mean real| /
    mean real; the absolute difference when the real mean is 0), and both means."""
    per_turn, ref = _style_values(generated, real, real_turn_sizes)
    gen = {name: np.concatenate([np.empty(0), *turns]) for name, turns in per_turn.items()}
    out = {}
    for name in STYLE_FEATURES:
        g = float(np.mean(gen[name])) if len(gen[name]) else float("nan")
        r = float(np.mean(ref[name])) if len(ref[name]) else float("nan")
        out[name] = {
            "ks": ks_statistic(gen[name], ref[name]),
            "relative_error": abs(g - r) / r if r else abs(g - r),
            "generated_mean": g,
            "real_mean": r,
        }
    return out


def style_intervals(
    generated: Sequence[Sequence[str]],
    real: Sequence[str],
    real_turn_sizes: Sequence[int],
    seed: int = 0,
    *,
    moments: Sequence[int] | None = None,
) -> dict[str, tuple[float, float]]:
    """Per feature: the bootstrap 95% interval of `style_match`'s KS, the generated replies
    resampled a moment at a time (`moments[j]`: the moment turn j answers; by default each turn
    its own: a turn's messages, and the replies to one moment, go together) and the real
    messages (real turn sizes, for messages per turn) on their own. A KS on resampled data is
    biased upwards, so the interval tells how far the figure moves with other samples, not
    where 0 lies."""
    per_turn, ref = _style_values(generated, real, real_turn_sizes)
    order = list(range(len(generated))) if moments is None else list(moments)
    if len(order) != len(generated):
        raise ValueError(f"{len(order)} moments for {len(generated)} generated turns")
    keys = list(dict.fromkeys(order))
    out = {}
    for name in STYLE_FEATURES:
        units, values = _by_moment(per_turn[name], order, keys), ref[name]
        out[name] = bootstrap_two(len(units), len(values), _ks_of(units, values), seed=seed)
    return out


def style_versus(
    generated: Sequence[Sequence[str]],
    moments: Sequence[int],
    other: Sequence[Sequence[str]],
    other_moments: Sequence[int],
    real: Sequence[str],
    real_turn_sizes: Sequence[int],
    seed: int = 0,
) -> dict[str, tuple[float, tuple[float, float]]]:
    """Per feature: `generated`'s KS to the real replies less `other`'s (negative: `generated`
    is closer), both answering the same moments (`moments[j]`, `other_moments[j]`: the moment
    turn j answers), and the bootstrap 95% interval of that difference, paired: each resample
    draws the moments once for both (a moment's replies go together) and the real messages
    once. An interval wholly below 0 means closer beyond what other samples of these sizes
    would change; wholly above 0, farther; across 0, undecided."""
    if len(moments) != len(generated) or len(other_moments) != len(other):
        raise ValueError("one moment per generated turn is needed for both variants")
    mine, ref = _style_values(generated, real, real_turn_sizes)
    theirs, _ = _style_values(other, real, real_turn_sizes)
    keys = sorted(set(moments) | set(other_moments))
    out = {}
    for name in STYLE_FEATURES:
        a = _by_moment(mine[name], moments, keys)
        b = _by_moment(theirs[name], other_moments, keys)
        values = ref[name]
        if not len(values) or not keys:
            out[name] = (float("nan"), (float("nan"), float("nan")))
            continue
        difference = ks_statistic(np.concatenate(a), values) - ks_statistic(
            np.concatenate(b), values
        )
        rng = np.random.default_rng(seed)
        samples = []
        for _ in range(BOOTSTRAP_SAMPLES):
            picked = rng.integers(0, len(keys), len(keys))
            r = values[rng.integers(0, len(values), len(values))]
            samples.append(
                ks_statistic(np.concatenate([a[i] for i in picked]), r)
                - ks_statistic(np.concatenate([b[i] for i in picked]), r)
            )
        out[name] = (difference, percentile_interval(samples))
    return out


def _by_moment(
    per_turn: list[np.ndarray], moments: Sequence[int], keys: Sequence[int]
) -> list[np.ndarray]:
    """The values of each moment's turns, one array per key, in the keys' order (empty for a
    moment not answered)."""
    grouped: dict[int, list[np.ndarray]] = {k: [np.empty(0)] for k in keys}
    for values, moment in zip(per_turn, moments, strict=True):
        grouped[moment].append(values)
    return [np.concatenate(grouped[k]) for k in keys]


def _ks_of(
    units: list[np.ndarray], values: np.ndarray
) -> Callable[[np.ndarray, np.ndarray], float]:
    """The KS statistic of the units (a moment's values each) and the values at the indices."""
    return lambda a, b: ks_statistic(
        np.concatenate([np.empty(0), *(units[i] for i in a)]), values[b]
    )


def _style_values(
    generated: Sequence[Sequence[str]], real: Sequence[str], real_turn_sizes: Sequence[int]
) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    """Per feature: the generated values turn by turn (messages per turn: one value for each
    turn that has a message), and the real values."""
    turns = [[features(w) for m in turn if (w := written(m))] for turn in generated]
    ref_f = [features(w) for m in real if (w := written(m))]
    per_turn = {name: [np.array([f[name] for f in t], float) for t in turns] for name in FEATURES}
    ref = {name: np.array([f[name] for f in ref_f], float) for name in FEATURES}
    per_turn["messages_per_turn"] = [np.array([len(t)] if t else [], float) for t in generated]
    ref["messages_per_turn"] = np.array([min(n, MAX_MESSAGES) for n in real_turn_sizes], float)
    return per_turn, ref


@dataclass
class Authorship:
    """The person against everyone else: `fit` on their trained-on messages and other people's
    messages, then `scale` replies between the floor and the ceiling."""

    floor: float = 0.0
    ceiling: float = 1.0
    model: Any = None

    @classmethod
    def fit(
        cls,
        person: Sequence[str],
        others: Sequence[str],
        heldout_person: Sequence[str],
        heldout_others: Sequence[str],
    ) -> Authorship:
        model = NaiveBayes().fit(person, others)
        floor = float(np.mean([model.probability(t) for t in heldout_others]))
        ceiling = float(np.mean([model.probability(t) for t in heldout_person]))
        return cls(floor, ceiling, model)

    def scores(self, texts: Sequence[str]) -> list[float]:
        """Each text on the floor (0) to ceiling (1) scale; may fall outside it."""
        span = self.ceiling - self.floor
        if span <= 0:
            return [float("nan")] * len(texts)
        return [(self.model.probability(t) - self.floor) / span for t in texts]


def detector(
    real: Sequence[str], generated: Sequence[str], seed: int = 0
) -> tuple[list[bool], list[int]]:
    """Whether each judged text was told apart right, and which text it was (i < len(real):
    `real[i]`; len(real) + j: `generated[j]`). Texts are judged in rounds of equal numbers of
    each, 5-fold cross-validated: n = the smaller side's size; the generated texts, shuffled
    (seeded), make as many rounds of n as they fill (fewer than n left over sit out), each
    against the same n real ones (subsampled, seeded, when there are more). More generated
    replies, more rounds: a steadier figure, still 0.5 at chance."""
    n = min(len(real), len(generated))
    if n == 0:
        return [], []
    rng = np.random.default_rng(seed)
    pick_real = [int(i) for i in sorted(rng.choice(len(real), n, replace=False))]
    order = rng.permutation(len(generated))
    right: list[bool] = []
    which: list[int] = []
    for k in range(len(generated) // n):
        pick_gen = [int(j) for j in sorted(order[k * n : (k + 1) * n])]
        right_real, right_gen = cross_validated(
            [real[i] for i in pick_real], [generated[j] for j in pick_gen], seed=seed + k
        )
        right += right_real + right_gen
        which += pick_real + [len(real) + j for j in pick_gen]
    return right, which


def message_moments(turns: Sequence[Sequence[str]], moments: Sequence[int]) -> list[int]:
    """The moment of each message of `turns` (turn j answers moment `moments[j]`), in order."""
    return [k for k, t in zip(moments, turns, strict=True) for _ in t]


def detector_accuracy(
    real: Sequence[str], turns: Sequence[Sequence[str]], moments: Sequence[int], seed: int = 0
) -> tuple[float, tuple[float, float], int]:
    """`detector`'s accuracy on the messages of generated `turns` (turn j answers moment
    `moments[j]`) against the `real` replies, its bootstrap 95% interval (a real reply, judged
    once a round, is one draw, and so are all the replies to one moment) and how many texts
    were judged."""
    if len(moments) != len(turns):
        raise ValueError(f"{len(moments)} moments for {len(turns)} generated turns")
    messages = [x for t in turns for x in t]
    of_moment = message_moments(turns, moments)
    right, which = detector(real, messages, seed)
    if not right:
        return float("nan"), (float("nan"), float("nan")), 0
    n = len(real)
    groups = [w if w < n else n + of_moment[w - n] for w in which]
    return float(np.mean(right)), grouped_mean_interval(right, groups, seed), len(right)
