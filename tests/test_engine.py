"""The inference engine: streaming replies, autocomplete, forever-chat with loop breaking, KV-cache
reuse, context trimming, cancellation, LoRA adapters, and the chat CLI commands.

Fast tests run on a tiny random gemma3 GGUF (tests/tinymodels.py); tests on the real default base
are marked slow.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tinymodels import TinyModel, build_tiny, llama_logits

from convsim.core.engine import Engine, Sampling, split_reply, trim_to_word
from convsim.core.loops import is_loop, loop_rate, normalise

GREEDY = Sampling(temperature=0.0, seed=0, max_tokens=12)
CHAT = [("Riya", "hey are we going"), ("Sam", "yes we are"), ("Riya", "the place")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_tiny("gemma3", tmp_path_factory.mktemp("tiny-engine"))


@pytest.fixture(scope="module")
def adapter(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA on every attention/FFN projection of the tiny model, strong enough to
    change its greedy output."""
    from convsim.convert.adapter import LoraWeights, write_lora_adapter

    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(2):
        for name, (rows, cols) in {"attn_q": (64, 64), "ffn_up": (128, 64)}.items():
            a = rng.normal(0, 1.0, (4, cols)).astype(np.float32)
            b = rng.normal(0, 1.0, (rows, 4)).astype(np.float32)
            tensors[f"blk.{layer}.{name}.weight"] = (a, b)
    out = tmp_path_factory.mktemp("tiny-adapter") / "adapter.gguf"
    return write_lora_adapter(LoraWeights("gemma3", 4.0, tensors), tiny.gguf_path, out)


@pytest.fixture(scope="module")
def engine(tiny: TinyModel) -> Engine:
    return Engine(tiny.gguf_path, n_ctx=512, threads=2)


class EvalCounter:
    """Counts the tokens llama.cpp evaluates, by wrapping `Llama.eval` on one instance."""

    def __init__(self, llm: Any) -> None:
        self.calls: list[int] = []
        original = llm.eval

        def counted(tokens: Any) -> None:
            self.calls.append(len(tokens))
            original(tokens)

        llm.eval = counted


# ---------------------------------------------------------------- pure functions


def test_split_reply_stops_at_another_speaker_and_keeps_own_messages() -> None:
    assert split_reply(" hi there", "Sam", 1) == ([" hi there"], False, False)
    assert split_reply(" hi\n[Riya] yo", "Sam", 1) == ([" hi"], True, False)
    assert split_reply(" hi\n[Sam] again\n[Ri", "Sam", 3) == ([" hi", " again"], True, False)
    assert split_reply(" hi\n[Sa", "Sam", 3) == ([" hi"], False, True)
    assert split_reply(" hi\n[Sam] two\n[Sam] three\n", "Sam", 2)[0] == [" hi", " two"]
    assert trim_to_word("see you tomor") == "see you"
    assert trim_to_word("unbreakable") == "unbreakable"


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
    pieces = list(engine.simulate(CHAT, "Sam", GREEDY))
    text = "".join(pieces)
    stats = engine.stats
    assert 0 < stats.generated_tokens <= GREEDY.max_tokens
    assert "\n" not in text and text == text.strip()
    assert stats.messages == ([text] if text else [])
    # Greedy is deterministic, also when the cache already holds the prompt.
    assert engine.simulate_messages(CHAT, "Sam", GREEDY) == stats.messages


def test_multi_message_replies_are_separate_lines(engine: Engine) -> None:
    s = Sampling(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=3, max_tokens=6)
    for seed in range(5):
        s.seed = seed
        messages = engine.simulate_messages(CHAT, "Sam", s, max_messages=3)
        assert len(messages) <= 3 and all(m == m.strip() and m for m in messages)
        assert engine.stats.generated_tokens <= 3 * s.max_tokens


def test_autocomplete_continues_the_partial_line(engine: Engine) -> None:
    text = "".join(engine.autocomplete(CHAT, "Sam", "we are go", GREEDY))
    assert "\n" not in text and engine.stats.generated_tokens <= GREEDY.max_tokens
    # The prompt ends inside the message: everything but its last token is reused.
    again = "".join(engine.autocomplete(CHAT, "Sam", "we are go", GREEDY))
    assert again == text
    assert engine.stats.reused_tokens == engine.stats.prompt_tokens - 1


