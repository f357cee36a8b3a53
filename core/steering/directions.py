"""Directions in the persona's hidden states, computed in torch from contrast pairs.

For each pair, the output of every decoder block is averaged over the reply's tokens (padding
and context excluded) for both replies; their difference is what the trait changes. Per block:
- `mean` (default): the mean difference over the training pairs;
- `pca`: the first principal direction of the differences, scaled to the mean difference's
  length along it and signed to agree with it.
(`fit.fit` can then move the band's rows by gradient: method "fit".)
The sign is checked on held-out pairs (`agreement`: the share of held-out differences that
point the vector's way) and each block's separation is measured there (`separation`: Cohen's d
of the held-out replies' projections, positive minus negative). Steering uses a contiguous band
of blocks chosen from those measurements (`choose_band`), never block 0 (llama.cpp cannot
steer it) nor the last quarter.

Block outputs are read with forward hooks on the blocks (transformers' `hidden_states[i + 1]`
for every block but the last, whose entry there is already normalised); llama.cpp adds
`direction.i` to the same place (`tests/test_steering.py` checks the two agree).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convsim.core.steering.pairs import Pair

BATCH = 8
BAND_SHARE = 0.6  # a block joins the band if it separates at least this share as well as the best


@dataclass(frozen=True)
class Directions:
    vectors: np.ndarray  # n_blocks x n_embd; row i for block i (row 0 and rows off-band: zero)
    separation: np.ndarray  # n_blocks: held-out Cohen's d per block (0 for block 0)
    agreement: np.ndarray  # n_blocks: held-out share of differences pointing the vector's way
    band: tuple[int, int]  # first and last steered block
    method: str


def decoder_layers(model: Any) -> Any:
    """The decoder blocks of a causal LM (transformers), in order."""
    for name, module in model.named_modules():
        if name.endswith("layers") and module.__class__.__name__ == "ModuleList":
            return module
    raise ValueError("cannot find the decoder blocks of this model")


def reply_means(
    model: Any,
    tokenizer: Any,
    texts: Sequence[tuple[str, str]],
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """For each (prompt, reply): every block's output averaged over the reply's tokens
    (len(texts) x n_blocks x n_embd, float32). The LM head is never run."""
    import torch

    layers = decoder_layers(model)
    captured: list[Any] = [None] * len(layers)

    def hook(index: int) -> Callable[..., None]:
        def keep(_module: Any, _inputs: Any, output: Any) -> None:
            captured[index] = output[0] if isinstance(output, tuple) else output

        return keep

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    body = model.get_decoder() if hasattr(model, "get_decoder") else model
    out = []
    try:
        for lo in range(0, len(texts), BATCH):
            chunk = texts[lo : lo + BATCH]
            rows, spans = [], []
            for prompt, reply in chunk:
                ids = tokenizer(prompt + reply).input_ids
                start = _reply_start(tokenizer(prompt).input_ids, ids)
                rows.append(ids)
                spans.append((start, len(ids)))
            width = max(len(r) for r in rows)
            ids_t = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):
                ids_t[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            with torch.no_grad():
                body(input_ids=ids_t, attention_mask=mask)
            states = torch.stack(captured, dim=1).float()  # batch x blocks x tokens x embd
            for i, (a, b) in enumerate(spans):
                out.append(states[i, :, a:b].mean(dim=1).numpy())
            if progress is not None:
                progress(min(lo + BATCH, len(texts)), len(texts))
    finally:
        for handle in handles:
            handle.remove()
    return np.stack(out).astype(np.float32)


def _reply_start(prompt_ids: list[int], ids: list[int]) -> int:
    """Where the reply's tokens start: after the longest run of `ids` that the prompt's own
    tokens match (the last prompt token may merge with the reply's first), at most len-1."""
    n = 0
    for a, b in zip(prompt_ids, ids, strict=False):
        if a != b:
            break
        n += 1
    return min(n, len(ids) - 1)


def pair_differences(
    model: Any, tokenizer: Any, pairs: Sequence[Pair], progress: Callable[[int, int], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) reply means of each pair: two arrays pairs x blocks x embd."""
    texts = [(p.context, p.positive) for p in pairs] + [(p.context, p.negative) for p in pairs]
    means = reply_means(model, tokenizer, texts, progress)
    return means[: len(pairs)], means[len(pairs) :]


def directions(
    train: tuple[np.ndarray, np.ndarray],
    held_out: tuple[np.ndarray, np.ndarray],
    method: str = "mean",
) -> Directions:
    """Directions from the training pairs' reply means, checked on the held-out ones."""
    if method not in ("mean", "pca"):
        raise ValueError(f"method must be 'mean' or 'pca', not {method!r}")
    diffs = train[0] - train[1]  # pairs x blocks x embd
    mean = diffs.mean(axis=0)
    vectors = mean.copy()
    if method == "pca":
        for b in range(diffs.shape[1]):
            _, _, vt = np.linalg.svd(diffs[:, b, :], full_matrices=False)
            axis = vt[0]
            along = float(mean[b] @ axis)
            vectors[b] = axis * along  # signed and scaled by the mean difference along it
    vectors[0] = 0.0
    separation, agreement = measure(vectors, held_out)
    band = choose_band(separation, agreement)
    # Each block's addition flows on through the blocks after it, so strength 1 spreads the
    # pairs' difference over the band instead of adding it once per block.
    out = np.zeros_like(vectors)
    out[band[0] : band[1] + 1] = vectors[band[0] : band[1] + 1] / (band[1] - band[0] + 1)
    return Directions(out.astype(np.float32), separation, agreement, band, method)


def measure(vectors: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> tuple[Any, Any]:
    """Per block: Cohen's d of the pairs' projections (positive minus negative, pooled
    standard deviation) and the share of pair differences with a positive projection."""
    blocks = vectors.shape[0]
    separation, agreement = np.zeros(blocks), np.zeros(blocks)
    for b in range(1, blocks):
        norm = float(np.linalg.norm(vectors[b]))
        if norm == 0:
            continue
        unit = vectors[b] / norm
        pos, neg = pairs[0][:, b] @ unit, pairs[1][:, b] @ unit
        spread = float(np.sqrt((pos.var() + neg.var()) / 2)) or 1e-9
        separation[b] = float(pos.mean() - neg.mean()) / spread
        agreement[b] = float(np.mean(pos - neg > 0))
    return separation, agreement


def choose_band(separation: np.ndarray, agreement: np.ndarray) -> tuple[int, int]:
    """A contiguous band of at most a third of the blocks, within the first three quarters
    (early and middle blocks keep the model coherent; block 0 cannot be steered): grown from
    the best-separating block while the next block separates at least `BAND_SHARE` as well
    (held-out sign agreeing), towards the better neighbour first."""
    blocks = len(separation)
    candidates = set(range(1, max(2, (3 * blocks) // 4)))
    width = max(1, blocks // 3)
    score = np.where(agreement > 0.5, separation, -np.inf)
    best = max(candidates, key=lambda b: score[b])
    floor = BAND_SHARE * score[best]
    lo = hi = best
    while hi - lo + 1 < width:
        options = [b for b in (lo - 1, hi + 1) if b in candidates and score[b] >= floor]
        if not options:
            break
        pick = max(options, key=lambda b: score[b])
        lo, hi = min(lo, pick), max(hi, pick)
    return lo, hi
