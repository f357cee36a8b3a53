"""Fitted steering directions (`core.steering.fit`) on the tiny random gemma3, in torch.

What the fit promises: +v makes each pair's positive reply likelier against its negative one
and -v the reverse, further than the vector it started from, and the coherence term spares the
person's real reply. Log-probabilities are computed independently of the fit's own cached
forward passes: a whole-sequence forward with a hook adding the rows from the person's tag on.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from test_steering import _Tokenizer, hooked_logits, log_softmax
from tinymodels import TinyModel

from convsim.core.inference.llama import LlamaModel
from convsim.core.steering import fit
from convsim.core.steering.pairs import Context, Pair

TAG = "[Sam]"
CONTEXTS = [
    Context(f"[Riya] {turn}\n{TAG}", " we are going\n", "2024-01-01T10:00:00", TAG)
    for turn in ("hey are we going", "the place", "you there", "are we", "hey you", "going")
]
PAIRS = [Pair(c.prompt, " yes yes\n", " no no\n") for c in CONTEXTS]


@pytest.fixture(scope="module")
def llama(tiny: TinyModel) -> Iterator[LlamaModel]:
    model = LlamaModel(tiny.gguf_path, n_ctx=256, threads=1)
    yield model
    model.close()


def reply_logp(tiny: TinyModel, tok: _Tokenizer, c: Context, reply: str, row: np.ndarray) -> float:
    """log p(reply | context) with `row` added to block 1 from the tag's first token on."""
    head = tok(c.turns).input_ids
    tag = len(tok(TAG, add_special_tokens=False).input_ids)
    tail = tok(TAG + reply, add_special_tokens=False).input_ids
    ids = head + tail
    logp = log_softmax(hooked_logits(tiny.model, ids, {1: row}, from_pos=len(head)))
    first = len(head) + tag
    return float(sum(logp[i - 1, ids[i]] for i in range(first, len(ids))))


def margin(tiny: TinyModel, tok: _Tokenizer, row: np.ndarray) -> float:
    """Summed over the pairs: log p(positive) - log p(negative) with `row` added."""
    pos, neg = PAIRS[0].positive, PAIRS[0].negative
    return sum(reply_logp(tiny, tok, c, pos, row) - reply_logp(tiny, tok, c, neg, row)
               for c in CONTEXTS)  # fmt: skip


def real_loss(tiny: TinyModel, tok: _Tokenizer, row: np.ndarray, found: list[Context]) -> float:
    """Nats the real replies lose with `row` and with `-row` added, against unsteered."""
    zero = np.zeros_like(row)
    return sum(2 * reply_logp(tiny, tok, c, c.reply, zero) - reply_logp(tiny, tok, c, c.reply, row)
               - reply_logp(tiny, tok, c, c.reply, -row) for c in found)  # fmt: skip


def test_fit_pushes_each_pole_its_way_further_than_its_start(
    tiny: TinyModel, llama: LlamaModel
) -> None:
    tok = _Tokenizer(llama)
    start = np.zeros((2, 64), np.float32)
    start[1] = np.random.default_rng(0).normal(0, 0.3, 64)
    before = {name: (p.detach().clone(), p.requires_grad)
              for name, p in tiny.model.named_parameters()}  # fmt: skip
    fitted = fit.fit(tiny.model, tok, PAIRS, CONTEXTS, start, (1, 1), epochs=4)
    assert fitted.shape == start.shape and fitted.dtype == np.float32
    assert not fitted[0].any()  # off the band: untouched
    plain = margin(tiny, tok, np.zeros(64, np.float32))
    assert margin(tiny, tok, fitted[1]) - plain > max(margin(tiny, tok, start[1]) - plain, 0) + 1
    assert plain - margin(tiny, tok, -fitted[1]) > max(plain - margin(tiny, tok, -start[1]), 0) + 1
    # The model's own weights are neither changed nor left frozen.
    for name, p in tiny.model.named_parameters():
        assert p.requires_grad == before[name][1] and bool((p == before[name][0]).all()), name


