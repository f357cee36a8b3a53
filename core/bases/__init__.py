"""Base models: which GGUF a persona is trained on, where it comes from (the default package,
a local file, LM Studio/Ollama/Hugging Face caches, or a download the user asked for), and how
it gets into torch.

Contract: offline unless a download is asked for; paths come from a `Locations`.
"""

from convsim.core.bases.local import FoundGGUF, discover_ggufs, is_gguf
from convsim.core.bases.prepare import (
    BaseModelError,
    BaseModelProgress,
    check_base,
    default_base,
    download_gguf,
    resolve_base,
    sha256_file,
)
from convsim.core.bases.torch_copy import load_for_training, torch_cache_dir, torch_cache_is_current

__all__ = [
    "BaseModelError",
    "BaseModelProgress",
    "FoundGGUF",
    "check_base",
    "default_base",
    "discover_ggufs",
    "download_gguf",
    "is_gguf",
    "load_for_training",
    "resolve_base",
    "sha256_file",
    "torch_cache_dir",
    "torch_cache_is_current",
]
