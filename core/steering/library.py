"""A persona's steering vectors on disk, and mixing slider positions into one vector.

Each vector is `<model folder>/steering/<name>.gguf` (`convert.control_vector`): llama.cpp's
format, with convsim's calibration in extra keys. Its rows are strength 1; the calibrated
range says how far each side of the slider goes (`Calibration.strength`).

Mixing (`mix`): several sliders sum into the one buffer llama.cpp holds, each vector its
slider's strength times its rows. Where the sizes of the positions sum past 1 they are all
scaled down together until they sum to 1 (`budget`). The mix is then an average of vectors at
their calibrated ends (and of no steering), weighted by the positions. Where the perplexity
rise is convex in the steering, such an average raises it no more than the worst of those
ends: no more than calibration allowed. Along each vector it was convex in every sweep
measured; across vectors that is expected, not proven, so `benchmarks/steering.py` measures
three sliders together. The same average makes the mix no longer, at any block, than one
vector at its end. Positions are clipped to -1..1; one that is not a number is refused.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convsim.convert.control_vector import ControlVector, check_fits, read_control_vector
from convsim.core.steering.calibrate import Calibration, Point

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Vector:
    """A calibrated steering vector of one persona."""

    name: str
    path: Path
    rows: np.ndarray  # n_blocks x n_embd at strength 1
    band: tuple[int, int]
    calibration: Calibration
    meta: dict[str, Any]

    @property
    def poles(self) -> tuple[str, str]:
        return str(self.meta.get("positive", "+")), str(self.meta.get("negative", "-"))


def model_fits(model: Path) -> tuple[str, int, int]:
    """(architecture, width, blocks) of a model GGUF, from its header: what `load` checks a
    vector against."""
    from convsim.convert.gguf_info import read_info

    info = read_info(model)
    return info.arch, info.n_embd, info.n_layers


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(
            f"{name!r} is not a usable vector name: lower-case letters, digits, - and _, "
            "starting with a letter (at most 32)"
        )
    return name


def folder(model_path: Path) -> Path:
    return Path(model_path) / "steering"


def vector_path(model_path: Path, name: str) -> Path:
    return folder(model_path) / f"{check_name(name)}.gguf"


def load(path: Path, fits: tuple[str, int, int] | None = None) -> Vector:
    """The vector in `path`; with `fits` = (arch, n_embd, n_blocks) of the model it will
    steer, a vector for another model is refused (ValueError naming the file)."""
    cv = read_control_vector(path, None if fits is None else fits[2])
    if fits is not None:
        check_fits(path, cv, *fits)
    meta = cv.meta
    try:
        band = (int(meta["band"][0]), int(meta["band"][1]))
        cal = Calibration(
            float(meta["range_positive"]),
            float(meta["range_negative"]),
            float(meta["baseline_perplexity"]),
            [Point(**p) for p in meta.get("sweep", [])],
        )
    except (KeyError, TypeError, ValueError, IndexError):
        raise ValueError(
            f"{path}: a control vector without convsim's calibration; build it with "
            "`convsim steer build`"
        ) from None
    name = str(meta.get("name") or Path(path).stem)
    return Vector(name, Path(path), cv.rows, band, cal, meta)


def save(path: Path, vector: ControlVector) -> Path:
    from convsim.convert.control_vector import write_control_vector

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_control_vector(path, vector)


class VectorFileError(ValueError):
    """A vector file that cannot be used (damaged, another model's): `path`, and why."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(why)
        self.path = Path(path)


def vectors(model_path: Path, fits: tuple[str, int, int] | None = None) -> list[Vector]:
    """Every vector of the persona whose folder is `model_path`, by name. VectorFileError
    names the first file that cannot be used."""
    out = []
    for path in sorted(folder(model_path).glob("*.gguf")):
        try:
            out.append(load(path, fits))
        except ValueError as e:
            raise VectorFileError(path, str(e)) from None
    return out


def remove(model_path: Path, names: Sequence[str]) -> list[Path]:
    """Delete the vectors `names` of the persona whose folder is `model_path`: the files they
    were in. A name is a file's (`NAME.gguf`, readable or not, so a damaged vector can go) or a
    vector's own. ValueError names a name it has no vector of, before anything is deleted."""
    files = sorted(folder(model_path).glob("*.gguf"))
    by_name = {p.stem: p for p in files}
    for p in files:  # a file renamed by hand still goes by the name `steer list` shows
        with contextlib.suppress(OSError, ValueError):
            by_name.setdefault(load(p).name, p)
    missing = [n for n in names if n not in by_name]
    if missing:
        have = ", ".join(sorted(by_name)) or "none"
        raise ValueError(f"no vector {missing[0]!r} (it has: {have})")
    paths = list(dict.fromkeys(by_name[n] for n in names))
    for p in paths:
        p.unlink(missing_ok=True)
    return paths


def mix(
    chosen: Mapping[str, float], available: Mapping[str, Vector]
) -> tuple[np.ndarray, int, int] | None:
    """(rows for blocks 1 on, first block, last block) of the sliders `chosen` (name ->
    -1..1) mixed as the module docstring says; None when nothing steers. KeyError names
    an unknown vector."""
    if not all(math.isfinite(v) for v in chosen.values()):
        raise ValueError(f"slider positions must be numbers: {dict(chosen)}")
    chosen = {name: max(-1.0, min(1.0, value)) for name, value in chosen.items()}
    used = [(available[name], value) for name, value in chosen.items() if value]
    if not used:
        return None
    widths = {v.rows.shape[1] for v, _ in used}
    if len(widths) > 1:
        raise ValueError(f"these vectors have different widths {sorted(widths)}")
    scale = budget(chosen)
    blocks = max(len(v.rows) for v, _ in used)  # a file holds rows up to its last band block
    total = np.zeros((blocks, widths.pop()))
    for v, value in used:
        total[: len(v.rows)] += v.calibration.strength(value * scale) * v.rows
    start = min(v.band[0] for v, _ in used)
    end = max(v.band[1] for v, _ in used)
    if not np.any(total):
        return None
    return total[1:].astype(np.float32), start, end


def budget(chosen: Mapping[str, float]) -> float:
    """The factor `mix` scales the slider positions `chosen` by: 1 while their sizes sum to
    at most 1, else what brings the sum down to 1."""
    total = sum(min(1.0, abs(v)) for v in chosen.values())
    return 1.0 if total <= 1 else 1 / total


def parse_mix(text: str) -> dict[str, float]:
    """`happy=0.5,brief=-1` as {name: value}; ValueError says what is wrong."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not name.strip() or not -1 <= number <= 1:
            raise ValueError(f"{part!r}: expected NAME=VALUE with VALUE between -1 and 1")
        out[check_name(name.strip())] = number
    return out
