"""The distribution holds every package and data file of the source tree, found rather than
listed (setup.py), and the type check resolves every first-party import (tests/typecheck.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typecheck import link_tree, run_mypy

ROOT = Path(__file__).resolve().parent.parent
ROOTS = ("core", "convert", "tui")


def source_files() -> set[str]:
    """Every file under the package roots as it must appear in the wheel (convsim/...)."""
    found = set()
    for root in ROOTS:
        for path in (ROOT / root).rglob("*"):
            relative = path.relative_to(ROOT)
            hidden = any(part.startswith(".") for part in relative.parts)
            if path.is_file() and "__pycache__" not in relative.parts and not hidden:
                found.add("convsim/" + relative.as_posix())
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: setuptools builds in place and never cleans build/lib, so a module moved
    # away since an earlier build would still turn up in a wheel built from the checkout.
    tree, out = tmp_path_factory.mktemp("tree"), tmp_path_factory.mktemp("wheel")
    skip = shutil.ignore_patterns("__pycache__", ".*")
    for name in (*ROOTS, "setup.py", "pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tree / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, tree / name)
    build = ["pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(tree)]
    subprocess.run([sys.executable, "-m", *build], check=True, capture_output=True)
    (path,) = out.glob("convsim-*.whl")
    return path


def test_the_wheel_holds_every_source_package_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    payload = {n for n in names if not n.startswith("convsim-")}
    expected = source_files()
    assert "convsim/tui/app/convsim.tcss" in expected  # the test sees data files at all
    assert "convsim/core/chats/samples/sample_whatsapp.txt" in expected
    assert expected - payload == set(), "left out of the wheel"
    assert payload - expected == set(), "in the wheel but not in the source tree"


def test_the_installed_wheel_imports_every_module(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    install = ["pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)]
    subprocess.run([sys.executable, "-m", *install], check=True, capture_output=True)
    code = f"""
import importlib, json, pkgutil, convsim.core, convsim.tui, convsim.convert
assert convsim.core.__file__.startswith({str(target)!r}), convsim.core.__file__
names = [m.name for p in (convsim.core, convsim.tui, convsim.convert)
         for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")]
for name in names:
    if not name.endswith(".__main__"):  # that one runs the command line
        importlib.import_module(name)
print(json.dumps(names))
"""
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    modules = {
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in source_files()
        if name.endswith(".py")
    } - {f"convsim.{root}" for root in ROOTS}
    assert set(json.loads(out.stdout)) == modules


def test_a_stale_first_party_import_fails_the_type_check(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for package in ROOTS:
        (tree / package).mkdir(parents=True)
        (tree / package / "__init__.py").write_text('"""A package."""\n')
    (tree / "core" / "fine.py").write_text("from convsim.core import __doc__ as doc\n")
    (tree / "core" / "stale.py").write_text("from convsim.core.moved_away import something\n")
    result = run_mypy(link_tree(tmp_path / "links", tree), "--cache-dir", str(tmp_path / "c"))
    assert result.returncode != 0
    stale = 'stale.py:1: error: Cannot find implementation or library stub for module named "'
    assert stale + 'convsim.core.moved_away"' in result.stdout
    assert "fine.py" not in result.stdout
