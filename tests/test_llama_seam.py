"""The llama.cpp seam (`core/inference/llama/`): control vectors, embeddings and scoring, for
real on the tiny gemma3 model (2 blocks, n_embd 64), and the rule that nothing else in the
source tree touches llama_cpp."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from tinymodels import TinyModel

from convsim.core.inference.llama import LlamaModel

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


def test_missing_files_are_named(tiny: TinyModel, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf: model file not found"):
        LlamaModel(tmp_path / "missing.gguf")
    with pytest.raises(FileNotFoundError, match=r"gone\.gguf: adapter file not found"):
        LlamaModel(tiny.gguf_path, [(tmp_path / "gone.gguf", 1.0)], n_ctx=64)


SEAM = "core/inference/llama/"
# Modules that may import llama_cpp besides the seam: GGUF tooling in convert/, and the latency
# benchmark, whose baseline is raw llama-cpp-python (its public API only).
MAY_IMPORT = {SEAM, "convert/quantize.py", "convert/llama_logs.py", "benchmarks/latency.py"}
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