def test_the_coherence_term_spares_the_real_reply(tiny: TinyModel, llama: LlamaModel) -> None:
    # Pairs whose two replies are the same text leave only the coherence term to fit: from a
    # start that costs the real reply likelihood (in this tiny model, steering mostly makes a
    # reply likelier), the fit gives some of it back, and without the term nothing moves.
    tok = _Tokenizer(llama)
    real = [Context(c.prompt, " the the the\n", c.timestamp, TAG) for c in CONTEXTS]
    same = [Pair(c.prompt, " yes\n", " yes\n") for c in real]
    start = np.zeros((2, 64), np.float32)
    start[1] = np.random.default_rng(0).normal(0, 1.0, 64)
    lost = real_loss(tiny, tok, start[1], real)
    assert lost > 0.5  # the premise
    kept = fit.fit(tiny.model, tok, same, real, start, (1, 1), epochs=4, coherence=1.0)
    assert real_loss(tiny, tok, kept[1], real) < lost - 0.25
    still = fit.fit(tiny.model, tok, same, real, start, (1, 1), epochs=4, coherence=0.0)
    assert np.array_equal(still, start)
    # Losses are counted against the unsteered persona, not against the start: a start under
    # which every real reply is likelier than unsteered costs nothing, and stays where it is.
    same = [Pair(c.prompt, " yes\n", " yes\n") for c in CONTEXTS]
    start[1] = np.random.default_rng(1).normal(0, 1.0, 64)
    assert all(real_loss(tiny, tok, start[1], [c]) < 0 for c in CONTEXTS)  # the premise
    free = fit.fit(tiny.model, tok, same, CONTEXTS, start, (1, 1), epochs=2, coherence=1.0)
    assert np.array_equal(free, start)


def stop_odds(tiny: TinyModel, llama: LlamaModel, row: np.ndarray) -> tuple[float, float]:
    """Over the real replies with `row` added, against unsteered: the mean change in the log
    odds of ending the message before each token, and the summed change in the log-probability
    of each word token given that the message goes on."""
    tok = _Tokenizer(llama)
    ends = [i for i in range(llama.n_vocab()) if b"\n" in llama.detokenize([i])]
    odds, words, n = 0.0, 0.0, 0
    for c in CONTEXTS:
        head = tok(c.turns).input_ids
        tail = tok(TAG + c.reply, add_special_tokens=False).input_ids
        first = len(head) + len(tok(TAG, add_special_tokens=False).input_ids)
        ids = head + tail
        for sign, add in ((1.0, row), (-1.0, np.zeros_like(row))):
            logp = log_softmax(hooked_logits(tiny.model, ids, {1: add}, from_pos=len(head)))
            for i in range(first, len(ids)):
                end = np.log(np.exp(logp[i - 1, ends]).sum())
                going = np.log1p(-np.exp(end))
                odds += sign * (end - going)
                n += sign > 0
                if ids[i] not in ends:
                    words += sign * (logp[i - 1, ids[i]] - going)
    return odds / n, words


def test_a_length_axis_fits_when_the_message_ends(tiny: TinyModel, llama: LlamaModel) -> None:
    # The trait of a length axis is when a message ends: +v raises the odds of ending it at each
    # of the real reply's tokens and -v lowers them, further than the start, while the words
    # of the reply, given that it goes on, keep most of their likelihood.
    tok = _Tokenizer(llama)
    start = np.zeros((2, 64), np.float32)
    start[1] = np.random.default_rng(2).normal(0, 0.3, 64)
    fitted = fit.fit(tiny.model, tok, PAIRS, CONTEXTS, start, (1, 1), epochs=4, length=True)
    assert not fitted[0].any()
    odds = {name: (stop_odds(tiny, llama, row[1]), stop_odds(tiny, llama, -row[1]))
            for name, row in (("start", start), ("fitted", fitted))}  # fmt: skip
    (up, _), (down, _) = odds["fitted"]
    (up0, _), (down0, _) = odds["start"]
    assert up > max(up0, 0) + 0.5 and down < min(down0, 0) - 0.5
    # Moving the ending is not paid for in the words: per reply (both signs together), the
    # fitted vector costs them fewer nats than the mean shift of the ending's log odds.
    words = -(odds["fitted"][0][1] + odds["fitted"][1][1])
    assert words / len(CONTEXTS) < (up - down) / 2


def test_pairs_without_a_real_moment_are_refused(tiny: TinyModel, llama: LlamaModel) -> None:
    stray = [Pair("[Riya] nowhere\n[Sam]", " yes\n", " no\n")]
    with pytest.raises(ValueError, match="real moment"):
        fit.fit(tiny.model, _Tokenizer(llama), stray, CONTEXTS, np.zeros((2, 64)), (1, 1))