def test_kv_cache_reuse_evaluates_only_new_tokens(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=512, threads=2)
    counter = EvalCounter(engine.llm)
    reply = "".join(engine.simulate(CHAT, "Sam", GREEDY))
    first = counter.calls[0]
    assert first == engine.stats.prompt_tokens  # cold: the whole prompt
    longer = [*CHAT, ("Sam", reply), ("Riya", "hey you")]
    counter.calls.clear()
    "".join(engine.simulate(longer, "Sam", GREEDY))
    prompt, reused = engine.stats.prompt_tokens, engine.stats.reused_tokens
    new_tokens = len(engine.tokens("[Riya] hey you\n[Sam]")) - 1  # without BOS
    assert counter.calls[0] == prompt - reused
    assert counter.calls[0] <= new_tokens + len(engine.tokens(reply)) + 2
    assert reused >= first - 2  # the earlier prompt stayed in the cache
    # An unrelated conversation shares only BOS and "[": the rest of it is evaluated.
    counter.calls.clear()
    "".join(engine.simulate([("Ann", "the the the")], "Bo", GREEDY))
    assert engine.stats.reused_tokens <= 2
    assert counter.calls[0] == engine.stats.prompt_tokens - engine.stats.reused_tokens


def test_long_conversations_drop_whole_old_turns_with_a_margin(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=256, threads=2, trim_margin=64)
    turns = [("Riya" if i % 2 else "Sam", f"message number {i} we are going") for i in range(40)]
    s = Sampling(temperature=0.0, max_tokens=8)
    "".join(engine.simulate(turns, "Sam", s))
    trimmed = engine.stats.trimmed_turns
    assert trimmed > 0 and engine.stats.prompt_tokens + 8 <= 256
    # The margin leaves room for more turns: the next one neither trims again nor re-evaluates.
    "".join(engine.simulate([*turns, ("Sam", "ok")], "Riya", s))
    assert engine.stats.trimmed_turns == trimmed
    assert engine.stats.reused_tokens > engine.stats.prompt_tokens - 20


def test_cancel_stops_between_tokens(engine: Engine) -> None:
    s = Sampling(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=1, max_tokens=200)
    cancel = threading.Event()
    cancel.set()
    assert list(engine.simulate(CHAT, "Sam", s, cancel)) == []
    assert engine.stats.generated_tokens == 0
    cancel.clear()
    # Cancel from another thread while tokens are streaming.
    timer = threading.Timer(0.05, cancel.set)
    timer.start()
    t0 = time.perf_counter()
    for _ in engine.autocomplete(CHAT, "Sam", "hey", s, cancel):
        time.sleep(0.01)
    assert time.perf_counter() - t0 < 1.0
    assert engine.stats.generated_tokens < 200


def _last_logits(engine: Engine, text: str) -> np.ndarray:
    import llama_cpp

    engine.llm.reset()
    engine.llm.eval(engine.tokens(text))
    row = llama_cpp.llama_get_logits_ith(engine.llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(engine.llm.n_vocab(),)).copy()


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


# ---------------------------------------------------------------- CLI


def _register(home: Path, base: Path, adapter: Path | None, model_id: str, status: str) -> None:
    import shutil

    from convsim.core.store.records import ModelRecord
    from convsim.core.workspace import Workspace

    with Workspace.open(home) as ws:
        folder = ws.locations.models / model_id
        folder.mkdir(parents=True, exist_ok=True)
        if adapter is not None:
            shutil.copy(adapter, folder / "adapter.gguf")
        ws.store.add_model(
            ModelRecord(model_id, None, None, "Sam", str(base), "0" * 64, "2026-01-01T00:00:00",
                        status, str(folder))
        )  # fmt: skip


