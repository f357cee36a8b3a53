"""peft checks the versions of its dependencies through package metadata at import time."""

import contextlib

from PyInstaller.utils.hooks import copy_metadata

datas = []
for _dist in ("peft", "torch", "transformers", "accelerate", "safetensors", "huggingface_hub"):
    with contextlib.suppress(Exception):  # an optional one that is not installed
        datas += copy_metadata(_dist)
