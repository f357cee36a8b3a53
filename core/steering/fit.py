"""Directions fitted to the pairs by gradient (`method="fit"`), starting from the mean difference.

The band's rows (the blocks `directions.choose_band` chose) are moved so that, after each
pair's real context:
- with +v the positive reply gains log-probability against the negative one, and with -v the
  reverse (a bi-directional preference loss, `-log sigmoid(margin)` for each sign, the margins
  taken relative to the unsteered persona);
- the person's own real reply after that context loses as little as it can under either sign:
  the nats per token it loses are added to the loss, `COHERENCE` times.
That is what the calibration then limits (the perplexity of the person's real replies), so a
fitted vector can reach further within the same limit (on the quickstart persona, happy did and
brief did not: benchmarks/RESULTS.md). The model's weights stay frozen.

As at runtime, steering acts from the person's tag on: each pair's context is read once without
gradients and its key/value cache reused, so only the tag and the three replies (positive,
negative, real), each once with +v and once with -v, run with gradients: a few dozen tokens a
pair. Only reply pairs (built-in axes, pairs files) are fitted: a pole axis's replies carry
the pole as a written stage direction (`*cheerful* ...`), which a fitted vector would learn to
write (`build.build_vector` gives those the mean difference).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from convsim.core.steering.directions import decoder_layers
from convsim.core.steering.pairs import Context, Pair

EPOCHS = 2
COHERENCE = 1.0  # weight of the real reply's loss (nats per token) against the preference
STEP = 0.05  # Adam's step, as a share of the mean difference's typical coordinate


def fit(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    contexts: Sequence[Context],
    start: np.ndarray,
    band: tuple[int, int],
    progress: Callable[[int, int], None] | None = None,
    epochs: int = EPOCHS,
    coherence: float = COHERENCE,
    seed: int = 0,
) -> np.ndarray:
    """`start` (n_blocks x n_embd, the mean difference on the band) fitted to `pairs`, whose
    contexts are prompts of `contexts` (their real replies give the coherence term). Rows off
    the band stay zero. `progress(done, total)` after each pair's step."""
    import torch
    import torch.nn.functional as F

    real = {c.prompt: c for c in contexts}
    lo, hi = band
    init = torch.tensor(start[lo : hi + 1], dtype=torch.float32)
    rows = torch.nn.Parameter(init.clone())
    signs = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    steering = [False]

    def adding(i: int) -> Callable[..., Any]:
        def hook(_module: Any, _inputs: Any, output: Any) -> Any:
            if not steering[0]:
                return output
            h = output[0] if isinstance(output, tuple) else output
            h = h + (signs[:, None, None] * rows[i]).to(h.dtype)
            return (h, *output[1:]) if isinstance(output, tuple) else h

        return hook

    layers = decoder_layers(model)
    items = [_encode(tokenizer, real[p.context], p) for p in pairs if p.context in real]
    if not items:
        raise ValueError("no pair's context is a real moment of the chat: nothing to fit")
    handles = [layers[lo + i].register_forward_hook(adding(i)) for i in range(hi - lo + 1)]
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            caches = [_head(model, head) for head, _ in items]
            plain = [_reply_logps(model, steering, False, c, len(h), t)[0]
                     for c, (h, t) in zip(caches, items, strict=True)]  # fmt: skip
        scale = float(init.norm(dim=1).mean()) / np.sqrt(init.shape[1]) or 1.0
        optimiser = torch.optim.Adam([rows], lr=STEP * scale)
        order = np.arange(len(items))
        rng = np.random.default_rng(seed)
        total = epochs * len(items)
        for epoch in range(epochs):
            rng.shuffle(order)
            for n, k in enumerate(order):
                head, tails = items[k]
                logps, real_tokens = _reply_logps(model, steering, True, caches[k], len(head),
                                                  tails)  # fmt: skip
                gain = logps - plain[k]  # rows: (pos, neg, real) with +v, then with -v
                preference = -F.logsigmoid(gain[0] - gain[1]) - F.logsigmoid(gain[4] - gain[3])
                lost = torch.clamp(-(gain[2] + gain[5]) / real_tokens, min=0.0)
                optimiser.zero_grad()
                (preference + coherence * lost).backward()
                optimiser.step()
                if progress is not None:
                    progress(epoch * len(items) + n + 1, total)
    finally:
        for handle in handles:
            handle.remove()
        for p in params:
            p.requires_grad_(True)
    out = np.zeros_like(start, dtype=np.float32)
    out[lo : hi + 1] = rows.detach().numpy()
    return out


def _encode(tokenizer: Any, context: Context, pair: Pair) -> tuple[list[int], list[Any]]:
    """(the context's turns as tokens, then for the positive, negative and real reply: the
    tag and reply's tokens and how many of them are the tag's)."""
    head = tokenizer(context.turns).input_ids
    tag = len(tokenizer(context.tag, add_special_tokens=False).input_ids)
    tails = []
    for reply in (pair.positive, pair.negative, context.reply):
        ids = tokenizer(context.tag + reply, add_special_tokens=False).input_ids
        tails.append((ids, max(1, min(tag, len(ids) - 1))))
    return head, tails


def _head(model: Any, head: list[int]) -> Any:
    import torch

    return model(input_ids=torch.tensor([head]), use_cache=True).cache


def _reply_logps(
    model: Any, steering: list[bool], on: bool, cache: Any, head: int, tails: list[Any]
) -> tuple[Any, int]:
    """Summed log-probabilities of each reply's tokens after the cached context, for the
    three replies with +v and then with -v (6 values; `on` False: all unsteered, the
    reference the gains are taken from), and the real reply's token count."""
    import torch
    import torch.nn.functional as F

    width = max(len(ids) for ids, _ in tails)
    ids = torch.tensor([t + [0] * (width - len(t)) for t, _ in tails] * 2)
    mask = torch.tensor([[1] * (head + len(t)) + [0] * (width - len(t)) for t, _ in tails] * 2)
    batch = copy.deepcopy(cache)
    batch.batch_repeat_interleave(6)
    steering[0] = on
    try:
        logits = model(input_ids=ids, attention_mask=mask, cache=batch, use_cache=True).logits
    finally:
        steering[0] = False
    logp = F.log_softmax(logits.float(), dim=-1)
    sums = []
    for row in range(6):
        tokens, tag = tails[row % 3]
        at = torch.arange(tag - 1, len(tokens) - 1)  # token j is predicted at position j - 1
        sums.append(logp[row, at, torch.tensor(tokens[tag:])].sum())
    return torch.stack(sums), len(tails[2][0]) - tails[2][1]
