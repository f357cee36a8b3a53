"""Pairs of the persona's own replies (`core.steering.own`): the real embedding model ranks
sampled replies along an axis, and the tiny model on llama.cpp samples them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from tinymodels import TinyModel

from convsim.core.inference.llama import LlamaModel
from convsim.core.memory import shared_embedder
from convsim.core.steering import BUILT_IN, own, pairs
from convsim.core.steering.build import chosen_method, method_note
from convsim.core.steering.pairs import Context, PairsError

TAG = "[Sam]"
CONTEXTS = [
    Context(f"[Riya] {turn}\n{TAG}", " ok\n", "2024-01-01T10:00:00", TAG)
    for turn in ("hey are we going", "the place", "you there", "are we", "hey you", "going")
]


@pytest.fixture(scope="module")
def llama(tiny: TinyModel) -> Iterator[LlamaModel]:
    model = LlamaModel(tiny.gguf_path, n_ctx=256, threads=1)
    yield model
    model.close()


def test_the_embedding_model_ranks_replies_along_the_axis() -> None:
    embedder = shared_embedder()
    happy = own.probe(embedder, BUILT_IN["happy"])
    replies = ["ugh this is awful, worst day, i hate it", "i'm at the station",
               "yay i love it, best day ever haha", "i'm at the station"]  # fmt: skip
    pair = own.rank(embedder, happy, CONTEXTS[0], replies)
    assert pair is not None and pair.context == CONTEXTS[0].prompt
    assert (pair.positive, pair.negative) == (
        " yay i love it, best day ever haha\n",
        " ugh this is awful, worst day, i hate it\n",
    )
    # A pole axis is ranked by its two descriptions; the same replies, the other way round.
    grumpy = own.probe(embedder, pairs.pole_axis("grumpy", "grumpy and miserable", "delighted"))
    turned = own.rank(embedder, grumpy, CONTEXTS[0], replies)
    assert turned is not None and (turned.positive, turned.negative) == (
        pair.negative,
        pair.positive,
    )
    # Fewer than two different texts: no pair.
    assert own.rank(embedder, happy, CONTEXTS[0], ["same", " same ", ""]) is None


def test_own_pairs_are_the_furthest_of_the_persona_s_samples(llama: LlamaModel) -> None:
    embedder = shared_embedder()
    axis = BUILT_IN["happy"]
    seen: list[tuple[int, int]] = []
    found = own.own_pairs(llama, embedder, axis, CONTEXTS, 4, lambda d, t: seen.append((d, t)), 3)
    # Pairs come from the contexts in order, each the furthest-apart of that moment's samples.
    samples = own.sample(llama, CONTEXTS, 3)
    direction = own.probe(embedder, axis)
    expected = [own.rank(embedder, direction, c, s) for c, s in zip(CONTEXTS, samples, strict=True)]
    assert found == [p for p in expected if p is not None][:4]
    assert all(p.positive != p.negative for p in found)
    for p in found:
        moment = samples[[c.prompt for c in CONTEXTS].index(p.context)]
        assert {p.positive.strip(), p.negative.strip()} <= {" ".join(s.split()) for s in moment}
    # Progress counts sampled replies up to the total, once per moment and sample.
    assert seen[-1][0] == seen[-1][1] and seen[-1][1] >= 3 * 4
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_replies_that_are_all_alike_give_no_pairs(llama: LlamaModel) -> None:
    class Flat:  # every reply lands on the same point: still ranked, never paired
        def embed(self, texts: list[str]) -> np.ndarray:
            return np.ones((len(texts), 4), np.float32)

    with pytest.raises(PairsError, match="all alike"):
        own.own_pairs(llama, Flat(), BUILT_IN["happy"], CONTEXTS[:2], 2, samples=3)


def test_own_is_for_every_axis_but_length() -> None:
    """A pole axis is fitted on its own replies (they carry no stage direction); a length axis
    gets the fit on where messages end; `fit` still gives a pole axis the mean."""
    poles = pairs.pole_axis("cheerful", "cheerful", "grumpy")
    assert [chosen_method("own", a) for a in (BUILT_IN["happy"], poles, BUILT_IN["brief"])] == [
        "own",
        "own",
        "fit",
    ]
    assert chosen_method("fit", poles) == "mean"
    assert "own replies (8 after each moment)" in method_note("own", "own", poles)
    assert "where the person's messages end" in method_note("own", "fit", BUILT_IN["brief"])
