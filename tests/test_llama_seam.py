"""The llama.cpp seam (`core/inference/llama/`): control vectors, embeddings and scoring, for
real on the tiny gemma3 model (2 blocks, n_embd 64), and the rule that nothing else in the
source tree touches llama_cpp."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tinymodels import TinyModel

from convsim.core.inference.llama import LlamaModel, machine

ROOT = Path(__file__).resolve().parent.parent
TEXT = "[Sam] hey we are going"


@pytest.fixture(scope="module")
def model(tiny: TinyModel) -> LlamaModel:
    return LlamaModel(tiny.gguf_path, n_ctx=256, threads=2)


def test_control_vector_zero_changes_nothing_and_clearing_restores(model: LlamaModel) -> None:
    tokens = model.tokenize(TEXT)
    assert (model.n_layers(), model.n_embd()) == (2, 64)
    plain = model.next_logits(tokens)
    model.set_control_vector(np.zeros((2, 64), dtype=np.float32))
    assert np.abs(model.next_logits(tokens) - plain).max() < 1e-5
    steer = np.random.default_rng(0).normal(0, 1.0, (2, 64)).astype(np.float32)
    model.set_control_vector(steer)
    steered = model.next_logits(tokens)
    assert np.abs(steered - plain).max() > 0.1
    # The same vector again gives the same logits; a stronger one moves them further.
    model.set_control_vector(steer)
    assert np.abs(model.next_logits(tokens) - steered).max() < 1e-5
    model.set_control_vector(3 * steer)
    assert np.abs(model.next_logits(tokens) - plain).max() > np.abs(steered - plain).max()
    model.set_control_vector(None)
    assert np.abs(model.next_logits(tokens) - plain).max() < 1e-5


def test_control_vector_change_invalidates_the_cache(model: LlamaModel) -> None:
    tokens = model.tokenize(TEXT)
    plain = model.next_logits(tokens)  # the cache now holds `tokens`, computed without a vector
    steer = np.full((1, 64), 0.5, dtype=np.float32)  # one row: steers block 1 only
    model.set_control_vector(steer)
    before = model.evaluated
    steered = model.next_logits(tokens)
    assert model.evaluated - before == len(tokens)  # nothing reused from the old cache
    assert np.abs(steered - plain).max() > 0.1
    model.set_control_vector(None)


def test_control_vector_block_range_and_bad_input(model: LlamaModel) -> None:
    tokens = model.tokenize(TEXT)
    plain = model.next_logits(tokens)
    steer = np.full((2, 64), 0.5, dtype=np.float32)
    # Blocks 1..1 are steered by default on a 2-block model; a range that excludes block 1
    # cannot be given, and an empty one is refused.
    with pytest.raises(ValueError, match=r"layers 2\.\.1"):
        model.set_control_vector(steer, layer_start=2)
    with pytest.raises(ValueError, match=r"expected \(at most 2\) x 64 floats"):
        model.set_control_vector(np.zeros((3, 64)))
    with pytest.raises(ValueError, match="expected"):
        model.set_control_vector(np.zeros(64))
    with pytest.raises(ValueError, match="finite"):
        model.set_control_vector(np.full((2, 64), np.nan))
    assert np.abs(model.next_logits(tokens) - plain).max() < 1e-5  # refusals changed nothing


# Steering a suffix: `steer_from`. On the 2-block model only block 1 (the last) is steered, so
# a position's steering shows in its own logits only; on the 3-block `deep` model block 1's
# steered output also reaches later positions through block 2's attention, so a cached steered
# token that should not be there (or the reverse) changes the last position's logits.


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaModel]:
    import tinymodels

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tinymodels, "LAYERS", 3)
        built = tinymodels.build_tiny("gemma3", tmp_path_factory.mktemp("deep"))
    model = LlamaModel(built.gguf_path, n_ctx=256, threads=1)
    yield model
    model.close()


def vector(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3.0, (rows, 64)).astype(np.float32)


def fresh_logits(model: LlamaModel, tokens: list[int], steer_from: int) -> np.ndarray:
    """The logits with nothing cached: every token evaluated under the current vector."""
    model.reset()
    before = model.evaluated
    logits = model.next_logits(tokens, steer_from)
    assert model.evaluated - before == len(tokens)
    return logits


def test_steer_from_past_the_end_steers_nothing(model: LlamaModel) -> None:
    tokens = model.tokenize(TEXT)
    plain = model.next_logits(tokens)
    model.set_control_vector(vector(1))
    try:
        before = model.evaluated
        assert np.abs(model.next_logits(tokens, steer_from=len(tokens)) - plain).max() < 1e-5
        assert model.evaluated - before == 1  # the plain cache is still valid
        last = model.next_logits(tokens, steer_from=len(tokens) - 1)
        assert np.abs(last - plain).max() > 0.1
    finally:
        model.set_control_vector(None)


def test_scores_are_steered_from_steer_from_on(model: LlamaModel) -> None:
    tokens = model.tokenize(TEXT)
    k = 6
    plain = np.array(model.token_logprobs(tokens, 1))
    model.set_control_vector(vector(1, seed=1))
    try:
        steered = np.array(model.token_logprobs(tokens, 1))
        part = np.array(model.token_logprobs(tokens, 1, steer_from=k))
    finally:
        model.set_control_vector(None)
    # part[i] predicts token i + 1 from position i: unsteered before k, steered from k on.
    assert np.abs(steered - plain).min() > 1e-3
    assert np.allclose(part[:k], plain[:k], atol=1e-4)
    assert np.allclose(part[k:], steered[k:], atol=1e-4)


def test_a_vector_change_reevaluates_only_the_steered_suffix(deep: LlamaModel) -> None:
    tokens = deep.tokenize(TEXT)
    n, k = len(tokens), 6

    def cost(steer_from: int = k) -> tuple[np.ndarray, int]:
        before = deep.evaluated
        logits = deep.next_logits(tokens, steer_from)
        return logits, deep.evaluated - before

    deep.reset()
    plain = deep.next_logits(tokens)  # cached unsteered
    first, second = vector(2, seed=2), vector(2, seed=3)
    try:
        deep.set_control_vector(first)
        logits, evaluated = cost()
        assert evaluated == n - k  # the unsteered prefix stayed valid
        assert np.abs(logits - plain).max() > 0.1
        assert np.abs(logits - fresh_logits(deep, tokens, k)).max() < 1e-4

        deep.set_control_vector(second)
        logits, evaluated = cost()
        assert evaluated == n - k
        by_second = fresh_logits(deep, tokens, k)
        assert np.abs(logits - by_second).max() < 1e-4
        assert np.abs(by_second - fresh_logits(deep, tokens, 0)).max() > 1e-3  # k matters here
        deep.next_logits(tokens, k)  # cached under `second` from k again

        # The same array set again is a new vector as far as the cache knows.
        deep.set_control_vector(second)
        logits, evaluated = cost()
        assert evaluated == n - k and np.abs(logits - by_second).max() < 1e-4
        # Same vector, same start: only the last token, for fresh logits.
        assert cost()[1] == 1
        # Steering from later: tokens k.. were steered in the cache, so they go again.
        logits, evaluated = cost(k + 3)
        assert evaluated == n - k
        assert np.abs(logits - fresh_logits(deep, tokens, k + 3)).max() < 1e-4
        # Steering from earlier: the unsteered prefix up to the new start is kept.
        logits, evaluated = cost(k)
        assert evaluated == n - k
        assert np.abs(logits - by_second).max() < 1e-4
    finally:
        deep.set_control_vector(None)
    # No vector: the steered suffix is evaluated again, unsteered, and the logits are plain.
    logits, evaluated = cost()
    assert evaluated == n - k and np.abs(logits - plain).max() < 1e-4
    assert cost(0)[1] == 1


def test_generation_and_scoring_keep_the_unsteered_prefix(deep: LlamaModel) -> None:
    tokens = deep.tokenize(TEXT)
    n, k = len(tokens), 5
    greedy = dict(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                  presence_penalty=0.0, frequency_penalty=0.0)  # fmt: skip
    deep.reset()
    plain_scores = deep.token_logprobs(tokens, k + 1)  # fills the cache, unsteered
    deep.set_control_vector(vector(2, seed=4))
    try:
        expected = fresh_logits(deep, tokens, k)
        deep.reset()
        deep.token_logprobs(tokens, n, steer_from=n)  # only decodes: cached unsteered again
        before = deep.evaluated
        gen = deep.generate(tokens, seed=0, steer_from=k, **greedy)
        assert next(gen) == int(np.argmax(expected))
        gen.close()
        assert deep.evaluated - before == n - k
        # Scoring after it reuses the prefix; the steered scores differ from the plain ones.
        before = deep.evaluated
        steered_scores = deep.token_logprobs(tokens, k + 1, keep=k, steer_from=k)
        assert deep.evaluated - before == n - k
        assert np.abs(np.array(steered_scores) - plain_scores).max() > 1e-3
        deep.reset()
        assert np.allclose(steered_scores, deep.token_logprobs(tokens, k + 1, steer_from=k),
                           atol=1e-4)  # fmt: skip
        deep.token_logprobs(tokens, n, steer_from=n)  # the cache: unsteered
    finally:
        deep.set_control_vector(None)
    before = deep.evaluated
    unsteered = deep.token_logprobs(tokens, k + 1, keep=k, steer_from=k)
    assert np.allclose(unsteered, plain_scores, atol=1e-4)
    assert deep.evaluated - before == n - k


def test_embeddings_are_deterministic_and_tell_texts_apart(model: LlamaModel) -> None:
    texts = ["hey are we going", "the the the", "hey are we going"]
    vectors = model.embed(texts)
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    # Texts embedded together do not see each other: each equals its embedding alone.
    alone = model.embed(["the the the"])
    assert np.abs(alone[0] - vectors[1]).max() < 1e-5
    assert np.array_equal(model.embed(["the the the"]), alone)
    assert np.abs(vectors[0] - vectors[2]).max() < 1e-5
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-2
    assert model.embed([]).shape == (0, 64)
    # The embedding context is separate: the chat context's cache is untouched.
    tokens = model.tokenize(TEXT)
    model.next_logits(tokens)
    model.embed(["something else"])
    before = model.evaluated
    model.next_logits(tokens)
    assert model.evaluated - before == 1


def test_mean_states_are_the_personas_last_hidden_states(tiny: TinyModel, adapter: Path) -> None:
    """`mean_states`: the mean over tokens[first:] of the last hidden state (after the final
    norm), with the model's LoRA adapters. Times the tied output matrix it must give the mean
    of the logits the chat context predicts at those positions, with and without the adapter
    (so the adapter acts on the states context as on the chat context)."""
    from convsim.core.inference.llama import EMBED_CTX

    output = tiny.model.get_input_embeddings().weight.detach().numpy()
    found = []
    for adapters in ([], [(adapter, 1.0)]):
        m = LlamaModel(tiny.gguf_path, adapters, n_ctx=256, threads=2)
        try:
            tokens = m.tokenize(TEXT)
            states = m.mean_states([(tokens, 3)])
            assert states.shape == (1, 64) and states.dtype == np.float32
            rows = [m.next_logits(tokens[: i + 1]) for i in range(3, len(tokens))]
            expected = np.mean(rows, axis=0)
            assert np.abs(states[0] @ output.T - expected).max() < 1e-2 * np.abs(expected).max()
            found.append(states[0])
            # Lists packed into one decode equal each list alone: nothing padded, nothing seen
            # across lists; a list longer than the context keeps its last tokens.
            items = [(tokens, 3), (m.tokenize("the the the"), 1), (tokens, 5)] * 12
            items.append(([*tokens] * (EMBED_CTX // len(tokens) + 2), 0))
            together = m.mean_states(items)
            alone = np.stack([m.mean_states([item])[0] for item in items])
            assert np.abs(together - alone).max() < 2e-3  # batch shapes round differently
            with pytest.raises(ValueError, match="no tokens from 30"):
                m.mean_states([(tokens, 30)])
            # The states context is separate: the chat context's cache is untouched.
            m.next_logits(tokens)
            m.mean_states([(tokens, 3)])
            before = m.evaluated
            m.next_logits(tokens)
            assert m.evaluated - before == 1
        finally:
            m.close()
    assert np.abs(found[0] - found[1]).max() > 1e-3


def test_token_logprobs_match_next_logits(model: LlamaModel) -> None:
    tokens = model.tokenize(TEXT)
    logprobs = model.token_logprobs(tokens, 3)
    assert len(logprobs) == len(tokens) - 3
    for i, lp in zip(range(3, len(tokens)), logprobs, strict=True):
        logits = model.next_logits(tokens[:i]).astype(np.float64)
        top = logits.max()
        expected = logits[tokens[i]] - top - np.log(np.exp(logits - top).sum())
        assert lp == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="kept prefix"):
        model.token_logprobs(tokens, 2, keep=2)


def test_generation_after_scoring_samples_from_fresh_logits(model: LlamaModel) -> None:
    tokens = model.tokenize(TEXT)
    best = int(np.argmax(model.next_logits(tokens)))
    model.token_logprobs(tokens, 1)  # the cache holds `tokens`, without the last logits
    greedy = dict(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
    gen = model.generate(tokens, seed=0, presence_penalty=0.0, frequency_penalty=0.0, **greedy)
    assert next(gen) == best
    gen.close()


def test_a_logit_bias_shifts_scoring_and_sampling(model: LlamaModel) -> None:
    tokens = model.tokenize(TEXT)
    plain = model.next_logits(tokens[:-1]).astype(np.float64)
    unlikely = int(np.argmin(plain))
    bias = np.zeros(model.n_vocab(), dtype=np.float32)
    bias[[tokens[-1], unlikely]] = (2.0, 30.0)
    shifted = plain + bias
    top = shifted.max()
    expected = shifted[tokens[-1]] - top - np.log(np.exp(shifted - top).sum())
    (lp,) = model.token_logprobs(tokens, len(tokens) - 1, logit_bias=bias)
    assert lp == pytest.approx(expected, abs=1e-3)
    (unbiased,) = model.token_logprobs(tokens, len(tokens) - 1)
    assert lp < unbiased - 1  # the unlikely token, now the likeliest, took most of the mass
    sampled = dict(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0)
    gen = model.generate(tokens[:-1], seed=3, presence_penalty=0.0, frequency_penalty=0.0,
                         logit_bias=bias, **sampled)  # fmt: skip
    assert next(gen) == unlikely
    gen.close()
    with pytest.raises(ValueError, match=r"logit_bias has shape \(3,\)"):
        model.token_logprobs(tokens, 1, logit_bias=np.zeros(3))


def test_models_load_without_amx_buffers_on_a_build_with_amx(
    tiny: TinyModel, model: LlamaModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp's AMX path crashes the first decode on some Xeons: on a build that has it,
    models load without the extra buffer types, and give the same logits."""
    import llama_cpp.llama_cpp as api

    monkeypatch.setattr(machine, "amx_in_build", lambda: True)
    monkeypatch.delenv(machine.ENV_AMX, raising=False)
    with machine.model_params_without_amx():
        assert api.llama_model_default_params().use_extra_bufts is False
    assert api.llama_model_default_params().use_extra_bufts is True
    monkeypatch.setenv(machine.ENV_AMX, "1")
    with machine.model_params_without_amx():
        assert api.llama_model_default_params().use_extra_bufts is True
    monkeypatch.delenv(machine.ENV_AMX)
    plain = LlamaModel(tiny.gguf_path, n_ctx=256, threads=2)
    tokens = plain.tokenize(TEXT)
    assert np.abs(plain.next_logits(tokens) - model.next_logits(tokens)).max() < 1e-3


