"""The layering rules of STYLE.md, checked in fresh interpreters."""

from __future__ import annotations

import ast
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


# The one-way data flow (ARCHITECTURE.md): which stage packages each one may import, besides
# the shared helpers at core's top level (locations, workspace, files, locks, config).
# `convert` is the GGUF toolbox that training and inference call.
MAY_IMPORT = {
    "chats": set(),
    "store": {"chats"},
    "data": {"chats"},
    "bases": {"convert"},
    "training": {"chats", "store", "data", "bases", "system", "convert"},
    "inference": {"data", "convert"},
    "evaluation": {"chats", "store", "data", "inference", "training"},
    "system": {"store", "bases", "inference"},
    "memory": {"chats", "store", "data", "inference"},
    # steering ranks the persona's own replies with memory's sentence embedder (`own`).
    "steering": {"chats", "store", "data", "bases", "training", "inference", "convert", "memory"},
    "learning": {
        "store",
        "data",
        "bases",
        "training",
        "inference",
        "evaluation",
        "memory",
        "convert",
    },
    "convert": set(),
}
SHARED = {"locations", "workspace", "files", "locks", "config"}


def stage_imports(path: Path) -> set[str]:
    """The convsim packages a module imports (`convsim.core.data.turns` -> "data")."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[:2] == ["convsim", "core"]:
                names = parts[2:3] or [alias.name for alias in node.names]
                found.update(n for n in names if n not in SHARED and n != "__version__")
            elif parts[:2] == ["convsim", "convert"]:
                found.add("convert")
    return found


def test_stages_import_only_the_stages_before_them() -> None:
    root = Path(__file__).resolve().parent.parent
    for stage, allowed in MAY_IMPORT.items():
        folder = root / ("convert" if stage == "convert" else f"core/{stage}")
        for path in folder.rglob("*.py"):
            wrong = stage_imports(path) - allowed - {stage}
            assert not wrong, f"{path.relative_to(root)} imports {sorted(wrong)}"
