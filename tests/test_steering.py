"""Steering (`core/steering/`, the engine's `set_steering`, control-vector GGUFs): the torch
side and llama.cpp agree on where a vector is added, replies are steered from the speaker tag
on with the conversation cached unsteered, directions are recovered from planted data, and the
calibration, pairs, file and mixing rules hold. Real models throughout: the tiny random gemma3
(2 blocks, n_embd 64) from conftest.py and a 3-block variant built the same way (`deep`), where
a steered token also changes what later tokens see.

`build_vector` end to end (training a tiny persona first) runs in tests/test_cli_steer.py.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gguf
import numpy as np
import pytest
import tinymodels
import torch
from tinymodels import TinyModel, build_tiny, corr

from convsim.convert.control_vector import (
    ControlVector,
    check_fits,
    read_control_vector,
    write_control_vector,
)
from convsim.core.data.dataset import Example
from convsim.core.data.turns import render
from convsim.core.inference.engine import Engine, Sampling, ends_message
from convsim.core.inference.llama import LlamaModel
from convsim.core.steering import calibrate, directions, library, pairs
from convsim.core.steering.axes import HAPPY
from convsim.core.steering.calibrate import Calibration, Point, degenerate, usable

TEXT = "[Riya] hey are we going\n[Sam] yes we are going\n[Riya] the"
GREEDY = Sampling(temperature=0.0, seed=0, max_tokens=12)
CHAT = [("Riya", "hey are we going"), ("Sam", "yes we are"), ("Riya", "the place")]


# ---------------------------------------------------------------- helpers


# threads=1: the models are tiny, and llama.cpp's threads spin-wait for each other, which on a
# busy machine costs far more than a second thread saves.


@pytest.fixture(scope="module")
def llama(tiny: TinyModel) -> Iterator[LlamaModel]:
    model = LlamaModel(tiny.gguf_path, n_ctx=256, threads=1)
    yield model
    model.close()


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The tiny gemma3 with 3 blocks: blocks 1 and 2 can be steered, and block 1's output at
    one position reaches later positions through block 2's attention."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tinymodels, "LAYERS", 3)
        return build_tiny("gemma3", tmp_path_factory.mktemp("deep"))


@pytest.fixture(scope="module")
def deep_llama(deep: TinyModel) -> Iterator[LlamaModel]:
    model = LlamaModel(deep.gguf_path, n_ctx=256, threads=1)
    yield model
    model.close()


def hooked_logits(
    model: Any, ids: list[int], add: Mapping[int, np.ndarray], from_pos: int = 0
) -> np.ndarray:
    """torch logits of every position of `ids` with `add[i]` added to decoder block i's
    output at positions >= `from_pos` (a forward hook, as llama.cpp's control vector does)."""

    def adding(vector: np.ndarray) -> Any:
        v = torch.tensor(vector)

        def hook(_module: Any, _inputs: Any, output: Any) -> Any:
            hidden = (output[0] if isinstance(output, tuple) else output).clone()
            hidden[:, from_pos:] += v
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    layers = directions.decoder_layers(model)
    handles = [layers[block].register_forward_hook(adding(v)) for block, v in add.items()]
    try:
        with torch.no_grad():
            return model(torch.tensor([ids])).logits[0].float().numpy()
    finally:
        for handle in handles:
            handle.remove()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


def strong(rows: int, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).normal(0, 1, (rows, 64))).astype(np.float32)


# ---------------------------------------------------------------- torch <-> llama.cpp parity


def test_a_row_steers_the_block_after_its_index_as_in_torch(
    tiny: TinyModel, llama: LlamaModel
) -> None:
    tokens = llama.tokenize(TEXT)
    vector = strong(1)
    plain = llama.next_logits(tokens)
    llama.set_control_vector(vector)  # data row 0 is block 1
    try:
        steered = llama.next_logits(tokens)
    finally:
        llama.set_control_vector(None)
    assert corr(steered, plain) < 0.9  # the vector changes the logits clearly
    right = hooked_logits(tiny.model, tokens, {1: vector[0]})[-1]
    wrong = hooked_logits(tiny.model, tokens, {0: vector[0]})[-1]
    assert corr(steered, right) >= 0.99
    assert corr(steered, wrong) < min(0.98, corr(steered, right))
    assert np.abs(steered - right).max() < 0.1 * np.abs(steered - wrong).max()


def test_rows_map_to_blocks_and_the_layer_range_on_three_blocks(
    deep: TinyModel, deep_llama: LlamaModel
) -> None:
    model, llm = deep.model, deep_llama
    tokens = llm.tokenize(TEXT)
    rows = strong(2, seed=1)
    llm.set_control_vector(rows)
    both = llm.next_logits(tokens)
    llm.set_control_vector(rows, 2, 2)  # block 2 only: row 1
    only_two = llm.next_logits(tokens)
    llm.set_control_vector(None)
    right = hooked_logits(model, tokens, {1: rows[0], 2: rows[1]})[-1]
    assert corr(both, right) >= 0.99
    for mapping in ({0: rows[0], 1: rows[1]}, {1: rows[1], 2: rows[0]}):
        assert corr(both, hooked_logits(model, tokens, mapping)[-1]) < corr(both, right) - 0.01
    assert corr(only_two, hooked_logits(model, tokens, {2: rows[1]})[-1]) >= 0.99
    assert corr(only_two, right) < 0.98


