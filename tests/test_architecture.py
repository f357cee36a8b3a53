"""The layering rules of STYLE.md, checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("textual", "torch", "transformers", "peft", "llama_cpp")


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}


def test_core_and_convert_never_import_textual_or_heavy_libraries() -> None:
    loaded = modules_after(
        "import convsim.core.chats.importers, convsim.core.store, convsim.core.workspace, "
        "convsim.core.data.dataset, convsim.core.data.scrub, convsim.convert"
    )
    assert not loaded & set(HEAVY)


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
