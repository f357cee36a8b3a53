"""Type-check convsim under the names it is installed as (`convsim.core` = ./core, ...).

mypy maps a file to a module by its path, so checking `core/x.py` in place would call it `core.x`
and could not follow an `import convsim.core.y`; with `ignore_missing_imports` such imports were
silently treated as Any. This script lays a link tree `<dir>/convsim/{core,convert,tui}` over the
source folders and checks the packages through it, so every first-party import is resolved and a
stale one is an error. `python tests/typecheck.py [mypy args...]` is what tests/run.sh runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "convert", "tui")


def link_tree(where: Path, root: Path = ROOT) -> Path:
    """`where/convsim/<package>` -> `root/<package>` for each package; returns `where`."""
    top = where / "convsim"
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(parents=True)
    for package in PACKAGES:
        (top / package).symlink_to(root / package, target_is_directory=True)
    return where


def run_mypy(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """mypy over the convsim packages as laid out in `where`, with the project's settings."""
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    for package in PACKAGES:
        command += ["-p", f"convsim.{package}"]
    env = {**os.environ, "MYPYPATH": str(where)}
    return subprocess.run([*command, *args], cwd=where, env=env, capture_output=True, text=True)


if __name__ == "__main__":
    result = run_mypy(link_tree(ROOT / ".cache" / "typecheck"), *sys.argv[1:])
    print(result.stdout + result.stderr, end="")
    sys.exit(result.returncode)
