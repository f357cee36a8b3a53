from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures" / "real"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh convsim home for one test, also exported as CONVSIM_HOME for the CLI."""
    path = tmp_path / "home"
    monkeypatch.setenv("CONVSIM_HOME", str(path))
    return path