@pytest.fixture
def persona(home: Path, tiny: TinyModel, adapter: Path) -> str:
    _register(home, tiny.gguf_path, adapter, "sam-tiny", "ready")
    return "sam-tiny"


def test_cli_simulate_alternates_and_prints_json(
    persona: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convsim.tui.cli import main

    transcript = tmp_path / "chat.txt"
    transcript.write_text("[Riya] hey are we going\n[Sam] yes we are\n[Riya] the place\n")
    args = ["simulate", persona, "--as", "Sam", "--transcript", str(transcript)]
    assert main([*args, "--turns", "3", "--seed", "1", "--max-tokens", "8", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["speaker"] for r in rows] == ["Sam", "Riya", "Sam"]
    # Without --as, the model's own person speaks.
    assert main(["simulate", persona, "--transcript", str(transcript), "--turns", "1",
                 "--max-tokens", "4", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["speaker"] == "Sam"
    jsonl = tmp_path / "chat.jsonl"
    jsonl.write_text('{"speaker": "Riya", "text": "hi"}\n{"speaker": "Sam", "text": "yo"}\n')
    assert main(["simulate", persona, "--as", "Sam", "--transcript", str(jsonl),
                 "--turns", "2", "--max-tokens", "6"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    assert [line.split("]")[0] for line in lines] == ["[Riya", "[Sam"]


def test_cli_complete_and_chat(
    persona: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from convsim.tui.cli import main

    args = ["complete", persona, "--as", "Riya", "--partial", "we are", "--seed", "0", "--json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["partial"] == "we are" and "\n" not in row["completion"]
    monkeypatch.setattr("sys.stdin", io.StringIO("hey you\nwe are going\n/quit\nnot read\n"))
    assert main(["chat", persona, "--as", "Riya", "--max-tokens", "6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(line.startswith("[Sam] ") for line in out)
    monkeypatch.setattr("sys.stdin", io.StringIO("only line, then EOF\n"))
    assert main(["chat", persona, "--max-tokens", "4"]) == 0


def test_cli_refuses_a_model_that_is_not_ready(
    home: Path, tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    from convsim.tui.cli import main

    _register(home, tiny.gguf_path, None, "half", "cancelled")
    assert main(["simulate", "half", "--as", "Riya"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not ready" in err and "--resume half" in err
    assert main(["complete", "nobody", "--as", "Riya", "--partial", "x"]) == 2
    assert "no model with id 'nobody'" in capsys.readouterr().err


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
    from convsim.core.base_models import default_base
    from convsim.core.locations import Locations

    return default_base(Locations.from_env(tmp_path_factory.mktemp("home")))


@pytest.mark.slow
def test_real_model_reuses_the_cache_for_a_new_message(real_base: Path) -> None:
    engine = Engine(real_base, n_ctx=2048)
    chat = conversation(110)  # ~1,500 tokens
    s = Sampling(seed=0, max_tokens=16)
    reply = engine.reply(chat, "Sam", s)
    assert engine.stats.prompt_tokens > 1200 and engine.stats.reused_tokens <= 2
    chat += [("Sam", reply), ("Riya", "ok see you there then")]
    t0 = time.perf_counter()
    first = next(iter(engine.simulate(chat, "Sam", s)))
    latency = time.perf_counter() - t0
    assert first
    assert engine.stats.prompt_tokens - engine.stats.reused_tokens < 40
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
    from convsim.core.engine import _shown

    shown = _shown(["hi\x1b[2J there\u2028x\x85y\tz"], lstrip=True, final=True, hold_word=False)
    assert shown == "hi[2J therexy\tz"


# ---------------------------------------------------------------- chat: Ctrl-C


class Stream:
    """Collects what a child process writes to one pipe, from a background thread."""

    def __init__(self, pipe: Any) -> None:
        self.data = b""
        self._pipe = pipe
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while chunk := self._pipe.read1(4096):
            self.data += chunk

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def close(self) -> None:
        self._thread.join(10)


def wait_until(predicate: Any, what: Any, proc: Any, timeout: float = 60.0) -> None:
    """Poll `predicate` while `proc` runs; `what()` says what was awaited and what was seen."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the process ended while waiting for {what()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        time.sleep(0.01)


@pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="needs a POSIX terminal")
def test_cli_chat_ctrl_c_cancels_the_reply_not_the_chat(
    persona: str, tiny: TinyModel, adapter: Path
) -> None:
    """`convsim chat` as a person uses it (stdin a terminal): Ctrl-C while a reply streams
    cancels that reply and brings the prompt back, twice; the next message gets a whole reply;
    end of input then leaves with status 0."""
    import os
    import signal
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("convsim")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "convsim.tui.cli"]
    # The tiny model's greedy replies here never end by themselves: each runs to the cap, 600
    # tokens, over a second on 2 cores, so a reply is surely still streaming at SIGINT.
    args = ["chat", persona, "--as", "Riya", "--temperature", "0", "--seed", "0",
            "--max-tokens", "600"]  # fmt: skip
    terminal, child_end = os.openpty()
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.Popen([*cmd, *args], stdin=child_end, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)  # fmt: skip
    os.close(child_end)
    out, err = Stream(proc.stdout), Stream(proc.stderr)

    def seen(what: str) -> Any:
        return lambda: (
            f"{what}: exit {proc.poll()}, stdout {out.text[-200:]!r}, stderr {err.text!r}"
        )

    def prompts(n: int) -> Any:
        return lambda: err.text.count("[Riya] ") == n

    def streaming(n: int) -> Any:
        """Reply `n` (1, 2, ...) shows text past its "[Sam] "."""
        return lambda: len((out.text.split("\n") + [""] * n)[n - 1]) > len("[Sam] x")

    try:
        wait_until(prompts(1), seen("the first prompt"), proc)
        os.write(terminal, b"hello there\n")
        # Each time: signal once the reply shows (past its "[Sam] "), so that it is mid-stream,
        # and type the next message at once, as a quick user would: it waits in the terminal
        # and starts the next reply the moment the chat reads again.
        for n, typed_ahead in enumerate([b"we are going\n", b"are you there\n"], start=1):
            wait_until(streaming(n), seen(f"reply {n} to stream"), proc)
            proc.send_signal(signal.SIGINT)
            os.write(terminal, typed_ahead)
        wait_until(prompts(4), seen("the prompt after the last reply"), proc)
        os.write(terminal, b"\x04")  # Ctrl-D: end of input
        assert proc.wait(timeout=30) == 0, err.text
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(terminal)
        out.close()
        err.close()
    assert "Traceback" not in err.text and "interrupted" not in err.text
    lines = out.text.split("\n")
    assert len(lines) == 4 and lines[3] == "", out.text
    assert all(line.startswith("[Sam] ") for line in lines[:3])
    assert lines[0].endswith(" [reply cancelled]") and lines[1].endswith(" [reply cancelled]")
    assert "[reply cancelled]" not in lines[2] and len(lines[2]) > len("[Sam] ")
    # Cut short: the whole first reply (the same greedy reply, made here) is ~600 characters.
    engine = Engine(tiny.gguf_path, [(adapter, 1.0)], n_ctx=2048)
    full = engine.reply([("Riya", "hello there")], "Sam", Sampling(temperature=0.0, seed=0,
                                                                   max_tokens=600))  # fmt: skip
    cut = lines[0].removeprefix("[Sam] ").removesuffix(" [reply cancelled]")
    assert len(full) > 500 and len(cut) < len(full) // 2, (cut, full)


@pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="needs a POSIX terminal")
def test_cli_chat_ctrl_c_at_the_prompt_leaves(persona: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("convsim")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "convsim.tui.cli"]
    terminal, child_end = os.openpty()
    proc = subprocess.Popen([*cmd, "chat", persona], stdin=child_end, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    os.close(child_end)
    out, err = Stream(proc.stdout), Stream(proc.stderr)
    try:
        wait_until(lambda: err.text.endswith("[You] "), lambda: err.text, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(terminal)
        out.close()
        err.close()
    assert out.text == "" and err.text.endswith("[You] \n"), err.text
    assert "Traceback" not in err.text and "interrupted" not in err.text
