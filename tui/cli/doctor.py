"""`convsim --version` (what this installation is made of) and `convsim doctor` (can it do its
job here?). The facts come from `core.system.sysinfo`, the checks from `core.system.doctor`; this
module only prints them. Both import torch and llama_cpp, so they do that when run, never
when the parser is built."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from convsim.tui.cli.common import print_json

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

    checks = run_checks(Locations.from_env(), fix=args.fix)
    overall = worst(checks)
    if args.json:
        print_json({"status": overall, "checks": [c.to_json() for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{_MARK[c.status]}  {c.name:<{width}}  {c.detail}")
            if c.fix:
                print(f"      {'':<{width}}  fix: {c.fix}")
        counts = {s: sum(c.status == s for c in checks) for s in _MARK}
        print(f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed")
        if overall == FAIL:
            print("convsim doctor: some checks failed; see 'fix:' above", file=sys.stderr)
    return EXIT_FAIL if overall == FAIL else 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check this installation and its data folder")
    p.add_argument(
        "--fix",
        action="store_true",
        help="repair what convsim can: make the data folder private, assemble the default base "
        "model and prepare its torch copy (about a minute)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object: status and checks")
    p.set_defaults(func=cmd_doctor)
