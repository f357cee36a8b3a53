"""Facts about this installation: the platform, how it was built (source or frozen), the
llama.cpp and torch builds and what hardware they can use. The data behind `convsim --version`
and the first checks of `convsim doctor`.

Contract: plain dicts and lists, nothing printed. A library that fails to load is reported as
{"error": ...}, never raised. torch and llama_cpp are imported inside the functions that ask them
(llama_cpp through the llama.cpp seam, `inference.llama`).
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

BUILD_INFO = "convsim_build.json"
"""The file a PyInstaller build bundles at its top (see packaging/convsim.spec)."""


def is_frozen() -> bool:
    """True inside a PyInstaller build."""
    return bool(getattr(sys, "frozen", False))


def build_info() -> dict[str, Any]:
    """How a frozen build was made (date, commit, PyInstaller), from the file the build bundles;
    empty for a source install."""
    if not is_frozen():
        return {}
    try:
        data = json.loads((Path(getattr(sys, "_MEIPASS", "")) / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def platform_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
        "frozen": is_frozen(),
        "build": build_info(),
    }


def llama_cpp_info() -> dict[str, Any]:
    """llama-cpp-python's version, the llama.cpp library's own version and system info (the CPU
    features it was built for), and whether it can offload to a GPU; {"error": ...} when the
    library does not load."""
    from convsim.core.inference import llama

    try:
        return llama.library_info()
    except (ImportError, OSError) as exc:  # OSError: the shared library failed to load
        return {"error": str(exc)}


def torch_info() -> dict[str, Any]:
    """torch's version, the CUDA version it was built for (None for CPU builds), and which
    accelerators it can use here; {"error": ...} when torch does not import."""
    from convsim.core.system.devices import accelerators

    try:
        import torch
    except (ImportError, OSError) as exc:
        return {"error": str(exc)}
    found = accelerators()
    return {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": found.cuda,
        "cuda_device": found.cuda_device,
        "mps_available": found.mps,
    }


def environment() -> dict[str, Any]:
    """Everything `convsim --version` reports, as plain data."""
    return {"platform": platform_info(), "llama_cpp": llama_cpp_info(), "torch": torch_info()}


def cpu_features(system_info: str = "") -> list[str]:
    """SIMD features that matter for llama.cpp and torch speed: from llama.cpp's system info
    ("AVX2 = 1 | ..."), else from /proc/cpuinfo on Linux."""
    wanted = ("AVX", "AVX2", "AVX512", "FMA", "F16C", "NEON", "ARM_FMA", "SVE")
    found = {m.group(1) for m in re.finditer(r"(\w+) = 1", system_info)}
    if not found and Path("/proc/cpuinfo").is_file():
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = {
                word.upper()
                for line in f
                if line.startswith(("flags", "Features"))
                for word in line.split(":", 1)[1].split()
            }
        found = flags | ({"AVX512"} if "AVX512F" in flags else set())
        found |= {"NEON"} if "ASIMD" in flags else set()
    return [name for name in wanted if name in found]


def total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX (Windows)
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return None
