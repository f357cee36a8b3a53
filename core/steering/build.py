"""Building one steering vector for a persona: pairs -> directions (torch) -> calibration
(llama.cpp) -> a control-vector GGUF beside the persona. Progress is reported as
`BuildEvent`s; a set `cancel` event stops the job between steps, writing nothing.

A `Target` is what gets steered: a trained persona (`persona_target`: base + its LoRA, contexts
from its dataset, vectors in its folder) or the plain default base (`base_target`: contexts
from the sample chat bundled with convsim, so no one's private messages are involved; vectors
in `<data folder>/bases/<sha256 prefix>/steering/`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.convert.control_vector import ControlVector
from convsim.core.steering import calibrate, directions, fit, library, own, pairs
from convsim.core.steering.axes import BUILT_IN, Axis

if TYPE_CHECKING:
    from convsim.core.workspace import Workspace

METHODS = ("mean", "pca", "fit", "own")
HELD_OUT = 40  # held-out contexts (at least): sign and separation are measured on them
CALIBRATION_CONTEXTS = 24  # held-out contexts: calibration scores their replies and samples one
CALIBRATION_EARLIER = 60  # the latest earlier contexts: their replies are scored too


class Cancelled(Exception):
    """The build was stopped by its cancel event; nothing was written."""


@dataclass(frozen=True)
class BuildEvent:
    # "pairs", "sampling" (method "own"), "directions", "fitting", "calibration", "saved"
    stage: str
    done: int
    total: int
    note: str = ""


@dataclass(frozen=True)
class Spec:
    """What to build: a built-in axis (`axis`), two poles, or a pairs file."""

    name: str
    axis: str | None = None
    poles: tuple[str, str] | None = None
    pairs_file: Path | None = None
    method: str = "mean"  # one of METHODS: "fit" (`fit.fit`) applies to reply pairs only;
    # "own" fits on pairs of the persona's own replies (`own.own_pairs`), any axis but length
    n_pairs: int = pairs.MIN_PAIRS


def resolve(spec: Spec) -> Axis:
    """The axis `spec` names, or ValueError saying what to give."""
    chosen = [x is not None for x in (spec.axis, spec.poles, spec.pairs_file)]
    if sum(chosen) != 1:
        raise ValueError("give exactly one of: a built-in axis, two poles, a pairs file")
    if spec.axis is not None:
        if spec.axis not in BUILT_IN:
            raise ValueError(f"no built-in axis {spec.axis!r}; built in: {', '.join(BUILT_IN)}")
        return BUILT_IN[spec.axis]
    if spec.poles is not None:
        return pairs.pole_axis(spec.name, *spec.poles)
    assert spec.pairs_file is not None
    return pairs.file_axis(spec.name, spec.pairs_file)


def _pairs(axis: Axis, found: list[pairs.Context], n: int) -> list[pairs.Pair]:
    if axis.replies:
        return pairs.contrast_pairs(found, axis, n)
    return pairs.pole_pairs(found, axis, n)


def chosen_method(asked: str, axis: Axis) -> str:
    """The method a build uses: poles are not fitted (their replies carry the pole as a
    written stage direction, which a fit would learn to write), so "fit" gives them the mean;
    a length axis's own replies are not ranked by length, so "own" gives it the ending fit."""
    if asked == "fit" and not axis.replies:
        return "mean"
    return "fit" if asked == "own" and axis.length else asked


def _adapters(t: Target) -> list[tuple[Path, float]]:
    return [(t.adapter, 1.0)] if t.adapter is not None else []


def _own_pairs(
    t: Target,
    axis: Axis,
    early: list[pairs.Context],
    n: int,
    threads: int | None,
    progress: Callable[[int, int], None],
) -> list[pairs.Pair]:
    """`own.own_pairs` after the earlier contexts, sampled on llama.cpp and closed again before
    torch loads the persona (the two are never in memory together)."""
    from convsim.core.inference.llama import LlamaModel
    from convsim.core.memory.embedder import shared_embedder

    llm = LlamaModel(t.base, _adapters(t), n_ctx=1024, threads=threads)
    try:
        return own.own_pairs(llm, shared_embedder(), axis, early, n, progress)
    finally:
        llm.close()


