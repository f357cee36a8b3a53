"""PEFT LoRA -> llama.cpp runtime LoRA adapter (GGUF), and back.

Contract of the written file (what `llama_cpp.Llama(model_path=base, lora_path=out)` expects):
- general.type = "adapter", adapter.type = "lora", general.architecture = the base's,
  adapter.lora.alpha (float32). llama.cpp scales each tensor by alpha / rank, the rank being
  read from that tensor's shape.
- Per adapted base tensor `<name>.weight`: `<name>.weight.lora_a` = PEFT's A (r x in) and
  `<name>.weight.lora_b` = PEFT's B (out x r), float32. For the `llama` arch, B's rows of q/k
  projections are permuted exactly as llama.cpp's converter permutes the q/k weights for RoPE
  (the permutation acts on output rows, so A is untouched).
- The PEFT config and a provenance record are stored as JSON strings under `convsim.*` keys.

Only what llama.cpp reproduces exactly is accepted; the rest raises ValueError: DoRA, LoRA on
embeddings/lm_head, modules_to_save, trained biases, non-uniform rank/alpha patterns, and
initialisations that rewrite the base weights (PiSSA, OLoRA, CorDA, LoftQ). rsLoRA
(scale alpha/sqrt(r)) is converted by writing alpha' = alpha * sqrt(r).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from convsim.core.files import replacing

from . import names
from .gguf_file import GGUFFile, read_gguf
from .gguf_info import GGUFInfo, info_from_file

KEY_PEFT_CONFIG = "convsim.peft_config"
KEY_PROVENANCE = "convsim.provenance"

# PEFT state-dict keys: `<module>.lora_A.weight`, optionally with the adapter name before `.weight`.
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.(?P<adapter>[^.]+))?\.weight$")

# PEFT features whose effect a plain GGUF LoRA cannot carry (any truthy value is refused).
_REFUSED_FEATURES = {
    "use_dora": "DoRA adds a magnitude vector llama.cpp does not apply",
    "modules_to_save": "modules_to_save trains full copies of modules, not low-rank deltas",
    "layer_replication": "layer_replication changes the model's layer structure",
    "lora_bias": "lora_bias trains an extra bias llama.cpp adapters cannot hold",
    "target_parameters": "LoRA on raw parameters (target_parameters) has no GGUF mapping",
    "trainable_token_indices": "trainable tokens change the embedding table",
    "alora_invocation_tokens": "activated LoRA (aLoRA) is not supported",
    "use_qalora": "QALoRA pools inputs in a way llama.cpp does not",
    "use_bdlora": "block-diagonal LoRA is not supported",
    "arrow_config": "Arrow routing is not supported",
    "megatron_config": "Megatron-parallel LoRA is not supported",
    "fan_in_fan_out": "fan_in_fan_out (Conv1D) layers do not exist in supported archs",
}
# Initialisations that subtract the initial adapter from the base weights: the adapter is then
# only valid on top of a modified base, which the GGUF base is not.
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")


@dataclass
class LoraWeights:
    """A LoRA in llama.cpp's layout: what an adapter GGUF holds, and what a merge adds."""

    arch: str  # the base's GGUF architecture
    alpha: float  # adapter.lora.alpha; llama.cpp scales a tensor by alpha / its rank
    # GGUF base tensor name ("blk.0.attn_q.weight") -> (A: r x in, B: out x r), float32,
    # B already permuted for llama q/k.
    tensors: dict[str, tuple[np.ndarray, np.ndarray]]
    peft_config: dict[str, Any] = field(default_factory=dict)  # the PEFT config it came from
    # Where it came from: the conversion record, or a GGUF adapter's stored record.
    provenance: dict[str, Any] = field(default_factory=dict)

    def scale(self, name: str) -> float:
        """The factor llama.cpp applies to B @ A for tensor `name`."""
        return self.alpha / self.tensors[name][0].shape[0]

    def delta(self, name: str) -> np.ndarray:
        """scale * B @ A for tensor `name`, float32, shape (out, in) in GGUF row order."""
        a, b = self.tensors[name]
        return (self.scale(name) * (b.astype(np.float64) @ a.astype(np.float64))).astype(np.float32)


