"""`convsim --version` (what this installation is made of) and `convsim doctor` (can it do its
job here?). The facts come from `core.system.sysinfo`, the checks from `core.system.doctor`; this
module only prints them. Both import torch and llama_cpp, so they do that when run, never
when the parser is built. `convsim doctor --restore` (and, in a terminal, a yes to its question)
puts the store's newest good backup (`core.store.backups`) in the place of a damaged store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.tui.cli.common import CliError, print_json

if TYPE_CHECKING:
    from convsim.core.locations import Locations
    from convsim.core.store import Restored, StoreCorruptError
    from convsim.core.system.doctor import Check

EXIT_FAIL = 1
_MARK = {"ok": "OK  ", "warn": "WARN", "fail": "FAIL"}


def version_text() -> str:
    """Several lines: the app, llama.cpp, torch, the platform and how this copy was built.
    The first line is always "convsim VERSION"."""
    from convsim.core import __version__
    from convsim.core.system.sysinfo import environment

    env = environment()
    return "\n".join(
        [
            f"convsim {__version__}",
            *_llama_lines(env["llama_cpp"]),
            _torch_line(env["torch"]),
            *_platform_lines(env["platform"]),
        ]
    )


def _llama_lines(info: dict[str, Any]) -> list[str]:
    if "error" in info:
        return [f"llama.cpp: not available ({info['error']})"]
    offload = "GPU offload" if info["gpu_offload"] else "no GPU offload"
    return [
        f"llama.cpp: llama-cpp-python {info['version']}, library {info['library']}, {offload}",
        f"  system info: {info['system_info']}",
    ]


def _torch_line(info: dict[str, Any]) -> str:
    if "error" in info:
        return f"torch: not available ({info['error']})"
    build = f"CUDA {info['cuda_build']} build" if info["cuda_build"] else "CPU build"
    devices = [
        d for d, on in (("cuda", info["cuda_available"]), ("mps", info["mps_available"])) if on
    ]
    return f"torch: {info['version']} ({build}; devices: {', '.join(['cpu', *devices])})"


def _platform_lines(info: dict[str, Any]) -> list[str]:
    lines = [f"platform: Python {info['python']}, {info['os']}, {info['arch']}"]
    build = info["build"]
    if info["frozen"]:
        made = f", built {build.get('built', '?')} from commit {build.get('commit', '?')}"
        lines.append(
            f"build: frozen (PyInstaller {build.get('pyinstaller', '?')}{made if build else ''})"
        )
    else:
        lines.append("build: source install (not frozen)")
    return lines


class VersionAction(argparse.Action):
    """`--version`: prints `version_text()` and exits; the text is computed only when asked for."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str = argparse.SUPPRESS,
        default: str = argparse.SUPPRESS,
        help: str = "show the versions of convsim, llama.cpp, torch and the platform, and exit",
    ) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_text())
        parser.exit()


