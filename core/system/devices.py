"""Which torch accelerators this machine has, asked in one place.

Contract: `accelerators()` reports what torch can use (CUDA and its device name, Apple MPS);
`choose_device(preference)` turns a setting ("auto", "cpu", "cuda", "mps") into the device and
dtype training runs in. torch is imported inside the functions; callers that must survive a
broken torch (`sysinfo`) catch the import error themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "mps")


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


def choose_device(preference: str = "auto") -> tuple[str, Any]:
    """(device, dtype): CUDA with bf16 where supported (else fp16), else Apple MPS, else CPU;
    MPS and CPU in fp32. ValueError for a preference outside `DEVICES`."""
    import torch

    if preference not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {preference!r}")
    if preference == "auto":
        found = accelerators()
        preference = "cuda" if found.cuda else "mps" if found.mps else "cpu"
    if preference == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "cuda", torch.bfloat16 if bf16 else torch.float16
    return preference, torch.float32