def method_note(asked: str, method: str, axis: Axis) -> str:
    if method == "fit" and axis.length:
        return "; a length axis: the fit moves where the person's messages end"
    if method == "own":
        return f"; fitted on pairs of the persona's own replies ({own.SAMPLES} after each moment)"
    return "; poles are not fitted: the mean difference" if method != asked else ""


BASE_ID = "base"  # the name the command line and the app use for the plain default base


@dataclass(frozen=True)
class Target:
    """What a vector steers, and where its contexts come from and its files go."""

    id: str  # a model id, or BASE_ID
    base: Path  # the base GGUF
    adapter: Path | None  # the runtime LoRA GGUF (None: the plain base)
    peft: Path | None  # the same LoRA for torch (a PEFT folder)
    examples: list[Any]  # dataset examples: where contexts come from
    folder: Path  # vectors go in folder / "steering"
    base_sha256: str


def persona_target(ws: Workspace, model_id: str) -> Target:
    """A trained persona. KeyError for an unknown id; training's errors when not ready."""
    from convsim.core import training

    record = ws.store.model(model_id)
    adapter = training.adapter_gguf(ws, model_id)
    if record.dataset_id is None:
        raise ValueError(f"model {model_id} has no dataset to take chat contexts from")
    train, validation, _ = ws.dataset_files(record.dataset_id)
    peft = adapter.parent / "adapter"  # the current version's (training.versions)
    return Target(model_id, Path(record.base), adapter, peft, [*train, *validation],
                  Path(record.path), record.base_sha256)  # fmt: skip


def base_target(ws: Workspace) -> Target:
    """The plain default base, with contexts from the bundled sample chat (Sam's replies)."""
    from convsim.core.bases.prepare import default_base, sha256_file
    from convsim.core.chats.importers import parse_export
    from convsim.core.chats.messages import StoredMessage
    from convsim.core.data.dataset import DatasetConfig
    from convsim.core.data.dataset import build as build_dataset
    from convsim.core.workspace import SAMPLE_CHAT

    base = default_base(ws.locations)
    digest = sha256_file(base, ws.locations)
    (chat,) = parse_export(SAMPLE_CHAT)
    messages = [StoredMessage(i, m.timestamp, m.sender, m.text, m.kind)
                for i, m in enumerate(chat.messages, 1)]  # fmt: skip
    data = build_dataset(messages, DatasetConfig(target="Sam"))
    examples = [*data.train, *data.validation]
    return Target(BASE_ID, base, None, None, examples, _base_folder(ws, digest), digest)


def base_folder(ws: Workspace) -> Path:
    """Where the plain default base's vectors live (their files are in its `steering/`)."""
    from convsim.core.bases.prepare import default_base, sha256_file

    return _base_folder(ws, sha256_file(default_base(ws.locations), ws.locations))


def _base_folder(ws: Workspace, digest: str) -> Path:
    return ws.locations.home / "bases" / digest[:16]


def calibration_contexts(
    early: list[pairs.Context], held: list[pairs.Context]
) -> tuple[list[pairs.Context], int]:
    """(contexts, how many of the first get a sampled reply) for calibrating: the first
    `CALIBRATION_CONTEXTS` held-out ones, then the latest `CALIBRATION_EARLIER` earlier ones.
    The perplexity rise differs from one day of a chat to the next (on the sample chat, up to
    2-4 times at the same strength): the earlier contexts spread it over more days, and the
    persona's rise on the messages it was trained on was no smaller than on held-out ones."""
    chosen = held[:CALIBRATION_CONTEXTS]
    return chosen + early[-CALIBRATION_EARLIER:], len(chosen)


def split_contexts(t: Target) -> tuple[list[pairs.Context], list[pairs.Context]]:
    """(earlier, held-out) contexts of the target, as every build splits them: pairs come
    from the earlier ones; sign and separation from the held-out ones; calibration from
    both (`calibration_contexts`)."""
    return pairs.split(pairs.contexts(t.examples), HELD_OUT)


def target(ws: Workspace, model_id: str) -> Target:
    return base_target(ws) if model_id == BASE_ID else persona_target(ws, model_id)


