from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Base GGUFs and the torch copies of them are big and slow to make (the first load of the
# default base takes over a minute): tests that go through CONVSIM_HOME share one copy per
# checkout, kept in an ignored folder, unless the caller already chose where they live.
SHARED_MODELS = ROOT / ".cache" / "test-models"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("CONVSIM_BASE_MODELS", str(SHARED_MODELS / "base-models"))
    os.environ.setdefault("CONVSIM_CACHE", str(SHARED_MODELS / "cache"))
    # transformers draws its own progress bars on stderr while converting GGUF tensors.
    os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh convsim home for one test, also exported as CONVSIM_HOME for the CLI."""
    path = tmp_path / "home"
    monkeypatch.setenv("CONVSIM_HOME", str(path))
    return path


# Tiny random models (tests/tinymodels.py), shared by the engine, CLI and app tests.


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny random gemma3 model and its F32 GGUF."""
    from tinymodels import build_tiny

    return build_tiny("gemma3", tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def adapter(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA on every attention/FFN projection of the tiny model, strong enough to
    change its greedy output."""
    import numpy as np

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


# Settings that train a tiny persona in seconds (two steps of small rows).
TINY_TRAINING = {"steps": 2, "seq_len": 64, "batch_size": 2, "rank": 4, "alpha": 8.0,
                 "eval_every": 0, "eval_rows": 2, "samples": 0, "checkpoint_every": 0}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_persona(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home with the sample chat and a persona of Sam trained on the tiny model: (home,
    model id)."""
    pytest.importorskip("peft")
    from convsim.core.training import train_person
    from convsim.core.workspace import SAMPLE_CHAT, Workspace

    home = tmp_path_factory.mktemp("persona-home")
    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        run = train_person(
            ws, report.chat_id, "Sam", base=str(tiny.gguf_path), overrides=TINY_TRAINING
        )
    return home, run.model.id
