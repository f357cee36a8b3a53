from __future__ import annotations

import os
from pathlib import Path

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
