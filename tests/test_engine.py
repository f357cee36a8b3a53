"""The inference engine: streaming replies, autocomplete, forever-chat with loop breaking, KV-cache
reuse, context trimming, cancellation and LoRA adapters (the `tiny` and `adapter` fixtures come
from conftest.py).

Fast tests run on a tiny random gemma3 GGUF (tests/tinymodels.py); tests on the real default base
are marked slow.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tinymodels import TinyModel, llama_logits

from convsim.core.data.turns import render
from convsim.core.inference.engine import Engine, Reply, Sampling, ends_message, message_tokens
from convsim.core.inference.loops import is_loop, loop_rate, normalise

GREEDY = Sampling(temperature=0.0, seed=0, max_tokens=12)
CHAT = [("Riya", "hey are we going"), ("Sam", "yes we are"), ("Riya", "the place")]


@pytest.fixture(scope="module")
def engine(tiny: TinyModel) -> Engine:
    return Engine(tiny.gguf_path, n_ctx=512, threads=2)


# ---------------------------------------------------------------- pure functions


def test_loop_rate_counts_repeats_and_near_repeats() -> None:
    assert normalise("Haha, YES!!  ok") == "haha yes ok"
    assert is_loop(["haha yes"], "Haha yes!")
    assert is_loop(
        ["we should go to the beach on sunday"], "so we should go to the beach on sunday"
    )
    assert not is_loop(["we should go to the beach"], "what time is dinner tonight")
    varied = ["hi", "how are you", "good thanks, you?", "tired but fine", "lol same"]
    assert loop_rate(varied) == 0.0
    assert loop_rate(["ok sure", "ok sure", "ok sure!", "OK sure"]) == 1.0
    assert loop_rate(["a", "b", "a", "c"], window=1) == 0.0  # "a" is out of a 1-message window


# ---------------------------------------------------------------- tiny model


def test_simulate_streams_one_capped_line_on_whole_words(engine: Engine) -> None:
    stream = engine.simulate(CHAT, "Sam", GREEDY)
    pieces = list(stream)
    text = "".join(pieces)
    reply = stream.result()
    assert 0 < reply.generated_tokens <= GREEDY.max_tokens
    assert "\n" not in text and text == text.strip()
    assert reply.messages == ([text] if text else []) and reply.text == text
    assert reply.first_token_s is not None and 0 < reply.first_token_s <= reply.total_s
    assert not reply.cancelled and reply.trimmed_turns == 0
    # Greedy is deterministic, also when the cache already holds the prompt.
    assert engine.simulate(CHAT, "Sam", GREEDY).result().messages == reply.messages


def test_multi_message_replies_are_separate_lines(engine: Engine) -> None:
    s = Sampling(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=3, max_tokens=6)
    for seed in range(5):
        s.seed = seed
        stream = engine.simulate(CHAT, "Sam", s, max_messages=3)
        streamed = "".join(stream)
        reply = stream.result()
        messages = reply.messages
        assert len(messages) <= 3 and all(m == m.strip() and m for m in messages)
        assert reply.generated_tokens <= 3 * s.max_tokens
        # "\n" separates the messages in the stream too; only the cap's word trim can leave
        # part of a word shown that the reply then drops.
        assert streamed == reply.text or (reply.capped and streamed.startswith(reply.text))


def test_penalties_count_only_the_message_being_written(engine: Engine) -> None:
    """Each message is sampled afresh: counting every token as the end of a message, even a
    huge repeat penalty never sees a token twice, so greedy sampling is what it is without
    one; in one long message the same penalty changes what is sampled."""
    prompt = engine.tokens(render(CHAT) + "[Sam]")

    def greedy(penalty: float, every_token_ends: bool) -> list[int]:
        s = Sampling(temperature=0.0, repeat_penalty=penalty)
        ends = lambda piece: every_token_ends  # noqa: E731
        return list(itertools.islice(message_tokens(engine.model, prompt, s, 0, 0, ends), 24))

    plain = greedy(1.0, every_token_ends=False)
    assert len(set(plain)) < len(plain)  # greedy sampling on this model repeats tokens
    assert greedy(50.0, every_token_ends=False) != plain
    assert greedy(50.0, every_token_ends=True) == plain
    # What ends a message unless told otherwise: a line break.
    newline, word = engine.model.tokenize("\n", bos=False), engine.model.tokenize("we", bos=False)
    assert ends_message(engine.model.detokenize(newline))
    assert not ends_message(engine.model.detokenize(word))


def test_autocomplete_continues_the_partial_line(engine: Engine) -> None:
    stream = engine.autocomplete(CHAT, "Sam", "we are go", GREEDY)
    text = "".join(stream)
    assert "\n" not in text and stream.result().generated_tokens <= GREEDY.max_tokens
    # The prompt ends inside the message: everything but its last token is reused.
    stream = engine.autocomplete(CHAT, "Sam", "we are go", GREEDY)
    again = "".join(stream)
    assert again == text
    assert stream.result().reused_tokens == stream.result().prompt_tokens - 1


def _run(engine: Engine, chat: list[tuple[str, str]], speaker: str, s: Sampling) -> Reply:
    """A reply, checked against what llama.cpp really evaluated: the prompt tokens not reused,
    then one token per sampled token but the last (one more token is sampled than generated
    when the reply ends at an end-of-text token)."""
    before = engine.model.evaluated
    reply = engine.simulate(chat, speaker, s).result()
    after_prompt = engine.model.evaluated - before - (reply.prompt_tokens - reply.reused_tokens)
    assert reply.generated_tokens - 1 <= after_prompt <= reply.generated_tokens
    return reply


def test_kv_cache_reuse_evaluates_only_new_tokens(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=512, threads=2)
    cold = _run(engine, CHAT, "Sam", GREEDY)
    first = cold.prompt_tokens
    assert cold.reused_tokens == 0  # cold: the whole prompt
    longer = [*CHAT, ("Sam", cold.text), ("Riya", "hey you")]
    warm = _run(engine, longer, "Sam", GREEDY)
    new_tokens = len(engine.tokens("[Riya] hey you\n[Sam]")) - 1  # without BOS
    evaluated = warm.prompt_tokens - warm.reused_tokens
    assert evaluated <= new_tokens + len(engine.tokens(cold.text)) + 2
    assert warm.reused_tokens >= first - 2  # the earlier prompt stayed in the cache
    # An unrelated conversation shares only BOS and "[": the rest of it is evaluated.
    other = _run(engine, [("Ann", "the the the")], "Bo", GREEDY)
    assert other.reused_tokens <= 2


def test_head_is_kept_and_reused_and_a_change_reevaluates_from_it(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=256, threads=2, trim_margin=64)
    head = "notes about sam\nsam likes the sea\nsam has a dog\n"
    engine.set_head(head)
    head_tokens = engine.tokens(head)
    turns = [("Riya" if i % 2 else "Sam", f"message number {i} we are going") for i in range(40)]
    s = Sampling(temperature=0.0, max_tokens=8)
    first = _run(engine, turns, "Sam", s)
    assert first.trimmed_turns > 0 and first.head_tokens == len(head_tokens)
    assert first.prompt_tokens + 8 <= 256
    # The head survives trimming: it is the prompt's start (the tokens the engine cached).
    reply = engine.simulate(turns, "Sam", s)
    assert "".join(reply) == first.text and reply.result().reused_tokens >= first.prompt_tokens - 1
    # The next turn with the same head reuses everything before it.
    second = _run(engine, [*turns, ("Sam", "ok")], "Riya", s)
    assert second.trimmed_turns == first.trimmed_turns
    assert second.reused_tokens > second.prompt_tokens - 20
    # A trim that cuts more turns keeps the head's tokens in the cache.
    longer = turns + [("Sam", f"later message {i} we are going") for i in range(12)]
    trimmed = _run(engine, longer, "Riya", s)
    assert trimmed.trimmed_turns > first.trimmed_turns
    assert len(head_tokens) <= trimmed.reused_tokens < trimmed.prompt_tokens // 2
    # A changed head is evaluated again from its first changed token.
    changed = head.replace("has a dog", "has a cat")
    engine.set_head(changed)
    shared = next(
        i
        for i, (a, b) in enumerate(zip(head_tokens, engine.tokens(changed), strict=False))
        if a != b
    )
    after = _run(engine, longer, "Riya", s)
    assert after.reused_tokens == shared
    assert engine.head == changed
    engine.set_head("no line break at the end")
    assert engine.head == "no line break at the end\n"
    with pytest.raises(ValueError, match="head"):
        engine.set_head("we are going " * 200)


def test_long_conversations_drop_whole_old_turns_with_a_margin(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=256, threads=2, trim_margin=64)
    turns = [("Riya" if i % 2 else "Sam", f"message number {i} we are going") for i in range(40)]
    s = Sampling(temperature=0.0, max_tokens=8)
    first = engine.simulate(turns, "Sam", s).result()
    trimmed = first.trimmed_turns
    assert trimmed > 0 and first.prompt_tokens + 8 <= 256
    # The margin leaves room for more turns: the next one neither trims again nor re-evaluates.
    second = engine.simulate([*turns, ("Sam", "ok")], "Riya", s).result()
    assert second.trimmed_turns == trimmed
    assert second.reused_tokens > second.prompt_tokens - 20
    # Only a trimmed window is remembered: after an untrimmed prompt, a conversation holding
    # its first turn further on is not cut there.
    engine.simulate([("Ann", "hi")], "Sam", s).result()
    assert engine.simulate([("Bo", "yo"), ("Ann", "hi")], "Sam", s).result().trimmed_turns == 0
    # Nor after a trimmed one: another conversation that holds the first kept turn (a common
    # "ok", or a transcript opened in the same chat) keeps every turn that fits.
    engine.simulate(turns, "Sam", s).result()
    kept = turns[trimmed]
    other = [("Bo", "yo"), ("Ann", "hi"), kept, ("Bo", "see you")]
    assert engine.simulate(other, "Sam", s).result().trimmed_turns == 0


def test_people_are_prompted_under_the_tags_the_model_learned(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=256, threads=2)
    chat = [("Riya Kapoor", "hey"), ("Sam [work]", "hi")]
    greedy = Sampling(temperature=0.0, max_tokens=4)
    untagged = engine.simulate(chat, "Riya Kapoor", greedy).result()
    assert untagged.prompt_tokens == len(
        engine.tokens("[Riya Kapoor] hey\n[Sam (work)] hi\n[Riya Kapoor]")
    )
    engine.set_tags({"Riya Kapoor": "Riya"})  # the dataset's rename
    assert engine.tag("Riya Kapoor") == "Riya" and engine.tag("Sam [work]") == "Sam (work)"
    tagged = engine.simulate(chat, "Riya Kapoor", greedy).result()
    assert tagged.prompt_tokens == len(engine.tokens("[Riya] hey\n[Sam (work)] hi\n[Riya]"))


def test_a_large_length_cap_never_pushes_the_conversation_out(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=256, threads=2)
    turns = [("Riya" if i % 2 else "Sam", f"hi {i}") for i in range(4)]
    assert (
        len(engine.tokens(render(turns) + "[Sam]")) < 256 // 2
    )  # fits beside a half-context reply
    reply = engine.simulate(turns, "Sam", Sampling(temperature=0.0, max_tokens=400)).result()
    assert reply.trimmed_turns == 0
    assert reply.prompt_tokens + reply.generated_tokens <= 256


def test_cancel_stops_between_tokens(engine: Engine) -> None:
    s = Sampling(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=1, max_tokens=200)
    cancel = threading.Event()
    cancel.set()
    stream = engine.simulate(CHAT, "Sam", s, cancel)
    assert list(stream) == []
    assert stream.result().generated_tokens == 0 and stream.result().cancelled
    cancel.clear()
    # Cancel from another thread while tokens are streaming.
    timer = threading.Timer(0.05, cancel.set)
    timer.start()
    t0 = time.perf_counter()
    stream = engine.autocomplete(CHAT, "Sam", "hey", s, cancel)
    for _ in stream:
        time.sleep(0.01)
    assert time.perf_counter() - t0 < 1.0
    assert stream.result().generated_tokens < 200 and stream.result().cancelled


def test_closing_a_stream_stops_it_and_keeps_what_came(engine: Engine) -> None:
    s = Sampling(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=2, max_tokens=200)
    stream = engine.simulate(CHAT, "Sam", s)
    shown = ""
    for piece in stream:
        shown += piece
        if len(shown) > 3:
            break
    stream.close()
    reply = stream.result()
    assert 0 < reply.generated_tokens < 200 and not reply.capped
    assert reply.text.startswith(shown.strip()) or shown.strip().startswith(reply.text)
    assert list(stream) == []


def _last_logits(engine: Engine, text: str) -> np.ndarray:
    engine.model.reset()
    return engine.model.next_logits(engine.tokens(text))


def test_adapters_apply_with_their_scale(tiny: TinyModel, adapter: Path) -> None:
    text = "[Sam] hey we are going"
    plain = _last_logits(Engine(tiny.gguf_path, n_ctx=256, threads=2), text)
    off = _last_logits(Engine(tiny.gguf_path, [(adapter, 0.0)], n_ctx=256, threads=2), text)
    on = _last_logits(Engine(tiny.gguf_path, [(adapter, 1.0)], n_ctx=256, threads=2), text)
    assert np.abs(off - plain).max() < 1e-5
    assert np.abs(on - plain).max() > 0.5
    # The same as llama-cpp-python's own `lora_path` route.
    ids = Engine(tiny.gguf_path, n_ctx=256).tokens(text)
    reference = llama_logits(tiny.gguf_path, ids, adapter, f32_cache=False)[-1]
    assert np.abs(on - reference).max() < 1e-3
    with pytest.raises(FileNotFoundError):
        Engine(tiny.gguf_path, [(adapter.with_name("missing.gguf"), 1.0)], n_ctx=256)


def test_forever_alternates_speakers_and_breaks_loops(engine: Engine) -> None:
    looping = [("A", "ha ha"), ("B", "ha ha"), ("A", "ha ha"), ("B", "ha ha")]
    s = Sampling(temperature=0.0, seed=0, max_tokens=6)
    plain = list(engine.forever(looping, ["A", "B"], s, turns=8, break_loops=False))
    broken = list(engine.forever(looping, ["A", "B"], s, turns=8))
    assert [who for who, _ in broken] == ["A", "B"] * 4
    rate_plain = loop_rate([t for _, t in looping + plain])
    rate_broken = loop_rate([t for _, t in looping + broken])
    assert rate_plain >= 0.5, plain  # greedy decoding repeats itself
    assert rate_broken < rate_plain


# ---------------------------------------------------------------- real default base (slow)

PHRASES = [
    "did you see the game last night", "no I was stuck at work until nine",
    "ugh that sucks, want to grab food tomorrow", "yes! the ramen place near the station?",
    "perfect, 7pm works for me", "can you bring the book I lent you",
    "oh right, I totally forgot about it haha", "no worries, just whenever",
]  # fmt: skip


def conversation(n_turns: int) -> list[tuple[str, str]]:
    return [
        ("Riya" if i % 2 == 0 else "Sam", f"{PHRASES[i % len(PHRASES)]} ({i})")
        for i in range(n_turns)
    ]


@pytest.fixture(scope="module")
def real_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from convsim.core.bases.prepare import default_base
    from convsim.core.locations import Locations

    return default_base(Locations.from_env(tmp_path_factory.mktemp("home")))


@pytest.mark.slow
def test_real_model_reuses_the_cache_for_a_new_message(real_base: Path) -> None:
    engine = Engine(real_base, n_ctx=2048)
    chat = conversation(110)  # ~1,500 tokens
    s = Sampling(seed=0, max_tokens=16)
    reply = engine.simulate(chat, "Sam", s).result()
    assert reply.prompt_tokens > 1200 and reply.reused_tokens <= 2
    chat += [("Sam", reply.text), ("Riya", "ok see you there then")]
    t0 = time.perf_counter()
    stream = engine.simulate(chat, "Sam", s)
    first = next(stream)
    latency = time.perf_counter() - t0
    stream.close()
    assert first
    assert stream.result().prompt_tokens - stream.result().reused_tokens < 40
    assert latency < 0.5, f"first token after {latency * 1000:.0f} ms"  # ~0.1 s here


@pytest.mark.slow
def test_real_model_loop_breaker_lowers_the_loop_rate(real_base: Path) -> None:
    engine = Engine(real_base, n_ctx=1024)
    looping = [("Riya", "haha"), ("Sam", "haha"), ("Riya", "haha yes"), ("Sam", "haha yes")]
    s = Sampling(temperature=0.0, seed=0, max_tokens=20)
    plain = [t for _, t in engine.forever(looping, ["Riya", "Sam"], s, 8, break_loops=False)]
    broken = [t for _, t in engine.forever(looping, ["Riya", "Sam"], s, 8)]
    rate_plain, rate_broken = loop_rate(plain), loop_rate(broken)
    assert rate_broken < rate_plain, (plain, broken)
    assert rate_broken <= 0.5


def test_control_characters_never_reach_the_screen() -> None:
    from convsim.core.inference.reply import shown as _shown

    shown = _shown(["hi\x1b[2J there\u2028x\x85y\tz"], lstrip=True, final=True, hold_word=False)
    assert shown == "hi[2J therexy\tz"


def test_threads_and_gpu_layers_suit_the_machine_and_can_be_overridden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import llama_cpp

    from convsim.core.inference import llama

    monkeypatch.delenv(llama.ENV_GPU_LAYERS, raising=False)
    monkeypatch.delenv(llama.ENV_THREADS, raising=False)
    assert llama.default_gpu_layers() == (-1 if llama_cpp.llama_supports_gpu_offload() else 0)
    assert 1 <= llama.default_threads() <= 8
    monkeypatch.setenv(llama.ENV_GPU_LAYERS, "12")
    monkeypatch.setenv(llama.ENV_THREADS, "3")
    assert (llama.default_gpu_layers(), llama.default_threads()) == (12, 3)
    monkeypatch.setenv(llama.ENV_THREADS, "many")
    with pytest.raises(ValueError, match=r"\$CONVSIM_THREADS must be a whole number, not 'many'"):
        llama.default_threads()
