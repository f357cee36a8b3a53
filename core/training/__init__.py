"""Training a persona: a LoRA on the base model that writes like one person. The loop
(`trainer`) runs any objective (`objectives`: next-message prediction today), `runs` records
runs in the store (train, resume, continue a finished model), `export` hands out its GGUF files,
and `errors` says why a model cannot be used.

Contract: every function takes an open `Workspace` and plain arguments, reports progress through
callbacks of plain events, stops at a `threading.Event`, and records what it made beside the
files. torch is imported only when a run starts.
"""

from convsim.core.training.errors import (
    AdapterMissing,
    ModelForgotten,
    ModelNotReady,
    TrainingRunning,
)
from convsim.core.training.export import adapter_gguf, export_model
from convsim.core.training.runs import (
    TrainOutcome,
    default_config,
    resume_training,
    speaker_tags,
    train_person,
)
from convsim.core.training.trainer import TrainConfig, TrainEvent, TrainResult
from convsim.core.workspace import is_training, shown_status

__all__ = [
    "AdapterMissing",
    "ModelForgotten",
    "ModelNotReady",
    "TrainConfig",
    "TrainEvent",
    "TrainOutcome",
    "TrainResult",
    "TrainingRunning",
    "adapter_gguf",
    "default_config",
    "export_model",
    "is_training",
    "resume_training",
    "shown_status",
    "speaker_tags",
    "train_person",
]