def load_persona(ws: Workspace, t: Target) -> tuple[Any, Any]:
    """(torch model with the target's LoRA merged in, tokenizer), in eval mode."""
    from peft import PeftModel

    from convsim.core.bases.torch_copy import load_for_training

    model, tokenizer = load_for_training(t.base, ws.locations)
    if t.peft is not None and (t.peft / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(model, str(t.peft)).merge_and_unload()
    return model.eval(), tokenizer


def build_vector(
    ws: Workspace,
    model_id: str,
    spec: Spec,
    *,
    on_event: Callable[[BuildEvent], None] | None = None,
    cancel: threading.Event | None = None,
    threads: int | None = None,
) -> library.Vector:
    """Build, calibrate and save the vector `spec` for persona `model_id` (or `BASE_ID`)."""
    import torch

    from convsim.core.inference.llama import LlamaModel

    axis = resolve(spec)  # first: a mistyped --axis is an unknown axis, not a bad name
    library.check_name(spec.name)
    if spec.method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {spec.method!r}")
    method = chosen_method(spec.method, axis)
    t = target(ws, model_id)
    emit = on_event or (lambda e: None)

    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"building {spec.name!r} was stopped; nothing was saved")

    started = time.perf_counter()
    early, held = split_contexts(t)
    train_pairs = _pairs(axis, early, spec.n_pairs)
    held_pairs = _pairs(axis, held, pairs.MIN_PAIRS)[: max(HELD_OUT, len(held))]
    emit(BuildEvent("pairs", 1, 1, f"{len(train_pairs)} pairs, {len(held_pairs)} held out"
                    f"{method_note(spec.method, method, axis)}"))  # fmt: skip
    if threads:
        torch.set_num_threads(threads)
    fit_pairs = train_pairs
    if method == "own":

        def sampling(done: int, n: int) -> None:
            check()
            emit(BuildEvent("sampling", done, n))

        fit_pairs = _own_pairs(t, axis, early, len(train_pairs), threads, sampling)
    model, tokenizer = load_persona(ws, t)
    total = 2 * (len(train_pairs) + len(held_pairs))

    def step(offset: int) -> Callable[[int, int], None]:
        def report(done: int, _n: int) -> None:
            check()
            emit(BuildEvent("directions", offset + done, total))

        return report

    train_means = directions.pair_differences(model, tokenizer, train_pairs, step(0))
    held_means = directions.pair_differences(
        model, tokenizer, held_pairs, step(2 * len(train_pairs))
    )
    found = directions.directions(train_means, held_means, "pca" if method == "pca" else "mean")
    vectors = found.vectors
    if method in ("fit", "own"):

        def fitting(done: int, n: int) -> None:
            check()
            emit(BuildEvent("fitting", done, n))

        vectors = fit.fit(
            model, tokenizer, fit_pairs, early, vectors, found.band, fitting, length=axis.length
        )
    del model
    llm = LlamaModel(t.base, _adapters(t), n_ctx=1024, threads=threads)
    try:
        contexts, sampled = calibration_contexts(early, held)

        def calibrating(done: int, n: int) -> None:
            check()
            emit(BuildEvent("calibration", done, n))

        cal = calibrate.calibrate(
            llm, contexts, vectors[1:], found.band, generate=sampled,
            progress=calibrating,
        )  # fmt: skip
    finally:
        llm.close()
    check()
    meta = {
        "name": spec.name,
        "positive": axis.positive,
        "negative": axis.negative,
        "method": method,
        "band": list(found.band),
        "range_positive": cal.positive,
        "range_negative": cal.negative,
        "baseline_perplexity": cal.baseline,
        "sweep": [p.to_json() for p in cal.points],
        "separation": [round(float(x), 4) for x in found.separation],
        "agreement": [round(float(x), 4) for x in found.agreement],
        "pairs": len(train_pairs),
        **({"own_pairs": len(fit_pairs)} if method == "own" else {}),
        "held_out_pairs": len(held_pairs),
        "model_id": model_id,
        "base_sha256": t.base_sha256,
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = library.vector_path(t.folder, spec.name)
    fits = library.model_fits(t.base)
    library.save(path, ControlVector(fits[0], vectors, meta))
    emit(BuildEvent("saved", 1, 1, str(path)))
    return library.load(path, fits)
