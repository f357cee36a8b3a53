"""Every path convsim reads or writes, in one place.

All data lives under one home folder: `$CONVSIM_HOME` if set, else the platform's user data
folder (platformdirs). It is created private to the user (0700): chats are private data.
Nothing here runs at import time; callers build a `Locations` and pass it down.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "CONVSIM_HOME"


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

    @classmethod
    def from_env(cls) -> Locations:
        return cls(default_home())

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
    def base_models(self) -> Path:
        return self.home / "base-models"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    def dataset_dir(self, dataset_id: int) -> Path:
        return self.datasets / str(dataset_id)