# ---------------------------------------------------------------- reading PEFT


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "value") and type(value).__module__.startswith("peft"):
        return value.value  # PEFT enums (PeftType, TaskType)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def load_peft(source: Any) -> tuple[dict[str, Any] | None, dict[str, np.ndarray], str]:
    """Read a PEFT LoRA from a saved directory, an in-memory PeftModel, or a state dict.

    Returns (config dict or None for a bare state dict, float32 tensors, source description).
    """
    if isinstance(source, (str, os.PathLike)):
        directory = Path(source)
        config_path = directory / "adapter_config.json"
        if not config_path.is_file():
            raise ValueError(f"{directory}: not a PEFT adapter directory (no adapter_config.json)")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        st_path = directory / "adapter_model.safetensors"
        import torch

        if st_path.is_file():
            from safetensors.torch import load_file

            raw = load_file(str(st_path), device="cpu")
        elif (directory / "adapter_model.bin").is_file():
            raw = torch.load(directory / "adapter_model.bin", map_location="cpu", weights_only=True)
        else:
            raise ValueError(f"{directory}: no adapter_model.safetensors or adapter_model.bin")
        return config, _to_numpy(raw), str(directory)
    if hasattr(source, "peft_config") and hasattr(source, "active_adapter"):
        from peft import get_peft_model_state_dict

        adapter = source.active_adapter
        if not isinstance(adapter, str):
            raise ValueError("the PeftModel has several active adapters; activate one")
        config = _jsonable(source.peft_config[adapter].to_dict())
        # save_embedding_layers=False: "auto" would look the base model up on the Hub.
        state = get_peft_model_state_dict(source, adapter_name=adapter, save_embedding_layers=False)
        return config, _to_numpy(state), f"in-memory PeftModel (adapter {adapter!r})"
    if isinstance(source, Mapping):
        return None, _to_numpy(source), "state dict"
    raise TypeError(f"cannot read a LoRA from {type(source).__name__}")


