"""A base GGUF as a torch model to train on: `load_for_training`.

The first load of a GGUF dequantises it with transformers and keeps a plain torch copy
(safetensors + config + tokenizer) under `locations.cache/torch/<sha256[:16]>/`, so later loads
take seconds instead of a minute. The model returned always comes from that copy, so it is an
ordinary (not "quantised") transformers model that PEFT and `save_pretrained` accept.

A persona is trained on transformers' reading of the GGUF and run by llama.cpp, so the copy must
compute what llama.cpp computes: its weights are compared with the dequantised GGUF when it is
made, and its tokenizer with llama.cpp's on `PROBES`, once for each transformers version that
loads it. Some releases read a GGUF tokenizer differently: on the default base 5.17, 5.19, 5.21
and 5.22 drop the BOS token, and 5.17 also splits words apart (one token per character on one
machine); 5.23 and 5.25 match. A persona trained on such tokens meets others in every chat, and
its replies fall apart into repeated names. A copy that does not match is never used:
`BaseModelError` says which text differs and what to do.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.core.bases.prepare import (
    BaseModelError,
    ProgressFn,
    _check_gguf,
    _emit,
    sha256_file,
)
from convsim.core.files import publishing, write_json
from convsim.core.locations import Locations, make_private_dir

if TYPE_CHECKING:
    import torch

__all__ = ["PROBES", "load_for_training", "torch_cache_dir", "torch_cache_is_current"]

# The first release seen to read the default base's tokenizer as llama.cpp does, named in the
# error when the installed one reads a base differently (pyproject.toml asks for it too).
GOOD_TRANSFORMERS = "5.23"
# Bumped when the layout of the torch cache changes; older caches are rebuilt.
_TORCH_CACHE_FORMAT = 1

# What training feeds the tokenizer: "[Name] message" lines, emoji, accents, other scripts,
# runs of whitespace, and special-token text typed in a message (kept as plain text).
PROBES = (
    "[Riya] hey are we still going tonight?\n[Sam] yeah! want to meet at 7?\n",
    "[Dr. O'Neil] ok\n[Ana María] 👍🏽 café\n[李雷] 好的\n",
    "a  b   c\t\td\n\n\n   leading",
    "typed specials stay text: <bos> <eos> <start_of_turn>user",
    "",
)


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
    if not _tokenizer_checked(cache_dir):
        # A copy made before this check, or by another transformers: check it once, and make
        # it again with this transformers if it does not match.
        if _tokenizer_mismatch(tokenizer, gguf_path) is None:
            _record_tokenizer_checked(cache_dir)
        else:
            _build_torch_cache(gguf_path, cache_dir, digest, progress, replace=True)
            tokenizer = AutoTokenizer.from_pretrained(cache_dir, split_special_tokens=True)
    model = AutoModelForCausalLM.from_pretrained(cache_dir, dtype=dtype or torch.float32)
    return model, tokenizer


def torch_cache_dir(locations: Locations, digest: str) -> Path:
    """Where the torch copy of the base GGUF with sha256 `digest` lives."""
    return locations.cache / "torch" / digest[:16]


def torch_cache_is_current(cache_dir: Path, digest: str) -> bool:
    source = _source(cache_dir)
    return source.get("format") == _TORCH_CACHE_FORMAT and source.get("sha256") == digest


def _source(cache_dir: Path) -> dict[str, Any]:
    """The copy's record of what it was made from ({} when missing or unreadable)."""
    try:
        source = json.loads((cache_dir / "source.json").read_text())
    except (OSError, ValueError):
        return {}
    return source if isinstance(source, dict) else {}


def _tokenizer_checked(cache_dir: Path) -> bool:
    """Whether the copy's tokenizer was checked against llama.cpp by this transformers."""
    import transformers

    return _source(cache_dir).get("tokenizer_checked") == transformers.__version__


def _record_tokenizer_checked(cache_dir: Path) -> None:
    import transformers

    source = {**_source(cache_dir), "tokenizer_checked": transformers.__version__}
    # Remembering is only a speed-up: a read-only cache must not fail the load.
    with contextlib.suppress(OSError):
        write_json(cache_dir / "source.json", source)


def _tokenizer_mismatch(tokenizer: Any, gguf_path: Path) -> str | None:
    """None if `tokenizer` gives llama.cpp's ids for every probe, else how the first differs."""
    from convsim.convert.vocab import llama_cpp_tokens

    for text, theirs in zip(PROBES, llama_cpp_tokens(gguf_path, PROBES), strict=True):
        ours = list(tokenizer(text).input_ids)
        if ours != theirs:
            return (
                f"{text!r} becomes {len(ours)} tokens starting {ours[:6]} in transformers but "
                f"{len(theirs)} starting {theirs[:6]} in llama.cpp"
            )
    return None


def _build_torch_cache(
    gguf_path: Path,
    cache_dir: Path,
    digest: str,
    progress: ProgressFn | None,
    replace: bool = False,
) -> None:
    """Make the copy beside `cache_dir` and rename it into place; `replace` puts it over a
    current copy too (one whose tokenizer failed the check)."""
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
            _check_tokenizer(tmp, gguf_path)  # before the minute the weights take
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
        source["transformers"] = source["tokenizer_checked"] = transformers.__version__
        write_json(tmp / "source.json", source)
        # Else another process finished first (a current copy is only replaced when asked).
        if replace or not torch_cache_is_current(cache_dir, digest):
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


def _check_tokenizer(folder: Path, gguf_path: Path) -> None:
    """The tokenizer saved in `folder`, reloaded as training will load it, must cut text the
    way llama.cpp does."""
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, split_special_tokens=True)
    mismatch = _tokenizer_mismatch(tokenizer, gguf_path)
    if mismatch is not None:
        raise BaseModelError(
            f"transformers {transformers.__version__} reads the tokenizer of {gguf_path.name} "
            f"differently from llama.cpp ({mismatch}), so a persona trained with it would not "
            f"work in chats; install a release that reads it the same way: "
            f"pip install 'transformers>={GOOD_TRANSFORMERS}'"
        )
