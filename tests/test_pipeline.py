"""The whole product path on the REAL default base model, through the installed `convsim`
command: import → train → models → export → eval, and a training run killed with SIGKILL and
resumed. Slow (minutes on a 2-core CPU); CI runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_cli_chat import convsim_command, ctrl_c_at

from convsim.core.workspace import SAMPLE_CHAT

pytestmark = pytest.mark.slow

# Small rows keep each step to about a second on a laptop CPU.
FAST = ["--seq-len", "96", "--batch-size", "2", "--eval-every", "0"]


def convsim(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = convsim_command()
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def chat_id(home: Path) -> int:
    return last_json(convsim("import", str(SAMPLE_CHAT), "--json").stdout)["chat_id"]


def test_train_export_eval_on_the_default_base(home: Path, chat_id: int) -> None:
    from convsim.core.inference.engine import Engine, Sampling

    out = last_json(convsim("train", str(chat_id), "--as", "Sam", "--steps", "3", *FAST,
                            "--json").stdout)  # fmt: skip
    model_id, adapter = out["model_id"], Path(out["adapter_gguf"])
    assert out["status"] == "ready" and adapter.stat().st_size > 100_000
    assert out["metrics"]["steps"] == 3 and out["metrics"]["tokens_per_s"] > 0

    folder = adapter.parent
    run = json.loads((folder / "run.json").read_text())
    assert run["person"] == "Sam" and len(run["base_sha256"]) == 64
    assert len(run["dataset_sha256"]) == 64 and run["train"]["steps"] == 3
    assert (folder / "metrics.json").exists() and (folder / "adapter" / "adapter_config.json")

    (listed,) = [json.loads(line) for line in convsim("models", "--json").stdout.splitlines()]
    assert listed["model_id"] == model_id and listed["person"] == "Sam"
    assert listed["status"] == "ready" and listed["base"] == run["base"]

    exported = Path(last_json(convsim("export", model_id, "--json").stdout)["path"])
    assert exported.stat().st_size > 100_000_000 and exported.suffix == ".gguf"
    reply = (
        Engine(exported, n_ctx=256)
        .simulate([("Riya", "are you coming to run club?")], "Sam", Sampling(seed=1, max_tokens=24))
        .result()
        .text
    )
    assert reply and "\n" not in reply and not reply.startswith("[")

    args = ["--items", "3", "--best-of", "2", "--forever-turns", "4", "--json"]
    report = last_json(convsim("eval", model_id, *args).stdout)
    variants = [report[v] for v in ("base", "in_context", "tuned", "best_of_n")]
    tokens = {v["counts"]["perplexity_tokens"] for v in variants}
    assert len(tokens) == 1 and tokens.pop() > 10  # every variant scores the same tokens
    assert all(1 < v["perplexity"] < 10_000 for v in variants)
    assert all(v["counts"]["generated_replies"] == 3 * 3 for v in variants)  # 3 a moment
    assert report["replies_per_moment"] == 3
    # Prompting with their messages makes their real replies less surprising on the real base.
    assert report["in_context"]["perplexity"] < report["base"]["perplexity"]
    assert (folder / "eval.json").exists() and (folder / "report.html").exists()


def test_killed_run_resumes_from_its_checkpoint(home: Path, chat_id: int) -> None:
    cmd = convsim_command()
    args = ["train", str(chat_id), "--as", "Sam", "--steps", "6", "--checkpoint-every", "1"]
    proc = subprocess.Popen([*cmd, *args, *FAST], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = home / "models" / "sam-1" / "checkpoint" / "trainer.json"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if state.exists() and json.loads(state.read_text())["step"] >= 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint appeared")
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown: a real crash
        proc.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 2 <= killed_at < 6

    # A killed run is not mistaken for a finished one...
    (listed,) = [json.loads(line) for line in convsim("models", "--json").stdout.splitlines()]
    assert listed["status"] == "training"
    done = convsim("export", "sam-1", check=False)
    assert done.returncode == 2 and "--resume sam-1" in done.stderr

    # ...and --resume finishes it from the checkpoint, not from scratch.
    out = last_json(convsim("train", "--resume", "sam-1", "--json").stdout)
    assert out["status"] == "ready" and out["metrics"]["steps"] == 6
    history = json.loads((home / "models" / "sam-1" / "metrics.json").read_text())["history"]
    assert [step for step, _ in history["loss"]] == [1, 2, 3, 4, 5, 6]
    assert Path(out["adapter_gguf"]).exists()


def test_ctrl_c_stops_training_at_a_step_with_a_checkpoint(home: Path, chat_id: int) -> None:
    """`convsim train` as a person stops it: the run ends at a step boundary, says how to go
    on, and is listed as cancelled (before, the process aborted and left it "stopped")."""
    args = ["train", str(chat_id), "--as", "Sam", "--steps", "40", *FAST]
    status, out, err = ctrl_c_at("step 1/40", *args)
    assert status == 0, err[-3000:]
    stopped = out.strip().splitlines()[-1]
    assert stopped.startswith("Stopped at step ")
    assert stopped.endswith(". Continue: convsim train --resume sam-1")
    assert "Traceback" not in err
    (listed,) = [json.loads(line) for line in convsim("models", "--json").stdout.splitlines()]
    assert listed["status"] == "cancelled"
    assert (home / "models" / "sam-1" / "checkpoint" / "trainer.json").exists()
