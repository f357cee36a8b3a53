"""GGUF models already on this computer: LM Studio, Ollama, the Hugging Face cache, and ours.

Contract: read-only and offline; folders that are missing or unreadable are skipped, never an
error. Every listed file starts with the GGUF magic bytes. Re-exported by `convsim.core.bases`.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from convsim.core.locations import Locations

__all__ = ["FoundGGUF", "discover_ggufs", "is_gguf"]

Source = Literal["lmstudio", "ollama", "huggingface", "convsim"]
_SOURCE_ORDER: tuple[Source, ...] = ("convsim", "lmstudio", "ollama", "huggingface")
_OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
_SPLIT_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


@dataclass(frozen=True)
class FoundGGUF:
    """A GGUF model found on this computer by `discover_ggufs`."""

    name: str
    """What the owning app calls it: "publisher/repo/file.gguf", "model:tag", "owner/repo/...". """
    path: Path
    """The file llama.cpp and `load_for_training` open (Ollama blobs have no extension)."""
    size: int
    """Bytes on disk (all shards of a split model)."""
    source: Source


def is_gguf(path: Path) -> bool:
    from gguf import GGUF_MAGIC

    try:
        with path.open("rb") as f:
            return f.read(4) == struct.pack("<I", GGUF_MAGIC)
    except OSError:
        return False


def discover_ggufs(
    home: Path | None = None, *, locations: Locations | None = None
) -> list[FoundGGUF]:
    """GGUF models already on this computer: LM Studio's model folders, Ollama's blob store,
    the Hugging Face cache (HF_HUB_CACHE / HUGGINGFACE_HUB_CACHE / HF_HOME honoured) and, when
    `locations` is given, our own base-models folder. `home` replaces the user's home folder
    (tests). Only files that start with the GGUF magic are listed; vision projectors (mmproj)
    and the non-first shards of split models are left out. Never raises for unreadable folders."""
    user_home = Path.home() if home is None else home
    found: list[FoundGGUF] = []
    if locations is not None:
        for path in _ggufs_under(locations.base_models):
            name = path.relative_to(locations.base_models).as_posix()
            found.append(FoundGGUF(name, path, _size(path), "convsim"))
    for root in (user_home / ".lmstudio" / "models", user_home / ".cache" / "lm-studio" / "models"):
        for path in _ggufs_under(root):
            found.append(
                FoundGGUF(path.relative_to(root).as_posix(), path, _size(path), "lmstudio")
            )
    for models in _ollama_dirs(user_home, system=home is None):
        found.extend(_ollama_models(models))
    hub = _hf_hub_cache(user_home)
    for repo_dir in sorted(hub.glob("models--*")):
        repo_id = repo_dir.name.removeprefix("models--").replace("--", "/")
        for snapshot in sorted((repo_dir / "snapshots").glob("*")):
            for path in _ggufs_under(snapshot):
                name = f"{repo_id}/{path.relative_to(snapshot).as_posix()}"
                found.append(FoundGGUF(name, path, _size(path), "huggingface"))
    unique: dict[Path, FoundGGUF] = {}
    for item in found:
        unique.setdefault(item.path.resolve(), item)
    return sorted(unique.values(), key=lambda f: (_SOURCE_ORDER.index(f.source), f.name.casefold()))


def _ggufs_under(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*.gguf")):
        rel = path.relative_to(root).parts
        shard = _SPLIT_SHARD.search(path.name)
        if any(p.startswith(".") for p in rel) or path.name.lower().startswith("mmproj"):
            continue
        if shard and int(shard.group(1)) != 1:
            continue
        if path.is_file() and is_gguf(path):
            yield path


def _size(path: Path) -> int:
    """Bytes of `path`, or of all shards when it is the first of a split model."""
    shard = _SPLIT_SHARD.search(path.name)
    if not shard:
        return path.stat().st_size
    stem = path.name[: shard.start()]
    pattern = f"{stem}-*-of-{shard.group(2)}.gguf"
    return sum(p.stat().st_size for p in path.parent.glob(pattern))


def _ollama_dirs(home: Path, system: bool) -> list[Path]:
    dirs = [Path(os.environ["OLLAMA_MODELS"])] if os.environ.get("OLLAMA_MODELS") else []
    dirs.append(home / ".ollama" / "models")
    if system:  # the Linux service install keeps its own store
        dirs.append(Path("/usr/share/ollama/.ollama/models"))
    return dirs


def _ollama_models(models: Path) -> Iterator[FoundGGUF]:
    """Ollama keeps manifests/<host>/<namespace>/<model>/<tag> (JSON) pointing at content-
    addressed blobs/sha256-<hex>; the layer with the model media type is a plain GGUF."""
    manifests = models / "manifests"
    if not manifests.is_dir():
        return
    for manifest in sorted(manifests.glob("*/*/*/*")):
        try:
            layers = json.loads(manifest.read_text())["layers"]
            digest = next(x["digest"] for x in layers if x["mediaType"] == _OLLAMA_MODEL_LAYER)
        except (OSError, ValueError, KeyError, TypeError, StopIteration):
            continue
        blob = models / "blobs" / digest.replace(":", "-", 1)
        if not (blob.is_file() and is_gguf(blob)):
            continue
        host, namespace, model, tag = manifest.relative_to(manifests).parts
        name = f"{model}:{tag}"
        if namespace != "library" or host != "registry.ollama.ai":
            name = f"{namespace}/{name}"
        if host != "registry.ollama.ai":
            name = f"{host}/{name}"
        yield FoundGGUF(name, blob, blob.stat().st_size, "ollama")


def _hf_hub_cache(home: Path) -> Path:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache) if cache else home / ".cache") / "huggingface" / "hub"
