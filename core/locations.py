"""Every path convsim reads or writes, in one place.

All data lives under one home folder: `$CONVSIM_HOME` if set, else the platform's user data
folder (platformdirs). It is created private to the user (0700): chats are private data.
Two big, re-creatable folders can live elsewhere: `$CONVSIM_BASE_MODELS` (base GGUFs) and
`$CONVSIM_CACHE` (tokenizer and weight caches), e.g. to share them between homes.
Nothing here runs at import time; callers build a `Locations` and pass it down.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "CONVSIM_HOME"
ENV_BASE_MODELS = "CONVSIM_BASE_MODELS"
ENV_CACHE = "CONVSIM_CACHE"


def default_home() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("convsim", appauthor=False))


def make_private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)
    return path


@dataclass(frozen=True)
class Locations:
    home: Path
    base_models_dir: Path | None = None  # default: home/base-models
    cache_dir: Path | None = None  # default: home/cache

    @classmethod
    def from_env(cls, home: Path | None = None) -> Locations:
        def env(name: str) -> Path | None:
            value = os.environ.get(name)
            return Path(value).expanduser() if value else None

        return cls(home or default_home(), env(ENV_BASE_MODELS), env(ENV_CACHE))

    def ensure(self) -> Locations:
        make_private_dir(self.home)
        return self

    @property
    def store(self) -> Path:
        return self.home / "convsim.db"

    @property
    def datasets(self) -> Path:
        return self.home / "datasets"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def transcripts(self) -> Path:
        return self.home / "transcripts"

    @property
    def base_models(self) -> Path:
        return self.base_models_dir or self.home / "base-models"

    @property
    def cache(self) -> Path:
        return self.cache_dir or self.home / "cache"

    def dataset_dir(self, dataset_id: int) -> Path:
        return self.datasets / str(dataset_id)
