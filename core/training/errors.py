"""Why a trained persona cannot be used, as typed errors that say what is wrong.

Contract: messages state the problem only; the CLI and the app catch these types and decide
what to suggest (which command, which button). Both are ValueErrors, so code that caught the
plain ValueErrors raised before keeps working.
"""

from __future__ import annotations

from pathlib import Path

from convsim.core.workspace import TrainingRunning

__all__ = ["AdapterMissing", "ModelForgotten", "ModelNotReady", "TrainingRunning"]


class ModelNotReady(ValueError):
    """The model's training has not finished (it is training, cancelled or failed)."""

    def __init__(self, model_id: str, status: str) -> None:
        self.model_id = model_id
        self.status = status
        super().__init__(f"model {model_id} is not ready ({status}): its training has not finished")


class ModelForgotten(ValueError):
    """The model was forgotten (its person or chat) while it trained: its files are removed."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(
            f"model {model_id} was forgotten while it trained: its files are removed too"
        )


class AdapterMissing(ValueError):
    """A finished model's adapter file is gone (moved or deleted)."""

    def __init__(self, path: Path, model_id: str, chat_id: int | None, person: str) -> None:
        self.path = path
        self.model_id = model_id
        self.chat_id = chat_id
        self.person = person
        super().__init__(f"{path}: the adapter of model {model_id} is missing (moved or deleted)")
