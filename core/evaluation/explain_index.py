"""The cached index behind "why did it say that?" (`explain`): the vectors of every message
a persona was trained on, per signal, in the model's folder (`explain/index.npz`).

An index is stored with the key it was built under (the dataset, adapter and base hashes, the
settings); `read_index` returns None for a missing, stale or unreadable file, which the caller
rebuilds. `write_index` replaces the file whole, never half-written.

Contract: plain functions and data; numpy is imported when used.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.core.data.packing import example_fields
from convsim.core.data.turns import parse, render, render_turn, tag

if TYPE_CHECKING:
    import numpy as np

    from convsim.core.inference.llama import LlamaModel

__all__ = ["INDEX_FORMAT", "Candidate", "Index", "candidates", "index_dir", "read_index",
           "sha256_file", "state_item", "unit", "write_index"]  # fmt: skip

INDEX_FORMAT = 1
INDEX_FOLDER = "explain"


@dataclass
class Candidate:
    id: int  # the store id of the person's message
    context_ids: tuple[int, ...]
    body: str  # the message as trained on (scrubbed when the dataset was)
    before: str  # the last CONTEXT_TURNS context turns, rendered


@dataclass
class Index:
    """The training messages' vectors (rows in `ids` order); `hidden_mean` centres `hidden`."""

    ids: np.ndarray
    context_ids: list[tuple[int, ...]]
    vectors: dict[str, np.ndarray]  # per signal, unit rows
    hidden_mean: np.ndarray | None
    key: dict[str, Any] = field(default_factory=dict)


def index_dir(model_path: Path | str) -> Path:
    return Path(model_path) / INDEX_FOLDER


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def unit(rows: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


def candidates(train: Sequence[Any], context_turns: int) -> list[Candidate]:
    out = []
    for ex in train:
        target_id = getattr(ex, "target_id", None)
        if target_id is None:
            continue
        context, target = example_fields(ex)
        turns = parse(target)
        if not turns:
            continue
        before = render(parse(context)[-context_turns:]) if context_turns and context else ""
        out.append(Candidate(target_id, tuple(ex.context_ids), turns[0][1], before))
    return out


def state_item(
    model: LlamaModel, before: str, speaker_tag: str, body: str
) -> tuple[list[int], int]:
    """Tokens of `before` + `[Tag] body` (the turn without its closing line break) and the
    index of the body's first token: the first one that ends past the tag."""
    head = before + tag(speaker_tag)
    tokens = model.tokenize(before + render_turn(speaker_tag, body).removesuffix("\n"))
    # Usually the head's own tokens begin the list, and the body starts right after them;
    # `piece_ends` (quadratic in the length) settles the cases where a token spans the tag.
    head_tokens = model.tokenize(head)
    if len(head_tokens) < len(tokens) and tokens[: len(head_tokens)] == head_tokens:
        return tokens, len(head_tokens)
    boundary = len(head.encode("utf-8"))
    ends = model.piece_ends(tokens)
    first = next((i for i, end in enumerate(ends) if end > boundary), len(tokens) - 1)
    return tokens, first


def write_index(path: Path, index: Index) -> None:
    import numpy as np

    from convsim.core.files import replacing

    path.parent.mkdir(parents=True, exist_ok=True)
    flat = [c for ctx in index.context_ids for c in ctx]
    lengths = [len(ctx) for ctx in index.context_ids]
    arrays: dict[str, Any] = {
        "key": np.array(json.dumps(index.key, sort_keys=True)),
        "ids": index.ids,
        "context_flat": np.array(flat, dtype=np.int64),
        "context_len": np.array(lengths, dtype=np.int64),
    }
    for name, rows in index.vectors.items():
        arrays[f"vec_{name}"] = rows.astype(np.float16)
    if index.hidden_mean is not None:
        arrays["hidden_mean"] = index.hidden_mean.astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with replacing(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def read_index(path: Path, key: dict[str, Any]) -> Index | None:
    """The cached index when it was built with `key`, else None (absent, stale or unreadable:
    it is rebuilt)."""
    import numpy as np

    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(str(data["key"])) != json.loads(json.dumps(key, sort_keys=True)):
                return None
            ids = data["ids"]
            flat, lengths = data["context_flat"].tolist(), data["context_len"].tolist()
            vectors = {s: data[f"vec_{s}"].astype(np.float32) for s in key["signals"]}
            mean = data["hidden_mean"] if "hidden_mean" in data.files else None
    except (OSError, ValueError, KeyError):
        return None
    context_ids, at = [], 0
    for n in lengths:
        context_ids.append(tuple(flat[at : at + n]))
        at += n
    return Index(ids, context_ids, vectors, mean, key)
