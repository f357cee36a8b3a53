"""The chat command-line commands (simulate, complete, chat) on a tiny model with a LoRA
adapter, through `convsim.tui.cli.main` and as a real subprocess for Ctrl-C handling."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tinymodels import TinyModel

from convsim.core.inference.engine import Engine, Sampling

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
                 "--max-tokens", "4", "--threads", "1", "--gpu-layers", "0",
                 "--json"]) == 0  # fmt: skip
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


def exit_status(proc: subprocess.Popen, err: Stream, timeout: float = 30.0) -> int:
    """The process's exit status once it ends. One that has not ended after `timeout` is sent
    SIGABRT, so that Python's fault handler (on in `chat_on_a_terminal`) writes where each of
    its threads was, and the test fails with that."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=10)
        err.close()
        raise AssertionError(f"still running {timeout:.0f} s later:\n{err.text[-4000:]}") from None


def wait_until(predicate: Any, what: Any, proc: Any, timeout: float = 60.0) -> None:
    """Poll `predicate` while `proc` runs; `what()` says what was awaited and what was seen."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the process ended while waiting for {what()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        time.sleep(0.01)


def _default_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def convsim_command() -> list[str]:
    """The installed `convsim` console script, else `python -m convsim.tui.cli`."""
    exe = Path(sys.executable).with_name("convsim")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "convsim.tui.cli"]


def ctrl_c_at(marker: str, *args: str, timeout: float = 600) -> tuple[int, str, str]:
    """Run `convsim ARGS`, send it Ctrl-C once `marker` shows on its stderr, and return its
    exit status, stdout and stderr."""
    cmd = convsim_command()
    proc = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_ctrl_c)  # fmt: skip
    out, err = Stream(proc.stdout), Stream(proc.stderr)
    try:
        wait_until(lambda: marker in err.text, lambda: err.text[-3000:], proc, timeout=timeout)
        proc.send_signal(signal.SIGINT)
        status = exit_status(proc, err, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
        err.close()
    return status, out.text, err.text


@contextlib.contextmanager
def chat_on_a_terminal(*args: str) -> Iterator[tuple[subprocess.Popen, int, Stream, Stream]]:
    """`convsim chat ARGS` as a real process whose stdin is a terminal (a pty): yields the
    process, the terminal's end to type into, and its stdout and stderr as they arrive. The
    process is killed, if still running, and everything closed on the way out."""
    cmd = convsim_command()
    terminal, child_end = os.openpty()
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONFAULTHANDLER": "1"}
    # Ctrl-C as a shell's foreground job gets it: a suite started in the background (`pytest &`
    # in a script) ignores SIGINT, its children inherit that, and Python then keeps it ignored.
    proc = subprocess.Popen(
        [*cmd, "chat", *args], stdin=child_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, preexec_fn=_default_ctrl_c,
    )  # fmt: skip
    os.close(child_end)
    out, err = Stream(proc.stdout), Stream(proc.stderr)
    try:
        yield proc, terminal, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(terminal)
        out.close()
        err.close()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX terminal")
def test_cli_chat_ctrl_c_cancels_the_reply_not_the_chat(
    persona: str, tiny: TinyModel, adapter: Path
) -> None:
    """`convsim chat` as a person uses it (stdin a terminal): Ctrl-C while a reply streams
    cancels that reply and brings the prompt back, twice; the next message gets a whole reply;
    end of input then leaves with status 0."""
    # The tiny model's greedy replies here, with a repeat penalty, never end by themselves: each
    # runs to the cap, 600 tokens, over a second on 2 cores, so a reply is surely still
    # streaming at SIGINT.
    args = [persona, "--as", "Riya", "--temperature", "0", "--seed", "0", "--max-tokens", "600"]
    args += ["--repeat-penalty", "1.1"]
    with chat_on_a_terminal(*args) as (proc, terminal, out, err):

        def seen(what: str) -> Any:
            return lambda: (
                f"{what}: exit {proc.poll()}, stdout {out.text[-200:]!r}, stderr {err.text!r}"
            )

        def prompts(n: int) -> Any:
            return lambda: err.text.count("[Riya] ") == n

        def streaming(n: int) -> Any:
            """Reply `n` (1, 2, ...) shows text past its "[Sam] "."""
            return lambda: len((out.text.split("\n") + [""] * n)[n - 1]) > len("[Sam] x")

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
        assert exit_status(proc, err) == 0, err.text
    assert "Traceback" not in err.text and "interrupted" not in err.text
    lines = out.text.split("\n")
    assert len(lines) == 4 and lines[3] == "", out.text
    assert all(line.startswith("[Sam] ") for line in lines[:3])
    assert lines[0].endswith(" [reply cancelled]") and lines[1].endswith(" [reply cancelled]")
    assert "[reply cancelled]" not in lines[2] and len(lines[2]) > len("[Sam] ")
    # Cut short: the whole first reply (the same greedy reply, made here) is ~600 characters.
    engine = Engine(tiny.gguf_path, [(adapter, 1.0)], n_ctx=2048)
    greedy = Sampling(temperature=0.0, seed=0, max_tokens=600, repeat_penalty=1.1)
    full = engine.simulate([("Riya", "hello there")], "Sam", greedy).result().text
    cut = lines[0].removeprefix("[Sam] ").removesuffix(" [reply cancelled]")
    assert len(full) > 500 and len(cut) < len(full) // 2, (cut, full)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX terminal")
def test_cli_chat_ctrl_c_at_the_prompt_leaves(persona: str) -> None:
    with chat_on_a_terminal(persona) as (proc, _, out, err):
        wait_until(lambda: err.text.endswith("[You] "), lambda: err.text, proc)
        proc.send_signal(signal.SIGINT)
        assert exit_status(proc, err) == 130
    assert out.text == "" and err.text.endswith("[You] \n"), err.text
    assert "Traceback" not in err.text and "interrupted" not in err.text


def test_sampling_flags_set_the_cuts_and_refuse_negative_values() -> None:
    from convsim.core.inference.engine import Sampling
    from convsim.tui.cli.chat import _sampling
    from convsim.tui.cli.common import CliError
    from convsim.tui.cli.main import build_parser

    parser = build_parser()
    plain = _sampling(parser.parse_args(["simulate", "sam-1"]))
    assert plain == Sampling(max_tokens=64)  # nothing set: convsim's defaults
    cut = _sampling(parser.parse_args(
        ["chat", "sam-1", "--top-k", "40", "--top-p", "0.95", "--min-p", "0.05",
         "--repeat-penalty", "1.1", "--temperature", "0.8"]
    ))  # fmt: skip
    assert (cut.top_k, cut.top_p, cut.min_p, cut.repeat_penalty) == (40, 0.95, 0.05, 1.1)
    assert cut.temperature == 0.8
    with pytest.raises(CliError, match=r"--min-p must be 0 or more, not -0.1"):
        _sampling(parser.parse_args(["complete", "sam-1", "--as", "Sam", "--partial", "hi",
                                     "--min-p", "-0.1"]))  # fmt: skip
    with pytest.raises(CliError, match=r"--top-p must be 1 or less, not 7\.0"):
        _sampling(parser.parse_args(["simulate", "sam-1", "--top-p", "7"]))
    with pytest.raises(CliError, match=r"--top-k must be 2147483647 or less, not 9{400}"):
        _sampling(parser.parse_args(["simulate", "sam-1", "--top-k", "9" * 400]))


def test_ctrl_c_in_a_llama_log_callback_is_raised_after_it_not_lost(tmp_path: Path) -> None:
    """llama.cpp logs through a ctypes callback into Python; a KeyboardInterrupt raised in one
    is printed and dropped, so `export` or `simulate` carried on after Ctrl-C. Under the CLI's
    handler it is raised once the callback has returned. A real ctypes callback, compiled as
    llama-cpp-python's log callback, gets the signal."""
    import ctypes

    from convsim.tui.cli.common import ctrl_c_outside_llama

    source = "def log_line():\n    os.kill(os.getpid(), signal.SIGINT)\n"
    where = str(tmp_path / "llama_cpp" / "_logger.py")
    scope: dict[str, Any] = {"os": os, "signal": signal}
    exec(compile(source, where, "exec"), scope)
    callback = ctypes.CFUNCTYPE(None)(scope["log_line"])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background suite
    try:
        with ctrl_c_outside_llama():
            returned = False
            with pytest.raises(KeyboardInterrupt):
                callback()  # called through libffi, as llama.cpp calls its logger
                returned = True
                time.sleep(5)  # the interrupt comes here, a moment later
            assert returned
        with pytest.raises(KeyboardInterrupt), ctrl_c_outside_llama():  # elsewhere: at once
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