def _to_numpy(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in state.items():
        if hasattr(value, "detach"):
            value = value.detach().to("cpu").float().numpy()
        out[key] = np.asarray(value, dtype=np.float32)
    return out


def _check_config(config: dict[str, Any]) -> None:
    peft_type = config.get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        raise ValueError(f"not a LoRA adapter (peft_type {peft_type!r})")
    for key, why in _REFUSED_FEATURES.items():
        if config.get(key):
            raise ValueError(f"unsupported PEFT option {key}: {why}")
    if config.get("bias", "none") != "none":
        raise ValueError(f"unsupported PEFT option bias={config['bias']!r}: trained biases")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise ValueError(f"init_lora_weights={init!r} rewrites the base weights; not supported")
    r, alpha = config.get("r"), config.get("lora_alpha")
    for key, default in (("rank_pattern", r), ("alpha_pattern", alpha)):
        odd = {k: v for k, v in (config.get(key) or {}).items() if v != default}
        if odd:
            raise ValueError(
                f"non-uniform {key} {odd} (default {default}): a GGUF adapter has one alpha for "
                "all tensors, so per-module ranks/alphas are refused"
            )


def lora_weights(
    source: Any,
    base_gguf: Path | str,
    *,
    alpha: float | None = None,
    rank: int | None = None,
    use_rslora: bool | None = None,
) -> LoraWeights:
    """Convert a PEFT LoRA (directory, PeftModel or state dict) to llama.cpp's layout for a base.

    `alpha`/`rank`/`use_rslora` are required for a bare state dict; for a directory or PeftModel
    they default to the config's values and, when given, must agree with them.
    """
    config, state, described = load_peft(source)
    if config is None:
        if alpha is None or rank is None:
            raise ValueError("a bare state dict needs alpha= and rank=")
        config = {"peft_type": "LORA", "r": rank, "lora_alpha": alpha}
        config["use_rslora"] = bool(use_rslora)
    for key, given in (("lora_alpha", alpha), ("r", rank), ("use_rslora", use_rslora)):
        if given is not None and config.get(key) is not None and config[key] != given:
            raise ValueError(
                f"{key}={given!r} disagrees with the adapter's config ({config[key]!r})"
            )
    _check_config(config)
    r, peft_alpha = int(config["r"]), float(config["lora_alpha"])
    if r <= 0 or peft_alpha <= 0:
        # llama.cpp reads alpha == 0 as "no scaling", not as a zero adapter.
        raise ValueError(f"rank and alpha must be positive (r={r}, lora_alpha={peft_alpha})")

    base = read_gguf(base_gguf, max_strings=0)
    info = info_from_file(base)
    names.check_supported(info.arch, str(base_gguf))
    tensors = _map_tensors(state, base, info, r)
    # llama.cpp: scale = alpha / r. PEFT: alpha / r, or alpha / sqrt(r) with rsLoRA.
    gguf_alpha = peft_alpha * math.sqrt(r) if config.get("use_rslora") else peft_alpha
    provenance = {
        "source": described,
        "peft_scale": "lora_alpha/sqrt(r)" if config.get("use_rslora") else "lora_alpha/r",
        "peft_lora_alpha": peft_alpha,
        "r": r,
        "gguf_alpha": gguf_alpha,
        "base": _describe_base(info),
    }
    return LoraWeights(info.arch, gguf_alpha, tensors, _jsonable(config), provenance)


def _map_tensors(
    state: dict[str, np.ndarray], base: GGUFFile, info: GGUFInfo, r: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        match = _LORA_KEY.match(key)
        if match is None:
            if "lora_embedding" in key:
                raise ValueError(f"LoRA on an embedding ({key}) is not supported by llama.cpp")
            if "lora_magnitude_vector" in key:
                raise ValueError(f"DoRA weights ({key}) are not supported")
            raise ValueError(f"unexpected tensor in the adapter: {key}")
        pairs.setdefault(match["module"], {})[match["ab"]] = value
    if not pairs:
        raise ValueError("the adapter holds no LoRA tensors")

    tensors = {}
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{module}: has lora_{''.join(ab)} without its partner")
        gguf_base = names.hf_to_gguf(info.arch, info.n_layers, module)
        if not names.is_lora_linear(info.arch, module) or gguf_base is None:
            what = "the embedding/lm_head" if gguf_base in ("token_embd", "output") else module
            raise ValueError(f"LoRA on {what} cannot be mapped to a llama.cpp adapter tensor")
        name = gguf_base + ".weight"
        a, b = ab["A"], ab["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ValueError(f"{module}: malformed LoRA shapes A{a.shape} B{b.shape}")
        if a.shape[0] != r:
            raise ValueError(f"{module}: rank {a.shape[0]} differs from the config's r={r}")
        if name not in base.tensors:
            raise ValueError(f"{module}: base model has no tensor {name}")
        out_dim, in_dim = base.tensors[name].rows_cols
        if (b.shape[0], a.shape[1]) != (out_dim, in_dim):
            raise ValueError(
                f"{module}: LoRA is {b.shape[0]}x{a.shape[1]} but the base's {name} is "
                f"{out_dim}x{in_dim}: the adapter was trained on a different base model"
            )
        if names.needs_qk_permute(info.arch):
            leaf = names.lora_leaf(module)
            if leaf == "q_proj":
                b = names.permute_qk_rows(b, info.n_head)
            elif leaf == "k_proj":
                b = names.permute_qk_rows(b, info.n_head_kv)
        tensors[name] = (np.ascontiguousarray(a), np.ascontiguousarray(b))
    return tensors


def _describe_base(info: GGUFInfo) -> dict[str, Any]:
    return {
        "file": info.path.name,
        "size_bytes": info.size_bytes,
        "name": info.name,
        "arch": info.arch,
        "file_type": info.file_type_name,
    }


def _tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("convsim")
    except PackageNotFoundError:
        return "unknown"


def provenance_record(extra: Mapping[str, Any] | None, **fields: Any) -> dict[str, Any]:
    """The JSON provenance convsim stores in every GGUF it writes."""
    record: dict[str, Any] = {
        "tool": "convsim",
        "version": _tool_version(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(fields)
    if extra:
        record["extra"] = _jsonable(extra)
    return record


# ---------------------------------------------------------------- GGUF adapter files


def write_lora_adapter(
    source: Any,
    base_gguf: Path | str,
    out: Path | str,
    *,
    alpha: float | None = None,
    rank: int | None = None,
    use_rslora: bool | None = None,
    name: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write `source` (PEFT dir, PeftModel, state dict or LoraWeights) as a GGUF LoRA for a base.

    `provenance` (JSON-able) is stored under `convsim.provenance` with what this function knows
    (source, base file, scale conversion, time). The file appears atomically at `out`.
    """
    import gguf

    weights = (
        source
        if isinstance(source, LoraWeights)
        else lora_weights(source, base_gguf, alpha=alpha, rank=rank, use_rslora=use_rslora)
    )
    out = Path(out)
    with replacing(out) as tmp:
        writer = gguf.GGUFWriter(tmp, weights.arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, weights.alpha)
        if name:
            writer.add_name(name)
        writer.add_string(KEY_PEFT_CONFIG, json.dumps(weights.peft_config, sort_keys=True))
        record = provenance_record(provenance, kind="lora_adapter", lora=weights.provenance)
        writer.add_string(KEY_PROVENANCE, json.dumps(record, sort_keys=True))
        for tensor_name, (a, b) in weights.tensors.items():
            writer.add_tensor(tensor_name + ".lora_a", a.astype(np.float32))
            writer.add_tensor(tensor_name + ".lora_b", b.astype(np.float32))
        try:
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return out


def read_lora_adapter(path: Path | str) -> LoraWeights:
    """Read a GGUF LoRA adapter (ours or llama.cpp's converter's) into `LoraWeights`."""
    import gguf

    gf = read_gguf(path)
    if gf.get(gguf.Keys.General.TYPE) != gguf.GGUFType.ADAPTER or (
        gf.get(gguf.Keys.Adapter.TYPE) != "lora"
    ):
        raise ValueError(f"{path}: not a GGUF LoRA adapter")
    arch = gf.get(gguf.Keys.General.ARCHITECTURE)
    alpha = float(gf.get(gguf.Keys.Adapter.LORA_ALPHA, 0.0))
    halves: dict[str, dict[str, np.ndarray]] = {}
    for tensor_name in gf.tensors:
        stem, _, half = tensor_name.rpartition(".")
        if half not in ("lora_a", "lora_b"):
            raise ValueError(f"{path}: unexpected tensor {tensor_name} in a LoRA adapter")
        halves.setdefault(stem, {})[half] = gf.array(tensor_name)
    tensors = {}
    for stem, ab in halves.items():
        if set(ab) != {"lora_a", "lora_b"}:
            raise ValueError(f"{path}: {stem} lacks lora_a or lora_b")
        tensors[stem] = (ab["lora_a"], ab["lora_b"])
    if alpha == 0.0:
        # llama.cpp then applies B @ A unscaled; alpha = rank reproduces that per tensor only
        # when all ranks agree.
        ranks = {a.shape[0] for a, _ in tensors.values()}
        if len(ranks) != 1:
            raise ValueError(f"{path}: alpha 0 with mixed ranks cannot be represented")
        alpha = float(ranks.pop())
    config = json.loads(gf.get(KEY_PEFT_CONFIG) or "{}")
    # What the file says about itself (for our adapters: source, base, scale conversion, time).
    provenance = {"file": Path(path).name, **json.loads(gf.get(KEY_PROVENANCE) or "{}")}
    return LoraWeights(str(arch), alpha, tensors, config, provenance)