def test_block_outputs_are_the_hidden_states_after_them(deep: TinyModel) -> None:
    """Block i's output (what the hooks above and `reply_means` capture) is transformers'
    `hidden_states[i + 1]`, except after the last block, where transformers has already
    applied the final norm."""
    ids = tinymodels.token_ids(deep.n_vocab, 12)
    captured: list[torch.Tensor] = []
    layers = directions.decoder_layers(deep.model)
    handles = [
        layer.register_forward_hook(
            lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out)
        )
        for layer in layers
    ]
    try:
        with torch.no_grad():
            states = deep.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    finally:
        for handle in handles:
            handle.remove()
    assert len(captured) == len(layers) == 3 and len(states) == 4
    for i in range(len(layers) - 1):
        assert torch.allclose(captured[i], states[i + 1], atol=1e-5)
    assert not torch.allclose(captured[-1], states[-1], atol=1e-2)


def test_steer_from_matches_torch_adding_from_that_position(
    deep: TinyModel, deep_llama: LlamaModel
) -> None:
    model, llm = deep.model, deep_llama
    tokens = llm.tokenize(TEXT)
    rows = strong(2, seed=2)
    add = {1: rows[0], 2: rows[1]}
    llm.set_control_vector(rows)
    try:
        for k in (3, 9, len(tokens) - 1):
            got = llm.next_logits(tokens, steer_from=k)
            right = hooked_logits(model, tokens, add, from_pos=k)[-1]
            everywhere = hooked_logits(model, tokens, add)[-1]
            assert corr(got, right) >= 0.99
            # Closer to steering from k than to steering every token: the prefix's own
            # (unsteered) states reach the last position through attention.
            assert np.abs(got - right).max() < 0.2 * np.abs(got - everywhere).max()
        # Scoring: every position predicts under the vector only from k on.
        k = 7
        lps = llm.token_logprobs(tokens, 1, steer_from=k)
        want = log_softmax(hooked_logits(model, tokens, add, from_pos=k))
        expected = [want[i - 1, tokens[i]] for i in range(1, len(tokens))]
        assert np.allclose(lps, expected, atol=2e-3)
    finally:
        llm.set_control_vector(None)


# ---------------------------------------------------------------- the engine


def test_engine_steers_the_reply_and_keeps_the_conversation_cached(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=512, threads=1)
    try:
        plain = engine.simulate(CHAT, "Sam", GREEDY).result()
        rows = strong(1)
        engine.set_steering(rows)
        steered = engine.simulate(CHAT, "Sam", GREEDY).result()
        assert steered.generated_tokens > 0 and steered.messages != plain.messages
        # Only the reply's tag was evaluated again: the conversation was cached unsteered.
        conversation = len(engine.tokens(render(CHAT)))
        assert steered.reused_tokens == conversation
        assert engine.simulate(CHAT, "Sam", GREEDY).result().messages == steered.messages

        # The steered reply joins the conversation: it is evaluated again, unsteered, and
        # everything before its tag comes from the cache.
        longer = [*CHAT, ("Sam", steered.text), ("Riya", "ok")]
        nxt = engine.simulate(longer, "Sam", GREEDY).result()
        assert nxt.reused_tokens == conversation
        # A slider change costs the new reply's tag only.
        grown = len(engine.tokens(render(longer)))
        engine.set_steering(-rows)
        other = engine.simulate(longer, "Sam", GREEDY).result()
        assert other.reused_tokens == grown and other.prompt_tokens > grown
        assert other.messages != nxt.messages
        # Steering off: the reply is unsteered, the conversation still cached, and the reply
        # is the one a fresh cache gives.
        engine.set_steering(None)
        off = engine.simulate(longer, "Sam", GREEDY).result()
        assert off.reused_tokens == grown
        engine.model.reset()
        fresh = engine.simulate(longer, "Sam", GREEDY).result()
        assert fresh.reused_tokens == 0 and fresh.messages == off.messages
    finally:
        engine.close()


# ---------------------------------------------------------------- directions


