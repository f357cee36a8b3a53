"""`convsim doctor` and `convsim --version`: the checks of `core.system.doctor` on real temporary
data folders, stores and base-model files, and the command-line output built on them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from convsim.core.inference.llama.machine import ENV_AMX
from convsim.core.locations import Locations, make_private_dir
from convsim.core.store import VERSION
from convsim.core.system import doctor, sysinfo
from convsim.core.system.doctor import FAIL, OK, WARN
from convsim.core.workspace import SAMPLE_CHAT, Workspace
from convsim.tui.cli import main

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture
def locations(tmp_path: Path) -> Locations:
    """A home whose base-model and cache folders are its own (not the shared test models)."""
    return Locations(tmp_path / "home", tmp_path / "base-models", tmp_path / "cache")


@posix_only
def test_private_data_folder_passes(locations: Locations) -> None:
    make_private_dir(locations.home)
    check = doctor.check_data_folder(locations)
    assert check.status == OK and check.fix == ""
    assert str(locations.home) in check.detail and "private" in check.detail


@posix_only
def test_readable_data_folder_warns_with_the_fix_and_fix_tightens_it(
    locations: Locations,
) -> None:
    locations.home.mkdir(parents=True)
    locations.home.chmod(0o755)
    check = doctor.check_data_folder(locations)
    assert check.status == WARN
    assert "0755" in check.detail
    assert check.fix.startswith(f"chmod 700 '{locations.home}'")
    fixed = doctor.check_data_folder(locations, fix=True)
    assert fixed.status == OK
    assert locations.home.stat().st_mode & 0o777 == 0o700


def test_missing_data_folder_is_fine_and_a_file_in_its_place_fails(locations: Locations) -> None:
    check = doctor.check_data_folder(locations)
    assert check.status == OK and "does not exist yet" in check.detail
    assert not locations.home.exists()  # looking never creates it
    locations.home.parent.mkdir(parents=True, exist_ok=True)
    locations.home.write_text("not a folder")
    check = doctor.check_data_folder(locations)
    assert check.status == FAIL and "is a file" in check.detail and "CONVSIM_HOME" in check.fix


def test_missing_base_model_is_reported_without_assembling_it(locations: Locations) -> None:
    check = doctor.check_base_model(locations)
    assert check.status == WARN
    assert "gemma-3-270m-q4_k_m.gguf is not assembled yet" in check.detail
    assert "convsim doctor --fix" in check.fix
    assert not (locations.base_models / "gemma-3-270m-q4_k_m.gguf").exists()
    cache = doctor.check_torch_cache(locations)
    assert cache.status == WARN and "not assembled" in cache.detail


def test_damaged_base_model_fails_and_fix_assembles_it(locations: Locations) -> None:
    target = locations.base_models / "gemma-3-270m-q4_k_m.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF" + b"\0" * 1000)
    check = doctor.check_base_model(locations)
    assert check.status == FAIL and "sha256 mismatch" in check.detail
    assert "--fix" in check.fix
    fixed = doctor.check_base_model(locations, fix=True)
    assert fixed.status == OK and fixed.detail.endswith("sha256 ok")
    assert target.stat().st_size > 200_000_000


def test_store_schema_and_chats_are_reported(locations: Locations) -> None:
    assert doctor.check_store(locations).status == OK  # none yet: the first import makes it
    with Workspace(locations) as ws:
        ws.import_export(SAMPLE_CHAT)
    check = doctor.check_store(locations)
    assert check.status == OK
    assert f"schema {VERSION} (current {VERSION}), 1 chats" in check.detail


def test_store_from_a_newer_convsim_fails(locations: Locations) -> None:
    make_private_dir(locations.home)
    conn = sqlite3.connect(locations.store)
    conn.execute(f"PRAGMA user_version = {VERSION + 1}")
    conn.close()
    locations.store.chmod(0o600)
    check = doctor.check_store(locations)
    assert check.status == FAIL
    assert f"schema {VERSION + 1}, newer than this convsim ({VERSION})" in check.detail
    assert check.fix == "upgrade convsim"


def test_cpu_features_come_from_llama_cpp_system_info() -> None:
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 0 | FMA = 1 | NEON = 0 | OPENMP = 1"
    assert sysinfo.cpu_features(info) == ["AVX", "FMA"]


def test_the_cpu_check_says_whether_llama_cpp_may_use_amx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    info = "CPU : AVX = 1 | AVX2 = 1 | AMX_INT8 = 1 | OPENMP = 1"
    monkeypatch.delenv(ENV_AMX, raising=False)
    assert "AMX path is off" in doctor.check_cpu(info).detail
    monkeypatch.setenv(ENV_AMX, "1")
    assert "AMX path is on" in doctor.check_cpu(info).detail
    assert "AMX" not in doctor.check_cpu("CPU : AVX = 1 | AVX2 = 1").detail


def test_worst_status_decides() -> None:
    ok, warn, fail = (doctor.Check("x", s, "d") for s in (OK, WARN, FAIL))
    assert doctor.worst([ok, ok]) == OK
    assert doctor.worst([ok, warn]) == WARN
    assert doctor.worst([warn, fail, ok]) == FAIL


def _doctor_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(["doctor", "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_doctor_json_on_a_fresh_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("CONVSIM_BASE_MODELS", str(tmp_path / "no-models-yet"))
    code, report = _doctor_json(capsys)
    assert code == 0
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == [
        "platform",
        "libraries",
        "llama.cpp",
        "cpu",
        "gpu",
        "memory",
        "data folder",
        "disk",
        "store",
        "base model",
        "torch cache",
    ]
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in checks.values())
    assert checks["libraries"]["status"] == OK and "torch 2." in checks["libraries"]["detail"]
    assert checks["llama.cpp"]["status"] == OK
    assert "source install" in checks["platform"]["detail"]
    assert checks["base model"]["status"] == WARN
    assert report["status"] == WARN


def test_doctor_exits_non_zero_on_a_failure(home: Path, capsys) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("a file where the data folder should be")
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 1
    line = next(x for x in out.splitlines() if "data folder" in x)
    assert line.startswith("FAIL") and "is a file, not a folder" in line
    assert "fix: move that file away" in out
    assert out.splitlines()[-1].endswith("failed") and " 0 failed" not in out


def test_version_reports_app_llama_cpp_torch_and_platform() -> None:
    from convsim.core import __version__

    done = subprocess.run(
        [sys.executable, "-m", "convsim.tui.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == f"convsim {__version__}"
    text = done.stdout
    assert "llama.cpp: llama-cpp-python 0.3." in text
    assert "system info: CPU :" in text
    assert "torch: 2." in text
    assert f"platform: Python {sys.version_info[0]}.{sys.version_info[1]}." in text
    assert "build: source install (not frozen)" in text


def test_damaged_store_fails(locations: Locations) -> None:
    with Workspace(locations) as ws:
        ws.import_export(SAMPLE_CHAT)
    data = bytearray(locations.store.read_bytes())
    page = 4096
    data[2 * page : 4 * page] = b"\xa5" * (2 * page)  # scribble over two b-tree pages
    locations.store.write_bytes(bytes(data))
    check = doctor.check_store(locations)
    assert check.status == FAIL
    assert str(locations.store) in check.detail
    assert "backup" in check.fix or ".recover" in check.fix
