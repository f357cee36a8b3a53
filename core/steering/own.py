"""Contrast pairs from the persona's own replies (`method="own"`), for `fit` to fit on.

After each real moment a pair needs, the persona (base + its LoRA, on llama.cpp, unsteered)
samples `SAMPLES` replies, as the calibration samples one. The sentence-embedding model that
memory search uses (all-MiniLM-L6-v2, shipped in a wheel; not the persona) ranks them along the
axis: each reply's embedding is projected on the difference between the mean embeddings of the
axis's positive and negative texts (a built-in axis's or a pairs file's replies, or the two pole
descriptions). The furthest reply each way make the pair. A moment whose samples are all the
same text (or empty) gives no pair; the next moments are sampled until there are enough.

Why: the written pairs ("i'm so happy about it") are things the persona rarely says; fitted on
two things the persona does say after the same moment, a vector moves between replies the
person might send. On the quickstart persona this moved happy further within the same
perplexity limit, and the wrong way less often (benchmarks/RESULTS.md). Unlike written pairs,
the two replies differ in more than the trait; the direction the fit starts from, its band and
its sign still come from the written pairs (`directions`), and many pairs average the rest out.

The ranking is a different model from the sentiment lexicon `benchmarks/steering.py` scores
with (VADER), so the benchmark does not judge its own training signal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from convsim.core.steering import calibrate
from convsim.core.steering.axes import Axis
from convsim.core.steering.pairs import Context, Pair, PairsError, reply_text

if TYPE_CHECKING:
    from convsim.core.inference.llama import LlamaModel

SAMPLES = 8  # replies sampled after each moment
SEED = 77_000  # sample k of moment j is drawn with seed SEED + 1000 * k + j


def probe(embedder: Any, axis: Axis) -> np.ndarray:
    """The axis as a direction in the embedding space: mean positive minus mean negative
    embedding of its replies (of its two pole descriptions when it has none)."""
    if axis.replies:
        positive = [p for p, _ in axis.replies]
        negative = [q for _, q in axis.replies]
    else:
        positive, negative = [axis.positive], [axis.negative]
    return embedder.embed(positive).mean(axis=0) - embedder.embed(negative).mean(axis=0)


def rank(
    embedder: Any, direction: np.ndarray, context: Context, replies: Sequence[str]
) -> Pair | None:
    """The pair (furthest along `direction`, furthest against it) of `replies` after
    `context`, or None when no two of its non-empty texts differ along it."""
    texts = sorted({" ".join(r.split()) for r in replies} - {""})
    if len(texts) < 2:
        return None
    score = embedder.embed(texts) @ direction
    if score.max() == score.min():
        return None
    best, worst = texts[int(np.argmax(score))], texts[int(np.argmin(score))]
    return Pair(context.prompt, reply_text(best), reply_text(worst))


def own_pairs(
    llm: LlamaModel,
    embedder: Any,
    axis: Axis,
    contexts: Sequence[Context],
    n: int,
    progress: Callable[[int, int], None] | None = None,
    samples: int = SAMPLES,
) -> list[Pair]:
    """`n` pairs of the persona's own replies after `contexts`, taken in order (fewer when the
    contexts run out first; PairsError when they give none). `progress(done, total)` counts
    sampled replies."""
    direction = probe(embedder, axis)
    found: list[Pair] = []
    start = 0
    while len(found) < n and start < len(contexts):
        chunk = list(contexts[start : start + n - len(found)])

        def counted(done: int, total: int, before: int = samples * start) -> None:
            if progress is not None:
                progress(before + done, before + total)

        for context, replies in zip(
            chunk, sample(llm, chunk, samples, start, counted), strict=True
        ):
            pair = rank(embedder, direction, context, replies)
            if pair is not None:
                found.append(pair)
        start += len(chunk)
    if not found:
        raise PairsError("the persona's sampled replies were all alike along the axis: no pairs")
    return found


def sample(
    llm: LlamaModel,
    contexts: Sequence[Context],
    samples: int,
    first: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[str]]:
    """`samples` replies of the unsteered persona after each of `contexts` (reply k after
    context j with seed SEED + 1000 * k + first + j, `first` being j's offset in a longer run)."""
    out: list[list[str]] = [[] for _ in contexts]
    for k in range(samples):

        def done(i: int, n: int, k: int = k) -> None:
            if progress is not None:
                progress(k * n + i, samples * n)

        # Strength 0: no vector is set (its rows are never read); replies only, no scoring.
        (point,) = calibrate.sweep(
            llm, contexts, np.zeros((0, 0), np.float32), (1, 1), [0.0],
            seed=SEED + 1000 * k + first, score=False, progress=done,
        )  # fmt: skip
        for replies, text in zip(out, point.replies, strict=True):
            replies.append(text)
    return out