def test_missing_files_are_named(tiny: TinyModel, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf: model file not found"):
        LlamaModel(tmp_path / "missing.gguf")
    with pytest.raises(FileNotFoundError, match=r"gone\.gguf: adapter file not found"):
        LlamaModel(tiny.gguf_path, [(tmp_path / "gone.gguf", 1.0)], n_ctx=64)


SEAM = "core/inference/llama/"
# Modules that may import llama_cpp besides the seam: GGUF tooling in convert/, and the latency
# benchmark, whose baseline is raw llama-cpp-python (its public API only).
MAY_IMPORT = {
    SEAM,
    "convert/quantize.py",
    "convert/llama_logs.py",
    "convert/vocab.py",
    "benchmarks/latency.py",
}
_IMPORT = re.compile(r"^\s*(?:import llama_cpp|from llama_cpp\b)", re.MULTILINE)
_PRIVATE = re.compile(r"\._(?:ctx|model|stack)\b")


def test_only_the_seam_touches_llama_cpp() -> None:
    offenders = []
    for package in ("core", "tui", "convert", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            source = path.read_text(encoding="utf-8")
            patterns = (
                []
                if rel.startswith(SEAM)
                else [_PRIVATE]
                if rel in MAY_IMPORT
                else [_IMPORT, _PRIVATE]
            )
            for pattern in patterns:
                for match in pattern.finditer(source):
                    line = source.count("\n", 0, match.start()) + 1
                    offenders.append(f"{rel}:{line}: {match.group().strip()}")
    assert not offenders, "only core/inference/llama/ may use llama_cpp:\n" + "\n".join(offenders)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_adapter_is_refused_naming_it_not_a_crash(
    tiny: TinyModel, adapter: Path, tmp_path: Path, damage: str
) -> None:
    """llama.cpp reads a damaged adapter past its end and takes the process down (a
    segfault): it runs in a child process here, so that the old behaviour fails the test."""
    import subprocess
    import sys

    data = adapter.read_bytes()
    broken = tmp_path / "adapter.gguf"
    broken.write_bytes(
        {
            "garbage": np.random.default_rng(0).bytes(5000),
            "truncated": data[: len(data) // 2],
            "empty": b"",
        }[damage]
    )
    code = (
        "from convsim.core.inference.llama import LlamaModel\n"
        "try:\n"
        f"    LlamaModel({str(tiny.gguf_path)!r}, [({str(broken)!r}, 1.0)], n_ctx=64)\n"
        "except ValueError as e:\n"
        "    print('refused:', e)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith(f"refused: {broken}: "), run.stdout
