"""Directions fitted to the pairs by gradient (`method="fit"`), starting from the mean difference.

The band's rows (the blocks `directions.choose_band` chose) are moved so that, after each
pair's real context:
- with +v the positive reply gains log-probability against the negative one, and with -v the
  reverse (a bi-directional preference loss, `-log sigmoid(margin)` for each sign, the margins
  taken relative to the unsteered persona);
- the person's own real reply after that context loses as little as it can under either sign:
  the nats per token it loses are added to the loss, `COHERENCE` times.
That is what the calibration then limits (the perplexity of the person's real replies), so a
fitted vector can reach further within the same limit. The model's weights stay frozen.

An axis whose trait is length (`Axis.length`: brief) is fitted on when a message ends instead:
with +v the odds of ending the person's real reply before each of its tokens rise, with -v they
fall, and its words, given that the message goes on, lose as little as they can. Pairs of a
short and a long reply differ mostly in their words, so fitting them moved brief no further than
the mean; a vector that moves the ending is cheap in perplexity, since the person's own messages
end early and late. On the quickstart persona (benchmarks/RESULTS.md) the fit moved happy a
little further than the mean, and brief much further with the ending fitted (replies 2.16
times as long at -1 as at +1, against 1.29).

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

from convsim.core.inference.engine import ends_message
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
    length: bool = False,
) -> np.ndarray:
    """`start` (n_blocks x n_embd, the mean difference on the band) fitted to `pairs`, whose
    contexts are prompts of `contexts` (their real replies give the coherence term). Rows off
    the band stay zero. `progress(done, total)` after each pair's step. With `length` (an axis
    whose trait is how long a message runs) the fit moves when the real reply ends instead:
    +v raises the odds of ending the message at each of its tokens, -v lowers them, and the
    real reply's words, given that the message goes on, lose as little as they can."""
    import torch

    real = {c.prompt: c for c in contexts}
    items = [_encode(tokenizer, real[p.context], p) for p in pairs if p.context in real]
    if not items:
        raise ValueError("no pair's context is a real moment of the chat: nothing to fit")
    steering = [False]
    if length:
        ends = _end_tokens(tokenizer, model.config.vocab_size)
        items = [(head, tails[2:]) for head, tails in items]  # the real reply only
        signs = torch.tensor([1.0, -1.0])
        loss: Callable[..., Any] = _length_loss

        def run(on: bool, cache: Any, head: int, tails: list[Any]) -> tuple[Any, int]:
            return _stop_odds(model, steering, on, cache, head, tails, ends)

    else:
        signs = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
        loss = _pair_loss

        def run(on: bool, cache: Any, head: int, tails: list[Any]) -> tuple[Any, int]:
            return _reply_logps(model, steering, on, cache, head, tails)

    lo, hi = band
    init = torch.tensor(start[lo : hi + 1], dtype=torch.float32)
    rows = torch.nn.Parameter(init.clone())

    def adding(i: int) -> Callable[..., Any]:
        def hook(_module: Any, _inputs: Any, output: Any) -> Any:
            if not steering[0]:
                return output
            h = output[0] if isinstance(output, tuple) else output
            h = h + (signs[:, None, None] * rows[i]).to(h.dtype)
            return (h, *output[1:]) if isinstance(output, tuple) else h

        return hook

    layers = decoder_layers(model)
    handles = [layers[lo + i].register_forward_hook(adding(i)) for i in range(hi - lo + 1)]
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            caches = [_head(model, head) for head, _ in items]
            plain = [run(False, c, len(h), t)[0]
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
                got, real_tokens = run(True, caches[k], len(head), tails)
                preference, lost = loss(got - plain[k], real_tokens)
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


def _pair_loss(gain: Any, real_tokens: int) -> tuple[Any, Any]:
    """The preference and the real reply's loss (nats per token), from the gains of
    `_reply_logps`' rows: (positive, negative, real) with +v, then with -v."""
    import torch
    import torch.nn.functional as F

    preference = -F.logsigmoid(gain[0] - gain[1]) - F.logsigmoid(gain[4] - gain[3])
    return preference, torch.clamp(-(gain[2] + gain[5]) / real_tokens, min=0.0)


def _length_loss(gain: Any, word_tokens: int) -> tuple[Any, Any]:
    """The preference (the odds of ending up with +v, down with -v, at each token) and the
    words' loss (nats per token), from the gains of `_stop_odds`' rows."""
    import torch
    import torch.nn.functional as F

    preference = (-F.logsigmoid(gain[0, :-1]) - F.logsigmoid(-gain[1, :-1])).mean()
    return preference, torch.clamp(-(gain[0, -1] + gain[1, -1]) / max(1, word_tokens), min=0.0)


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

    width = max(len(ids) for ids, _ in tails)
    ids = torch.tensor([t + [0] * (width - len(t)) for t, _ in tails] * 2)
    mask = torch.tensor([[1] * (head + len(t)) + [0] * (width - len(t)) for t, _ in tails] * 2)
    logp = _logp(model, steering, on, cache, ids, mask)
    sums = []
    for row in range(6):
        tokens, tag = tails[row % 3]
        at = torch.arange(tag - 1, len(tokens) - 1)  # token j is predicted at position j - 1
        sums.append(logp[row, at, torch.tensor(tokens[tag:])].sum())
    return torch.stack(sums), len(tails[2][0]) - tails[2][1]


def _logp(model: Any, steering: list[bool], on: bool, cache: Any, ids: Any, mask: Any) -> Any:
    """Log-probabilities at each position of `ids` (one row per row of the batch) after the
    cached context, steered with the rows' signs if `on`."""
    import torch.nn.functional as F

    batch = copy.deepcopy(cache)
    batch.batch_repeat_interleave(len(ids))
    steering[0] = on
    try:
        logits = model(input_ids=ids, attention_mask=mask, cache=batch, use_cache=True).logits
    finally:
        steering[0] = False
    return F.log_softmax(logits.float(), dim=-1)


def _end_tokens(tokenizer: Any, vocab: int) -> Any:
    """The vocabulary's tokens that end a message, as the engine decides (`ends_message`)."""
    import torch

    pieces = tokenizer.batch_decode([[i] for i in range(vocab)])
    return torch.tensor([i for i, piece in enumerate(pieces) if ends_message(piece.encode())])


def _stop_odds(
    model: Any,
    steering: list[bool],
    on: bool,
    cache: Any,
    head: int,
    tails: list[Any],
    ends: Any,
) -> tuple[Any, int]:
    """For the real reply after the cached context, with +v and with -v (rows): the log odds of
    ending the message before each of its tokens, then (last column) the summed log-probability
    of its words given that the message goes on; and the number of those words' tokens."""
    import torch

    ((tokens, tag),) = tails
    ids = torch.tensor([tokens, tokens])
    mask = torch.ones(2, head + len(tokens), dtype=torch.long)
    logp = _logp(model, steering, on, cache, ids, mask)[:, tag - 1 : len(tokens) - 1]
    end = torch.logsumexp(logp[..., ends], dim=-1)
    going = torch.log(-torch.expm1(end.clamp(max=-1e-6)))
    target = torch.tensor(tokens[tag:])
    is_end = torch.isin(target, ends)
    words = (logp[:, torch.arange(len(target)), target] - going)[:, ~is_end].sum(dim=1)
    return torch.cat([end - going, words[:, None]], dim=1), int((~is_end).sum())
