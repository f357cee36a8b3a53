"""Which torch accelerators this machine has, asked in one place.

Contract: `accelerators()` reports what torch can use (CUDA and its device name, Apple MPS);
`choose_device(preference, precision)` turns settings (a device of `DEVICES`, a precision of
`PRECISIONS`) into the device and dtype training runs in, and `precision_name(dtype)` names
that dtype the way `PRECISIONS` does; `cpu_bf16()` says whether this CPU
multiplies bfloat16 matrices natively. torch is imported inside the functions; callers that
must survive a broken torch (`sysinfo`) catch the import error themselves.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Accelerators:
    cuda: bool
    cuda_device: str | None  # name of CUDA device 0
    mps: bool


def accelerators() -> Accelerators:
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return Accelerators(cuda, torch.cuda.get_device_name(0) if cuda else None, mps)


@functools.cache
def cpu_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (x86 AVX512-BF16 or AMX, as Linux
    reports them). On such a CPU a LoRA step on the default base is about 1.5x faster in bf16
    than in fp32 and takes a quarter less memory (`benchmarks/train_speed.py`); without them
    bf16 is emulated and slower, so training stays in fp32 (and does elsewhere: macOS)."""
    try:
        return bf16_in_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace"))
    except OSError:
        return False


def bf16_in_cpuinfo(cpuinfo: str) -> bool:
    """Whether the first CPU's flags in a Linux /proc/cpuinfo text name bf16 instructions."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool(set(line.partition(":")[2].split()) & {"avx512_bf16", "amx_bf16"})
    return False


def precision_name(dtype: Any) -> str:
    """The short name of a torch floating-point dtype: "bf16", "fp16" or "fp32" (any other)."""
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(dtype), "fp32")


def choose_device(preference: str = "auto", precision: str = "auto") -> tuple[str, Any]:
    """(device, dtype): CUDA with bf16 where supported (else fp16), else Apple MPS (fp32), else
    the CPU: bf16 where it has bf16 instructions (`cpu_bf16`), else fp32. `precision` "fp32"
    or "bf16" sets the dtype on any device instead. ValueError for a preference outside
    `DEVICES` or a precision outside `PRECISIONS`."""
    import torch

    if preference not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {preference!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if preference == "auto":
        found = accelerators()
        preference = "cuda" if found.cuda else "mps" if found.mps else "cpu"
    if precision != "auto":
        return preference, torch.float32 if precision == "fp32" else torch.bfloat16
    if preference == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "cuda", torch.bfloat16 if bf16 else torch.float16
    if preference == "cpu" and cpu_bf16():
        return "cpu", torch.bfloat16
    return preference, torch.float32
