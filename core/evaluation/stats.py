"""Small statistics for the evaluation suite: bootstrap intervals and the two-sample KS
statistic, in numpy. Every function is seeded and deterministic."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "bootstrap",
    "bootstrap_two",
    "distinct_2",
    "grouped_mean_interval",
    "ks_statistic",
    "mean_interval",
    "percentile_interval",
]

BOOTSTRAP_SAMPLES = 1000


def bootstrap(
    n: int,
    statistic: Callable[[np.ndarray], float],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """The 95% percentile interval of `statistic(indices)` over `samples` resamples, with
    replacement, of the indices 0..n-1 (the statistic reads its own data by index)."""
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    return percentile_interval([statistic(rng.integers(0, n, n)) for _ in range(samples)])


def bootstrap_two(
    n: int,
    m: int,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """`bootstrap` for a statistic of two samples (sizes `n` and `m`), each resampled on its
    own: the 95% percentile interval of `statistic(indices_a, indices_b)`."""
    if n == 0 or m == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    pairs = ((rng.integers(0, n, n), rng.integers(0, m, m)) for _ in range(samples))
    return percentile_interval([statistic(a, b) for a, b in pairs])


def percentile_interval(statistics: Sequence[float]) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the finite values (NaN, NaN when there are none)."""
    values = np.array(statistics, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return (float("nan"), float("nan"))
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))


def mean_interval(values: Sequence[float] | np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The bootstrap 95% interval of the mean of `values`."""
    arr = np.asarray(values, dtype=float)
    return bootstrap(len(arr), lambda idx: float(arr[idx].mean()), seed=seed)


def grouped_mean_interval(
    values: Sequence[float] | np.ndarray, groups: Sequence[int], seed: int = 0
) -> tuple[float, float]:
    """`mean_interval` with the values resampled a group at a time (`groups[i]`: the group of
    value i, e.g. the moment a reply answered): values that go together vary together."""
    arr = np.asarray(values, dtype=float)
    if len(groups) != len(arr):
        raise ValueError(f"{len(groups)} groups for {len(arr)} values")
    index = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    at = np.array([index[g] for g in groups], dtype=int)
    sums = np.bincount(at, weights=arr, minlength=len(index))
    sizes = np.bincount(at, minlength=len(index)).astype(float)
    return bootstrap(len(index), lambda idx: float(sums[idx].sum() / sizes[idx].sum()), seed=seed)


def ks_statistic(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical
    distribution functions of `a` and `b` (0 = the same distribution, 1 = disjoint)."""
    x, y = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    if not len(x) or not len(y):
        return float("nan")
    points = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, points, side="right") / len(x)
    cdf_y = np.searchsorted(y, points, side="right") / len(y)
    return float(np.abs(cdf_x - cdf_y).max())


def distinct_2(messages: Sequence[str]) -> float:
    """Distinct word bigrams over all word bigrams of `messages` (bigrams within a message)."""
    grams = [
        (w[i], w[i + 1]) for m in messages for w in [m.lower().split()] for i in range(len(w) - 1)
    ]
    return len(set(grams)) / len(grams) if grams else float("nan")