def cmd_doctor(args: argparse.Namespace) -> int:
    from convsim.core.locations import Locations
    from convsim.core.system.doctor import FAIL, run_checks, worst

    locations = Locations.from_env()
    if args.restore:
        return restore(locations, as_json=args.json)
    checks = run_checks(locations, fix=args.fix)
    overall = worst(checks)
    if args.json:
        print_json({"status": overall, "checks": [c.to_json() for c in checks]})
        return EXIT_FAIL if overall == FAIL else 0
    width = max(len(c.name) for c in checks)
    for c in checks:
        _print_check(c, width)
    counts = {s: sum(c.status == s for c in checks) for s in _MARK}
    print(f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed")
    store = next((c for c in checks if c.name == "store"), None)
    if store is not None and store.status == FAIL and sys.stdin.isatty():
        after = offer_restore(locations)
        if after is not None:
            checks = [after if c is store else c for c in checks]
            overall = worst(checks)
    if overall == FAIL:
        print("convsim doctor: some checks failed; see 'fix:' above", file=sys.stderr)
    return EXIT_FAIL if overall == FAIL else 0


def _print_check(c: Check, width: int) -> None:
    print(f"{_MARK[c.status]}  {c.name:<{width}}  {c.detail}")
    if c.fix:
        print(f"      {'':<{width}}  fix: {c.fix}")


# -- a damaged store ---------------------------------------------------------------------------


def restore(locations: Locations, as_json: bool = False) -> int:
    """`convsim doctor --restore`: put the newest good backup in the place of a damaged (or
    missing) store, say what was done, then check the store again. A sound store is left alone."""
    import sqlite3

    from convsim.core.store import (
        backups_dir,
        latest_good_backup,
        list_backups,
        restore_backup,
        store_problem,
    )
    from convsim.core.system.doctor import FAIL, check_store

    store = locations.store
    try:
        problem = store_problem(store)
    except sqlite3.Error as e:
        raise CliError(f"cannot read the store {store}: {e}") from e
    if store.exists() and problem is None:
        raise CliError(
            f"the store {store} passes the integrity check: nothing to restore "
            "(a backup holds only what there was before the last upgrade)"
        )
    backup = latest_good_backup(store)
    if backup is None:
        found = len(list_backups(store))
        raise CliError(
            f"no backup of {store} to restore: "
            + (f"none of the {found} in {backups_dir(store)} passes" if found else "none made")
            + "; run `convsim doctor` for what else to do"
        )
    restored = restore_backup(store, backup)  # StoreInUse: `main` says it in one line
    check = check_store(locations)
    if as_json:
        print_json(
            {
                "status": check.status,
                "checks": [check.to_json()],
                "restored": {
                    "backup": str(backup.path),
                    "created": backup.created.isoformat(),
                    "schema": backup.version,
                    "kept": [str(p) for p in restored.kept],
                },
            }
        )
    else:
        _print_restored(restored, store)
        _print_check(check, len(check.name))
    return EXIT_FAIL if check.status == FAIL else 0


def offer_restore(locations: Locations) -> Check | None:
    """Ask whether to restore the newest good backup of a damaged store, and do it if so:
    returns the store check afterwards (None when nothing was restored)."""
    import sqlite3

    from convsim.core.store import StoreInUse, latest_good_backup, restore_backup, store_problem
    from convsim.core.system.doctor import check_store, when

    store = locations.store
    try:
        if store_problem(store) is None:
            return None
    except sqlite3.Error:
        return None  # unreadable, not damaged: a backup would not help
    backup = latest_good_backup(store)
    if backup is None:
        return None
    try:
        answer = input(f"Restore the backup from {when(backup.created)}? [y/N] ")
    except EOFError:
        return None
    if answer.strip().lower() not in ("y", "yes"):
        return None
    try:
        restored = restore_backup(store, backup)
    except StoreInUse as e:
        print(f"Not restored: {e}")
        return None
    _print_restored(restored, store)
    check = check_store(locations)
    _print_check(check, len(check.name))
    return check


def _print_restored(restored: Restored, store: Path) -> None:
    from convsim.core.system.doctor import when

    backup = restored.backup
    print(
        f"Restored {store} from the backup of {when(backup.created)} (schema {backup.version}): "
        f"{backup.path}"
    )
    print(f"Anything imported or trained after {when(backup.created)} is not in it.")
    if restored.kept:
        print(f"The damaged store is kept as {restored.kept[0]}: delete it once all looks right.")


def damaged_store_message(error: StoreCorruptError) -> str:
    """One line for a `StoreCorruptError`: what is wrong and the command that repairs it."""
    from convsim.core.store import latest_good_backup, list_backups
    from convsim.core.system.doctor import when

    backup = latest_good_backup(error.path)  # not a damaged one doctor would refuse
    if backup is not None:
        return (
            f"{error}; run `convsim doctor --restore` to restore the backup from "
            f"{when(backup.created)}"
        )
    good = "good " if list_backups(error.path) else ""
    return f"{error}; there is no {good}backup of it: run `convsim doctor` for what to do"


def add_commands(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check this installation and its data folder")
    p.add_argument(
        "--fix",
        action="store_true",
        help="repair what convsim can: make the data folder private, assemble the default base "
        "model and prepare its torch copy (about a minute)",
    )
    p.add_argument(
        "--restore",
        action="store_true",
        help="put the newest good backup (made before each upgrade of the store) in the place "
        "of a damaged store, keeping the damaged file beside it; then check the store again",
    )
    p.add_argument("--json", action="store_true", help="one JSON object: status and checks")
    p.set_defaults(func=cmd_doctor)