def planted(
    rng: np.random.Generator, d: np.ndarray, n: int, noise: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) reply means of `n` pairs: random states, positive = negative +
    the planted per-block difference `d` (blocks x embd) + noise."""
    neg = rng.normal(0, 1, (n, *d.shape))
    pos = neg + d + rng.normal(0, noise, (n, *d.shape))
    return pos.astype(np.float32), neg.astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("method", ["mean", "pca"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_directions_recover_a_planted_direction(method: str, sign: float) -> None:
    rng = np.random.default_rng(0)
    blocks, embd = 8, 32
    unit = rng.normal(0, 1, (blocks, embd))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    strength = np.array([5.0, 1.0, 1.5, 3.0, 2.5, 1.0, 6.0, 6.0])  # 0 and the end: not usable
    d = sign * strength[:, None] * unit
    train, held = planted(rng, d, 120), planted(rng, d, 40)
    found = directions.directions(train, held, method)
    lo, hi = found.band
    # 8 blocks: candidates 1..5, at most 2 wide, grown from the best (3) to the neighbour
    # that separates at least 60% as well (4, not 2): never block 0 nor the last blocks.
    assert (lo, hi) == (3, 4)
    mean = (train[0] - train[1]).mean(axis=0)
    for b in range(blocks):
        if lo <= b <= hi:
            assert cosine(found.vectors[b], d[b]) > 0.95
            assert found.vectors[b] @ mean[b] > 0  # signed like the training mean
            # Strength 1 spreads the mean difference over the band.
            along = float(found.vectors[b] @ unit[b]) * sign
            assert along == pytest.approx(strength[b] / (hi - lo + 1), rel=0.1)
        else:
            assert not found.vectors[b].any()
    assert found.method == method and found.vectors.dtype == np.float32
    assert found.agreement[lo : hi + 1].min() == 1.0 and found.separation[1:].min() > 0
    with pytest.raises(ValueError, match="mean' or 'pca"):
        directions.directions(train, held, "median")


def test_measure_reports_agreement_and_separation_on_held_out_pairs() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(0, 1, (4, 64))
    held = planted(rng, d * 3, 30)
    vectors = d.copy()
    vectors[2] = 0.0  # an unsteered block measures nothing
    separation, agreement = directions.measure(vectors, held)
    assert separation[0] == agreement[0] == 0.0  # block 0 is never measured
    assert agreement[[1, 3]].tolist() == [1.0, 1.0] and separation[[1, 3]].min() > 2
    assert separation[2] == agreement[2] == 0.0
    flipped_sep, flipped_agree = directions.measure(-vectors, held)
    assert flipped_agree[[1, 3]].tolist() == [0.0, 0.0]
    assert np.allclose(flipped_sep, -separation)
    # A random direction separates far less than the planted one.
    random_sep, _ = directions.measure(rng.normal(0, 1, (4, 64)), held)
    assert abs(random_sep[1]) < separation[1] / 2


def test_choose_band_is_contiguous_and_avoids_block_0_and_the_last_quarter() -> None:
    rng = np.random.default_rng(2)
    for blocks in (2, 3, 4, 8, 18, 26, 34):
        usable_end = max(2, (3 * blocks) // 4)  # first block not allowed
        for _ in range(40):
            separation = rng.normal(1, 1, blocks)
            agreement = rng.uniform(0.3, 1.0, blocks)
            lo, hi = directions.choose_band(separation, agreement)
            assert 1 <= lo <= hi < usable_end, (blocks, lo, hi)
            assert hi - lo + 1 <= max(1, blocks // 3)
            score = np.where(agreement > 0.5, separation, -np.inf)
            best = score[1:usable_end].max()
            assert score[lo : hi + 1].max() == best  # grown from the best block
            if best > 0:
                assert score[lo : hi + 1].min() >= 0.6 * best
    # The strongest blocks are 0, a disagreeing one and the last quarter: none is chosen.
    separation = np.array([9.0, 1.5, 2.0, 8.0, 1.0, 0.1, 7.0, 9.0])
    agreement = np.array([1.0, 1.0, 1.0, 0.4, 1.0, 1.0, 1.0, 1.0])
    assert directions.choose_band(separation, agreement) == (1, 2)


class _Tokenizer:
    """llama.cpp's tokenizer of the tiny GGUF (the same vocabulary as the torch model), called
    the way `reply_means` calls a transformers tokenizer."""

    def __init__(self, llm: LlamaModel) -> None:
        self.llm = llm

    def __call__(self, text: str, add_special_tokens: bool = True) -> SimpleNamespace:
        return SimpleNamespace(input_ids=self.llm.tokenize(text, bos=add_special_tokens))

    def batch_decode(self, batch: list[list[int]]) -> list[str]:
        return [self.llm.detokenize(ids).decode("utf-8", "replace") for ids in batch]


def test_reply_means_average_the_reply_tokens_and_ignore_padding(
    tiny: TinyModel, llama: LlamaModel
) -> None:
    tok = _Tokenizer(llama)
    short = ("[Riya] hey\n[Sam]", " yes we are\n")
    long = ("[Riya] hey are we going the the\n[Riya] you\n[Sam]", " we are going\n")
    alone = directions.reply_means(tiny.model, tok, [short])
    batch = directions.reply_means(tiny.model, tok, [long, short])
    assert alone.shape == (1, 2, 64) and batch.shape == (2, 2, 64)
    assert np.abs(batch[1] - alone[0]).max() < 1e-5  # padding after it changes nothing
    # By hand: the block outputs of the whole text, over the reply's tokens only.
    prompt_ids = llama.tokenize(short[0])
    ids = llama.tokenize(short[0] + short[1])
    assert ids[: len(prompt_ids)] == prompt_ids
    captured: list[torch.Tensor] = []
    handles = [
        layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        for layer in directions.decoder_layers(tiny.model)
    ]
    try:
        with torch.no_grad():
            tiny.model(torch.tensor([ids]))
    finally:
        for handle in handles:
            handle.remove()
    states = [(c[0] if isinstance(c, tuple) else c)[0].numpy() for c in captured]
    reply = np.stack([s[len(prompt_ids) :].mean(axis=0) for s in states])
    everything = np.stack([s.mean(axis=0) for s in states])
    assert np.abs(alone[0] - reply).max() < 1e-4
    assert np.abs(alone[0] - everything).max() > 1e-2
    # Pairs: positives then negatives, one row each.
    pos, neg = directions.pair_differences(
        tiny.model, tok, [pairs.Pair(short[0], short[1], " no\n")], None
    )
    assert np.abs(pos[0] - alone[0]).max() < 1e-5 and np.abs(neg[0] - alone[0]).max() > 1e-3


# ---------------------------------------------------------------- calibration


def test_degenerate_replies() -> None:
    normal = "sure, see you at 7 then"
    assert not degenerate(normal, [10, 11, 12, 13, 14, 15, 16])
    assert degenerate("aaaa", [7, 7, 7, 7])  # one token 4 times in a row
    assert not degenerate("aaa b", [7, 7, 7, 8])
    assert degenerate("ha ha ha", [1, 5, 6, 5, 6, 5, 6, 2])  # a 2-token phrase 3 times
    assert not degenerate("ha ha", [1, 5, 6, 5, 6, 2])
    assert degenerate("lol ok ya", [9, 1, 2, 3, 1, 2, 3, 1, 2, 3])  # 3-token phrase 3 times
    # Most of a long reply is the same few tokens, without a run.
    assert degenerate("x", [1, 2, 3, 4, 5] * 4)
    assert not degenerate("x", [1, 2, 3, 4, 5] * 3)  # 15 tokens: too short to judge
    for text in ("hi <unused12> there", "ok<end_of_turn>", "bad \ufffd byte", "<pad>"):
        assert degenerate(text, [10, 11, 12])
    assert not degenerate("i <3 you <b>", [10, 11, 12])


def points(baseline: float, **by_strength: tuple[float, float]) -> list[Point]:
    """Sweep points: strength -> (perplexity, degenerate share); keys like p1_5 / n2."""
    out = [Point(strength=0.0, perplexity=baseline, degenerate=0.0)]
    for key, (ppl, broken) in by_strength.items():
        value = float(key[1:].replace("_", ".")) * (1 if key[0] == "p" else -1)
        out.append(Point(strength=value, perplexity=ppl, degenerate=broken))
    return out


def test_usable_range_stops_at_the_first_failure_on_each_side() -> None:
    sweep = points(
        10.0,
        p0_5=(10.2, 0.0), p1=(11.0, 0.02), p1_5=(11.5, 0.0), p2=(10.0, 0.0),  # ppl too high
        n0_5=(10.1, 0.0), n1=(9.0, 0.05), n2=(10.0, 0.0),  # too many degenerate at -1
    )  # fmt: skip
    cal = usable(sweep)
    assert (cal.positive, cal.negative, cal.baseline) == (1.0, 0.5, 10.0)
    assert [p.strength for p in cal.points] == sorted(p.strength for p in sweep)
    # The sides are independent: the negative side failing first changes nothing above 0.
    assert usable(points(10.0, p1=(10.5, 0.0), n0_5=(20.0, 0.0))).positive == 1.0
    # Past the limit on perplexity alone, the end is where the straight line from the last
    # strength inside (here 0, ratio 1) meets it: ratio 2 at -0.5, so 1.1 at -0.05.
    assert usable(points(10.0, p1=(10.5, 0.0), n0_5=(20.0, 0.0))).negative == 0.05
    assert usable(points(10.0, p1=(10.5, 0.0), p2=(12.5, 0.0))).positive == 1.25
    assert usable(points(10.0)).positive == 0.0
    with pytest.raises(ValueError, match="strength 0"):
        usable([Point(strength=1.0, perplexity=1.0, degenerate=0.0)])
    # A slider's -1..1 maps onto each side's range.
    assert [cal.strength(v) for v in (1.0, 0.5, -1.0, -3.0, 0.0)] == [1.0, 0.5, -0.5, -0.5, 0.0]


def test_the_range_ends_where_the_rise_stays_inside_on_most_resamples_of_the_moments() -> None:
    """Two sweeps with the same pooled perplexity at every strength: where the rise at +1
    comes from every moment alike, +1 is inside; where it comes from one moment of ten, a
    resample with that moment twice goes past the limit, and the end comes before +1."""
    tokens = (10,) * 10
    base = (30.0,) * 10

    def sweep(rise_at_1: tuple[float, ...]) -> list[Point]:
        out = []
        for strength, extra in ((0.0, (0.0,) * 10), (1.0, rise_at_1), (2.0, (5.0,) * 10)):
            nll = tuple(b + e for b, e in zip(base, extra, strict=True))
            ppl = math.exp(sum(nll) / sum(tokens))
            out.append(Point(strength, ppl, 0.0, (), nll, tokens))
        return out

    spread = sweep((0.77,) * 10)  # every moment a little: pooled ratio exp(7.7 / 100) = 1.08
    lumped = sweep((7.7,) + (0.0,) * 9)  # one moment a lot: the same pooled ratio
    assert spread[1].perplexity == pytest.approx(lumped[1].perplexity)
    assert calibrate.rise_bounds(spread)[1.0] == pytest.approx(math.exp(0.077))
    assert calibrate.rise_bounds(lumped)[1.0] > 1 + calibrate.MAX_PPL_RISE
    assert usable(spread).positive > 1.0  # inside at 1, past at 2 (ratio 1.65): in between
    assert 0.0 < usable(lumped).positive < 1.0
    noisy = sweep(tuple(np.random.default_rng(1).exponential(0.77, 10)))
    assert calibrate.rise_bounds(noisy) == calibrate.rise_bounds(noisy)  # seeded resamples
    # A moment whose reply cannot be scored at a strength (infinite NLL) ends the side before
    # it; so does a perplexity that is not a number in a pooled sweep.
    for bad in (math.inf, math.nan):
        broken = sweep((bad,) + (0.0,) * 9)
        assert calibrate.rise_bounds(broken)[1.0] == math.inf and usable(broken).positive == 0.0
    unscored = [Point(p.strength, math.nan if p.strength else p.perplexity, 0.0) for p in spread]
    assert usable(unscored).positive == 0.0
    # Points that score different moments cannot be resampled together.
    short = [*spread[:2], Point(2.0, spread[2].perplexity, 0.0, (), (1.0,), (10,))]
    with pytest.raises(ValueError, match="same contexts"):
        usable(short)
    # Without per-moment scores the pooled ratio decides, as the sweep points carry it.
    pooled = [Point(p.strength, p.perplexity, p.degenerate) for p in lumped]
    assert usable(pooled).positive > 1.0


def example(context: str, target: str, when: str, session: int = 0) -> Example:
    return Example(context=context, target=target, session=session, timestamp=when)


EXAMPLES = [
    example("[Riya] hey\n", "[Sam] hi there\n", "2024-01-02T10:00"),
    example(
        "[Riya] one\n[Sam] two\n[Riya] three\n[Sam] four\n[Riya] five\n[Riya] six\n",
        "[Sam] seven\n",
        "2024-01-01T10:00",
    ),
    example("[Riya] look\n", "[Sam] <media>\n", "2024-01-03T10:00"),  # media: skipped
    example("[Riya] so?\n", "[Sam] \n", "2024-01-04T10:00"),  # empty: skipped
    example("", "[Sam] opening a session\n", "2024-01-05T10:00"),  # no context: skipped
    example("[Riya] are we going\n", "[Sam] yes we are going", "2024-01-06T10:00"),
]


def test_sweep_measures_what_steering_the_reply_does(deep_llama: LlamaModel) -> None:
    llm = deep_llama  # 3 blocks: a stale steered prefix in the cache would show in the scores
    found = pairs.contexts(EXAMPLES)
    rows = strong(2, seed=3, scale=2.0)
    llm.reset()
    plain = llm.next_logits(llm.tokenize(TEXT))
    # 0 after a steered strength: the unsteered prefix kept between strengths must not
    # carry steered tokens into the unsteered scores.
    result = calibrate.sweep(llm, found, rows, (1, 2), [1.0, 0.0, -2.0], generate=2, seed=4)
    assert [p.strength for p in result] == [1.0, 0.0, -2.0]

    def perplexity(strength: float, from_tag: bool = True) -> float:
        """From scratch: each context evaluated afresh, steered from its tag on."""
        nll = count = 0.0
        for c in found:
            full = llm.tokenize(c.prompt + c.reply)
            steer_from = len(llm.tokenize(c.turns)) if from_tag else 0
            llm.set_control_vector(rows * strength if strength else None)
            llm.reset()
            lps = llm.token_logprobs(full, len(llm.tokenize(c.prompt)), 0, steer_from)
            nll, count = nll - sum(lps), count + len(lps)
        llm.set_control_vector(None)
        return math.exp(nll / count)

    for p in result:
        assert p.perplexity == pytest.approx(perplexity(p.strength), rel=1e-4)
        assert 0.0 <= p.degenerate <= 1.0 and p.degenerate * 2 == round(p.degenerate * 2)
        # The moments' own scores add up to the pooled perplexity.
        assert len(p.nll) == len(p.tokens) == len(found) and min(p.tokens) > 0
        assert math.exp(sum(p.nll) / sum(p.tokens)) == pytest.approx(p.perplexity, rel=1e-9)
    # Sampling only: the same replies, no perplexity.
    unscored = calibrate.sweep(
        llm, found, rows, (1, 2), [1.0, 0.0, -2.0], generate=2, seed=4, score=False
    )
    assert [p.replies for p in unscored] == [p.replies for p in result]
    assert all(math.isnan(p.perplexity) and not p.nll for p in unscored)
    assert len({round(p.perplexity, 3) for p in result}) == 3
    assert result[0].perplexity != pytest.approx(perplexity(1.0, from_tag=False), rel=1e-3)
    # The sweep leaves the model unsteered.
    assert np.abs(llm.next_logits(llm.tokenize(TEXT)) - plain).max() < 1e-4
    with pytest.raises(ValueError, match="no contexts"):
        calibrate.calibrate(llm, [], rows, (1, 2), grid=(0.5,))
    # The rows cross a limit inside the grid on at least one side: the calibration sweeps that
    # grid step again at REFINE points and ends the side between two of them, on llama.cpp.
    reports: list[tuple[int, int]] = []
    cal = calibrate.calibrate(
        llm, found[:2], rows, (1, 2), grid=(0.5, 1.0), progress=lambda *a: reports.append(a)
    )
    coarse = {0.0, 0.5, 1.0, -0.5, -1.0}
    fine = {p.strength for p in cal.points} - coarse
    assert {p.strength for p in cal.points} >= coarse
    bounds = calibrate.rise_bounds(cal.points)
    by = {p.strength: p for p in cal.points}
    top = 1 + calibrate.MAX_PPL_RISE

    def past(s: float) -> bool:
        return bounds[s] > top or by[s].degenerate > calibrate.MAX_DEGENERATE

    crossed = 0
    for sign, end in ((1, cal.positive), (-1, cal.negative)):
        side = sorted(sign * s for s in fine if s * sign > 0)
        out = [s for s in (0.5, 1.0) if past(sign * s)]
        if not out:
            assert not side and end == 1.0
            continue
        crossed += 1
        a, b = out[0] - 0.5, out[0]
        assert side == [a + q * (b - a) for q in calibrate.REFINE]
        first_out = min([s for s in side if past(sign * s)], default=b)
        last_in = max(s for s in (a, *side) if s < first_out)
        assert last_in <= end < first_out  # where the line between their bounds meets it
    assert crossed  # the premise
    # Progress counts context by context across both sweeps, up to its total.
    total = 2 * (len(coarse) + len(fine))
    assert reports[-1] == (total, total)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)
    assert {n for _, n in reports} == {total}


def test_a_sweep_under_a_logit_bias_scores_and_samples_under_it(deep_llama: LlamaModel) -> None:
    llm = deep_llama
    found = pairs.contexts(EXAMPLES)
    rows = strong(2, seed=3, scale=2.0)
    ends = np.array([ends_message(llm.detokenize([t])) for t in range(llm.n_vocab())])
    assert ends.any()

    def under(d: float) -> Point:
        bias = (d * ends).astype(np.float32)
        (p,) = calibrate.sweep(llm, found, rows, (1, 2), [0.0], seed=1, reply_tokens=6,
                               logit_bias=bias)  # fmt: skip
        nll = count = 0.0
        for c in found:
            full = llm.tokenize(c.prompt + c.reply)
            lps = llm.token_logprobs(full, len(llm.tokenize(c.prompt)), logit_bias=bias)
            nll, count = nll - sum(lps), count + len(lps)
        assert p.perplexity == pytest.approx(math.exp(nll / count), rel=1e-6)
        return p

    plain, short, long = under(0.0), under(40.0), under(-40.0)
    assert short.replies == ("",) * len(found)  # a message ended at once
    assert all(len(llm.tokenize(r, bos=False)) >= 5 for r in long.replies)  # never ended
    assert len({plain.perplexity, short.perplexity, long.perplexity}) == 3


# ---------------------------------------------------------------- pairs


def test_contexts_end_with_the_persons_tag_and_skip_media_and_empty_replies() -> None:
    found = pairs.contexts(EXAMPLES)
    assert [c.reply for c in found] == [" seven\n", " hi there\n", " yes we are going\n"]
    assert [c.timestamp for c in found] == sorted(c.timestamp for c in found)
    for c in found:
        assert c.prompt.endswith("\n[Sam]") and c.tag == "[Sam]"
        assert c.turns + c.tag == c.prompt and c.turns.endswith("\n")
    # At most CONTEXT_TURNS turns before the reply: the latest ones.
    assert found[0].turns == "[Riya] three\n[Sam] four\n[Riya] five\n[Riya] six\n"
    long = example("".join(f"[Riya] {'x' * 150} {i}\n" for i in range(4)), "[Sam] ok\n", "t")
    (c,) = pairs.contexts([long])
    assert len(c.turns) <= pairs.CONTEXT_CHARS and c.turns.endswith(" 3\n")
    early, held = pairs.split([*found, c] * 5, 2)
    assert len(held) == 4 and len(early) == 16  # at least a fifth is held out
    assert pairs.split(found[:1], 5) == (found[:1], [])


def test_contrast_and_pole_pairs() -> None:
    found = pairs.contexts(EXAMPLES)
    made = pairs.contrast_pairs(found, HAPPY, n=10)
    assert len(made) == pairs.MIN_PAIRS
    prompts = {c.prompt for c in found}
    assert all(p.context in prompts for p in made)
    uses = Counter(p.context for p in made)
    assert set(uses) == prompts and max(uses.values()) - min(uses.values()) <= 1
    assert {(p.positive, p.negative) for p in made} == {
        (f" {a}\n", f" {b}\n") for a, b in HAPPY.replies
    }
    assert all(p.positive != p.negative for p in made)
    assert len(pairs.contrast_pairs(found, HAPPY, n=150)) == 150
    with pytest.raises(pairs.PairsError, match="no contexts"):
        pairs.contrast_pairs([], HAPPY)

    axis = pairs.pole_axis("mood", " cheerful ", "grumpy")
    assert (axis.positive, axis.negative, axis.replies) == ("cheerful", "grumpy", ())
    poles = pairs.pole_pairs(found, axis)
    assert len(poles) == pairs.MIN_PAIRS
    assert poles[0].positive == " *cheerful* seven\n" and poles[0].negative == " *grumpy* seven\n"
    for bad in ("", "   ", "x" * 81, "two\nlines"):
        with pytest.raises(pairs.PairsError, match="positive pole"):
            pairs.pole_axis("mood", bad, "grumpy")
        with pytest.raises(pairs.PairsError, match="negative pole"):
            pairs.pole_axis("mood", "cheerful", bad)


def test_pairs_files_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    good = json.dumps({"positive": "yay", "negative": "meh"})
    path.write_text(f"{good}\n\n{good}\n", encoding="utf-8")
    axis = pairs.file_axis("mine", path)
    assert axis.name == "mine" and axis.replies == (("yay", "meh"), ("yay", "meh"))
    cases = {
        "{not json": r"line 3: not JSON",
        json.dumps({"positive": "yay"}): r"line 3: 'negative' must be a one-line text",
        json.dumps({"positive": "", "negative": "x"}): r"line 3: 'positive' must be",
        json.dumps({"positive": "a\nb", "negative": "x"}): r"line 3: 'positive' must be",
        json.dumps({"positive": 3, "negative": "x"}): r"line 3: 'positive' must be",
        json.dumps(["yay", "meh"]): r"line 3: expected an object",
        json.dumps({"positive": "same", "negative": " same"}): r"line 3: the two sides are the",
        "[" * 100_000: r"line 3: not JSON",
    }
    for line, message in cases.items():
        path.write_text(f"{good}\n\n{line}\n{good}\n", encoding="utf-8")
        with pytest.raises(pairs.PairsError) as err:
            pairs.file_axis("mine", path)
        assert str(err.value).startswith(f"{path}, ") and err.match(message)
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(pairs.PairsError, match=rf"^{re.escape(str(path))}: no pairs"):
        pairs.file_axis("mine", path)
    with pytest.raises(pairs.PairsError, match="cannot read"):
        pairs.file_axis("mine", tmp_path / "missing.jsonl")


# ---------------------------------------------------------------- control-vector files


def field(reader: gguf.GGUFReader, name: str) -> Any:
    f = reader.fields[name]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0].item()


def test_control_vector_files_round_trip_in_llama_cpps_layout(
    tiny: TinyModel, tmp_path: Path
) -> None:
    rows = np.zeros((5, 64), dtype=np.float32)
    rows[1:3] = strong(2)
    rows[4] = 0.25
    meta = {"name": "happy", "band": [1, 4], "range_positive": 2.0, "pairs": 100,
            "sweep": [{"strength": 0.0, "perplexity": 9.5}], "flag": True}  # fmt: skip
    path = write_control_vector(tmp_path / "v.gguf", ControlVector("gemma3", rows, meta))
    assert not (tmp_path / "v.gguf.tmp").exists()
    back = read_control_vector(path)
    assert back.model_hint == "gemma3" and back.meta == meta
    assert np.array_equal(back.rows, rows) and back.n_embd == 64
    assert read_control_vector(path, 8).rows.shape == (8, 64)

    reader = gguf.GGUFReader(str(path))
    assert field(reader, "general.architecture") == "controlvector"
    assert field(reader, "controlvector.model_hint") == "gemma3"
    names = [t.name for t in reader.tensors]
    assert names == ["direction.1", "direction.2", "direction.4"]  # unsteered rows left out
    assert field(reader, "controlvector.layer_count") == len(names)
    for t in reader.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32 and int(t.n_elements) == 64
        assert np.array_equal(np.asarray(t.data).reshape(-1), rows[int(t.name.split(".")[1])])

    with pytest.raises(ValueError, match="not a control vector"):
        read_control_vector(tiny.gguf_path)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(junk))}: not a GGUF file"):
        read_control_vector(junk)

    check_fits(path, back, "gemma3", 64, 5)
    at = re.escape(str(path))
    with pytest.raises(ValueError, match=rf"^{at}: .*'gemma3' model, not this 'llama' one"):
        check_fits(path, back, "llama", 64, 5)
    with pytest.raises(ValueError, match=rf"^{at}: .*64 wide.* 128 wide"):
        check_fits(path, back, "gemma3", 128, 5)
    with pytest.raises(ValueError, match=rf"^{at}: .*steers block 4; this model has 3 blocks"):
        check_fits(path, back, "gemma3", 64, 3)


def test_a_saved_vector_steers_llama_cpp_like_its_rows(
    tiny: TinyModel, llama: LlamaModel, tmp_path: Path
) -> None:
    rows = np.zeros((2, 64), dtype=np.float32)
    rows[1] = strong(1, seed=5)[0]
    cal = {
        "band": [1, 1],
        "range_positive": 1.5,
        "range_negative": 0.5,
        "baseline_perplexity": 12.0,
        "sweep": [{"strength": 0.0, "perplexity": 12.0, "degenerate": 0.0}],
        "positive": "happy",
        "negative": "sad",
    }
    path = library.vector_path(tmp_path / "m", "happy")
    assert library.save(path, ControlVector("gemma3", rows, cal)) == path
    (vector,) = library.vectors(tmp_path / "m", ("gemma3", 64, 2))
    assert (vector.name, vector.path, vector.band) == ("happy", path, (1, 1))
    assert vector.poles == ("happy", "sad")
    assert vector.calibration.points[0].perplexity == 12.0
    assert (vector.calibration.positive, vector.calibration.negative) == (1.5, 0.5)
    assert np.array_equal(vector.rows, rows)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: .*'gemma3' model"):
        library.load(path, ("qwen2", 64, 2))
    with pytest.raises(ValueError, match="not a usable vector name"):
        library.vector_path(tmp_path / "m", "../escape")
    bare = write_control_vector(tmp_path / "bare.gguf", ControlVector("gemma3", rows, {}))
    with pytest.raises(ValueError, match="without convsim's calibration"):
        library.load(bare)
    # What `mix` gives llama.cpp is what torch adds to block 1 at strength 1.
    data, start, end = library.mix({"happy": 1.0}, {"happy": vector}) or (None, 0, 0)
    tokens = llama.tokenize(TEXT)
    llama.set_control_vector(data, start, end)
    try:
        steered = llama.next_logits(tokens)
    finally:
        llama.set_control_vector(None)
    assert corr(steered, hooked_logits(tiny.model, tokens, {1: 1.5 * rows[1]})[-1]) >= 0.99


# ---------------------------------------------------------------- the library


def vector(
    name: str, rows: np.ndarray, positive: float, negative: float, band: tuple[int, int]
) -> library.Vector:
    cal = Calibration(positive, negative, 10.0)
    return library.Vector(name, Path(f"{name}.gguf"), rows, band, cal, {})


def test_mix_averages_sliders_and_never_pushes_past_one_vector_at_its_limit() -> None:
    rng = np.random.default_rng(6)
    a, b = np.zeros((4, 16)), np.zeros((4, 16))
    a[1:3], b[2:4] = rng.normal(0, 1, (2, 16)), rng.normal(0, 1, (2, 16))
    b[2] = a[2]  # same direction at block 2
    found = {"a": vector("a", a, 2.0, 1.0, (1, 2)), "b": vector("b", b, 3.0, 0.5, (2, 3))}

    # Positions whose sizes sum past 1 are scaled together to sum 1: the mix is the average
    # of the two vectors at their ends (2a and 3b; at -1, -1a and -0.5b).
    mixed = library.mix({"a": 1.0, "b": 1.0}, found)
    assert mixed is not None
    rows, start, end = mixed
    assert rows.shape == (3, 16) and rows.dtype == np.float32 and (start, end) == (1, 3)
    assert np.allclose(rows, ((2.0 * a + 3.0 * b) / 2)[1:], atol=1e-6)
    low = library.mix({"a": -1.0, "b": -1.0}, found)
    assert low is not None and np.allclose(low[0], ((-1.0 * a - 0.5 * b) / 2)[1:], atol=1e-6)
    uneven = library.mix({"a": 0.9, "b": -0.6}, found)
    assert uneven is not None
    assert np.allclose(uneven[0], ((0.9 * 2.0 * a - 0.6 * 0.5 * b) / 1.5)[1:], atol=1e-6)
    # So no block is longer than one vector at the end of its slider's side, whatever the
    # vectors' lengths (a file holds rows up to its last band block: "s" stops at block 2).
    found["s"] = vector("s", 3 * a[:3], 1.0, 2.0, (1, 2))
    for chosen in (
        {"a": 1.0, "b": 1.0}, {"a": -1.0, "b": -1.0}, {"a": 0.9, "b": -0.6},
        {"s": -1.0, "b": 1.0}, {"s": 0.7, "b": -0.7, "a": 0.7},
    ):  # fmt: skip
        got = library.mix(chosen, found)
        assert got is not None
        longest = np.zeros(4)
        for k, x in chosen.items():
            v = found[k]
            end = (v.calibration.positive if x > 0 else v.calibration.negative) * v.rows
            longest[: len(end)] = np.maximum(longest[: len(end)], np.linalg.norm(end, axis=1))
        assert np.all(np.linalg.norm(got[0], axis=1) <= longest[1:] + 1e-5)
    del found["s"]
    # Positions past -1..1 count as -1 or 1; one that is not a number is refused.
    clipped = library.mix({"a": 2.0, "b": 1.0}, found)
    assert clipped is not None and np.allclose(clipped[0], rows)
    with pytest.raises(ValueError, match="must be numbers"):
        library.mix({"a": math.nan, "b": 0.5}, found)
    assert library.budget({"a": 1.0, "b": -1.0}) == 0.5
    assert library.budget({"a": 0.4, "b": -0.6}) == 1.0  # sizes sum to 1: as set
    assert library.budget({"a": 1.0, "b": 1.0, "c": -1.0}) == pytest.approx(1 / 3)

    # One slider within its range is not scaled; -1 uses the negative side's strength.
    rows, start, end = library.mix({"a": -1.0}, found) or (np.zeros(0), 0, 0)
    assert np.allclose(rows, -1.0 * a[1:]) and (start, end) == (1, 2)
    half = library.mix({"b": 0.5, "a": 0.0}, found)
    assert half is not None and np.allclose(half[0], 1.5 * b[1:]) and half[1:] == (2, 3)
    # A file holds rows up to its last steered block: shorter vectors mix as zero-padded.
    found["c"] = vector("c", a[:3], 2.0, 1.0, (1, 2))
    padded = library.mix({"c": 0.5, "b": 0.5}, found)
    assert padded is not None and np.allclose(padded[0], (1.0 * a + 1.5 * b)[1:])
    found["w"] = vector("w", np.ones((4, 8)), 1.0, 1.0, (1, 1))
    with pytest.raises(ValueError, match="different widths"):
        library.mix({"a": 0.5, "w": 0.5}, found)
    assert library.mix({"a": 0.0, "b": 0.0}, found) is None
    assert library.mix({}, found) is None
    with pytest.raises(KeyError, match="nope"):
        library.mix({"nope": 0.5}, found)


def test_parse_mix() -> None:
    assert library.parse_mix("happy=0.5,brief=-1") == {"happy": 0.5, "brief": -1.0}
    assert library.parse_mix(" happy = 1 , ") == {"happy": 1.0}
    assert library.parse_mix("") == {}
    for bad in ("happy=2", "happy", "happy=-1.5", "happy=nan", "=0.5", "happy=x"):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            library.parse_mix(bad)
    with pytest.raises(ValueError, match="not a usable vector name"):
        library.parse_mix("Happy Face=0.5")
