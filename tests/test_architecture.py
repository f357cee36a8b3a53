"""The layering rules of STYLE.md, checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("textual", "torch", "transformers", "peft", "llama_cpp")


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}


IMPORT_EVERY_MODULE = """
import importlib, pkgutil, convsim.core, convsim.convert
for package in (convsim.core, convsim.convert):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
"""


def test_core_and_convert_never_import_textual_or_heavy_libraries() -> None:
    """Every module of every stage package, imported: no Textual ever, and the heavy libraries
    only inside the functions that need them."""
    loaded = modules_after(IMPORT_EVERY_MODULE)
    assert "textual" not in loaded
    assert not loaded & set(HEAVY)


def test_core_has_a_handful_of_top_level_modules_and_documented_packages() -> None:
    import convsim.core

    root = Path(convsim.core.__file__).parent
    assert len(list(root.glob("*.py"))) <= 6, sorted(p.name for p in root.glob("*.py"))
    for init in root.rglob("__init__.py"):
        text = init.read_text(encoding="utf-8")
        assert text.startswith('"""') and "Contract" in text, f"{init}: no contract docstring"


def test_cli_start_imports_nothing_heavy() -> None:
    loaded = modules_after("import convsim.tui.cli as c; c.build_parser()")
    assert not loaded & set(HEAVY)


def test_namespaced_packages_do_not_claim_generic_names() -> None:
    loaded = modules_after("import convsim.core, convsim.tui, convsim.convert")
    assert not {"core", "tui", "convert"} & loaded


def test_console_script_help_and_version() -> None:
    help_out = subprocess.run(
        [sys.executable, "-m", "convsim.tui.cli", "--help"], capture_output=True, text=True
    )
    assert help_out.returncode == 0
    for command in ("import", "chats", "messages", "dataset", "people", "quickstart"):
        assert command in help_out.stdout
    version = subprocess.run(
        [sys.executable, "-m", "convsim.tui.cli", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("convsim ")
