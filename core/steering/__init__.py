"""Steering: sliders that move a persona's replies along a trait (happier, warmer, briefer...)
without retraining, with control vectors on llama.cpp.

Contract:
- `pairs`: contrast pairs from the person's own chat: the same real context, two replies that
  differ only in the trait (built-in axes in `axes`, or the user's poles or pairs file).
  At least `pairs.MIN_PAIRS` per vector; the latest sessions are held out.
- `directions`: per decoder block, the mean (or PCA) difference of the replies' hidden states
  in torch, on the persona (base + its LoRA); sign and separation checked on held-out pairs;
  a contiguous band of blocks chosen by that measurement. `fit` (method "fit") then moves the
  band's rows by gradient so each pole's replies gain against the other's while the person's
  real replies lose as little as they can. `own` (method "own") gives the fit pairs of the
  persona's own sampled replies instead: after the same moment, the two furthest apart along
  the axis as the memory embedder ranks them.
- `calibrate`: the usable strength on each side, measured on llama.cpp: the perplexity of the
  person's real replies at most 10% above unsteered (a 95% bootstrap bound over the moments),
  at most 2% degenerate replies. A slider's -1..+1 maps onto that range, each side separately.
- `library`: vectors are control-vector GGUFs (llama.cpp's own format, calibration in extra
  keys) in `<model folder>/steering/`; a vector for another model is refused; `mix` sums
  slider positions into one buffer (positions whose sizes sum past 1 scaled down together to
  sum 1), an average of vectors at their calibrated ends; `remove` deletes vectors by name.
- `build`: the whole job for one vector, with progress events and a cancel event.

Vectors reach a reply only through `inference.Engine.set_steering`, which steers the reply's
tokens and keeps the unsteered conversation cached.
"""

from convsim.core.steering.axes import BUILT_IN, Axis
from convsim.core.steering.build import BuildEvent, Cancelled, Spec, build_vector
from convsim.core.steering.calibrate import Calibration
from convsim.core.steering.library import (
    Vector,
    VectorFileError,
    check_name,
    mix,
    parse_mix,
    remove,
    vectors,
)
from convsim.core.steering.pairs import PairsError

__all__ = [
    "BUILT_IN",
    "Axis",
    "BuildEvent",
    "Calibration",
    "Cancelled",
    "PairsError",
    "Spec",
    "Vector",
    "VectorFileError",
    "build_vector",
    "check_name",
    "mix",
    "parse_mix",
    "remove",
    "vectors",
]
