"""Who wrote this? Two small text classifiers of the evaluation suite, in numpy.

`NaiveBayes` is a multinomial naive Bayes over hashed character 1-4-grams (case kept: casing is
style) plus a few style tokens (length bucket, emoji, question...). It is what the suite uses
for *authorship* (the person against everyone else in the store) and for *real or generated*
(the person's real held-out replies against a variant's generated ones, cross-validated).
Naive Bayes is fast and strong on short texts with little data, which is what a chat gives.

Contract: deterministic; `fit` then `log_odds` (> 0: the first class). `cross_validated` returns,
for every text, whether it was classified right when its fold was held out.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from convsim.core.data.style import features

__all__ = ["DIMENSION", "NaiveBayes", "cross_validated", "grams"]

DIMENSION = 1 << 18  # hashed feature space


def grams(text: str) -> list[int]:
    """Hashed features of `text`: character 1-4-grams of " text " and style tokens."""
    padded = f" {text} "
    keys = [padded[i : i + n] for n in (1, 2, 3, 4) for i in range(len(padded) - n + 1)]
    f = features(text)
    keys += [
        f"\x00len{min(int(f['length']).bit_length(), 6)}",
        f"\x00emoji{min(int(f['emoji']), 2)}",
        f"\x00lower{int(f['lowercase'])}",
        f"\x00q{int(f['question'])}",
        f"\x00laugh{int(f['laughter'])}",
    ]
    return [zlib.crc32(k.encode("utf-8")) % DIMENSION for k in keys]


class NaiveBayes:
    """Multinomial naive Bayes over `grams`, with add-`alpha` smoothing and equal priors (the
    classes are judged on their text alone, whatever their sizes)."""

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha
        self.weights = np.zeros(DIMENSION)

    def fit(self, first: Sequence[str], second: Sequence[str]) -> NaiveBayes:
        counts = [np.zeros(DIMENSION), np.zeros(DIMENSION)]
        for cls, texts in enumerate((first, second)):
            for text in texts:
                np.add.at(counts[cls], grams(text), 1.0)
        logp = [np.log((c + self.alpha) / (c.sum() + self.alpha * DIMENSION)) for c in counts]
        self.weights = logp[0] - logp[1]
        return self

    def log_odds(self, text: str) -> float:
        """log P(text | first) - log P(text | second), per feature averaged so that long and
        short texts are on one scale."""
        ids = grams(text)
        return float(self.weights[ids].mean()) if ids else 0.0

    def probability(self, text: str) -> float:
        """P(first | text) with equal priors, on the length-averaged log-odds (a score on
        [0, 1], comparable across texts; not a calibrated probability)."""
        return float(1.0 / (1.0 + np.exp(-8.0 * self.log_odds(text))))


def cross_validated(
    first: Sequence[str], second: Sequence[str], folds: int = 5, seed: int = 0
) -> tuple[list[bool], list[bool]]:
    """Whether each text of `first` and of `second` is classified right by a classifier
    trained on the other folds (`folds`-fold, a seeded split of each class)."""
    rng = np.random.default_rng(seed)
    fold_of = [rng.permutation(len(texts)) % folds for texts in (first, second)]
    right: list[list[bool]] = [[False] * len(first), [False] * len(second)]
    for k in range(folds):
        train = [
            [t for t, f in zip(texts, fold_of[c], strict=True) if f != k]
            for c, texts in enumerate((first, second))
        ]
        if not train[0] or not train[1]:
            continue
        model = NaiveBayes().fit(train[0], train[1])
        for c, texts in enumerate((first, second)):
            for i, text in enumerate(texts):
                if fold_of[c][i] == k:
                    odds = model.log_odds(text)
                    right[c][i] = odds > 0 if c == 0 else odds <= 0
    return right[0], right[1]
