"""Which packages and data files make up the `convsim` distribution: found, never listed.

The top-level folders core/, convert/ and tui/ install as `convsim.core`, `convsim.convert` and
`convsim.tui` (a generic name such as `core` must not claim a spot in a user's site-packages).
Every folder under them that holds files is a package (one without an `__init__.py`, such as
core/chats/samples/, is a data-only namespace package), and every file in it that is not Python
is its data. So a new subpackage or
stylesheet cannot be left out of the wheel or the release build: tests/test_packaging.py builds
the wheel and checks it. Everything else about the project is in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

ROOTS = ("core", "convert", "tui")
HERE = Path(__file__).parent


def _is_source(path: Path) -> bool:
    return "__pycache__" not in path.parts and not path.name.startswith(".")


def packages() -> dict[str, str]:
    """Import name -> folder, for every folder under the roots that holds files."""
    found = {}
    for root in ROOTS:
        for folder in sorted({p.parent for p in (HERE / root).rglob("*") if p.is_file()}):
            relative = folder.relative_to(HERE)
            if _is_source(relative):
                found["convsim." + ".".join(relative.parts)] = relative.as_posix()
    return found


def package_data(found: dict[str, str]) -> dict[str, list[str]]:
    """Package -> the names of its files that are not Python."""
    data: dict[str, list[str]] = {}
    for name, folder in found.items():
        files = sorted(p for p in (HERE / folder).iterdir() if p.is_file() and _is_source(p))
        extra = [p.name for p in files if p.suffix not in (".py", ".pyc")]
        if extra:
            data[name] = extra
    return data


PACKAGES = packages()
setup(packages=list(PACKAGES), package_dir=PACKAGES, package_data=package_data(PACKAGES))
