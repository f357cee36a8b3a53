"""Do the sliders do what they say, and stay coherent? Steering evidence on a trained persona.

    pip install ".[bench]"      # the VADER sentiment lexicon
    python benchmarks/steering.py [--model MODEL_ID] [--contexts 50] [--seeds 1]
                                  [--axes happy,warm,...] [--compare happy] [--beyond 1]
                                  [--plot benchmarks/steering.svg] [--json]

On a persona trained on the sample chat (`convsim quickstart` makes one: sam-1), for each
built-in axis: the vector is built if missing (`convsim steer build`, timed), then at 9 slider
positions (-1..1) `--seeds` replies are sampled after each of `--contexts` held-out real contexts
(the latest sessions, not used for the pairs nor the calibration), steered as the app steers,
with the same seeds at every position. Each reply is scored with a metric that is not the model
judging itself:
- happy, warm: VADER compound sentiment (-1..1);
- formal: capitalised start and end punctuation, minus slang, emoji and apostrophe-less
  contractions per word;
- brief: -(words in the reply) (so that +1 = brief scores higher);
- excited: exclamation marks and all-caps words per word.
Reported per axis: Spearman correlation of slider and mean metric; the effect at +-1
(sentiment shift; verbose/brief length ratio); perplexity rise of the real held-out replies and
degenerate replies at every position (baseline: the unsteered persona, same run); the share of
contexts moved the wrong way between -1 and +1 (a context's metric: its mean over the
seeds). Then three sliders at +-1 together. Then, for
`--compare` axes, vectors made as llama.cpp's cvector-generator makes them from the same pairs
(PCA over the differences at all positions, unit length per block, every block; its sign is
arbitrary, here turned to agree with the pairs, in its favour), calibrated the same way: the
effect each method gives at the strength where coherence breaks, and their ratio.
`--beyond K` stretches the slider positions to K times the calibrated range: what lies past it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from steering_torch import cvgen_vector, parity

POSITIONS = [round(x, 2) for x in np.linspace(-1, 1, 9)]
_SLANG = (
    "lol lmao lmaooo omg idk tbh ngl rn u ur ya yeah yep nah gonna wanna k kk ok haha hahaha "
    "omw ttyl btw fr thx ty pls plz cuz cos tmrw"
)
_CONTRACTED = "im dont cant wont isnt didnt doesnt youre theyre ive id ill thats whats"
SLANG, CONTRACTED = frozenset(_SLANG.split()), frozenset(_CONTRACTED.split())
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")


def _vader() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        sys.exit('benchmarks/steering.py needs VADER: pip install ".[bench]"')
    return SentimentIntensityAnalyzer()


def metric(axis: str, text: str, vader: Any) -> float:
    words = re.findall(r"[\w']+", text)
    n = max(1, len(words))
    if axis in ("happy", "warm"):
        return float(vader.polarity_scores(text)["compound"])
    if axis == "brief":
        return -float(len(words))
    if axis == "excited":
        caps = sum(1 for w in words if len(w) > 1 and w.isupper())
        return (text.count("!") + caps) / n
    # formal
    t = text.strip()
    form = (t[:1].isupper()) + (t[-1:] in ".?!")
    low = [w.lower() for w in words]
    casual = sum(w in SLANG for w in low) + sum(w in CONTRACTED for w in low)
    casual += len(EMOJI.findall(text)) + sum(w == "i" for w in words)
    return form / 2 - casual / n


def ranks(values: list[float]) -> np.ndarray:
    """Ranks from 0, ties sharing their average rank."""
    v = np.asarray(values, dtype=float)
    out = np.empty(len(v))
    for value in np.unique(v):
        where = np.flatnonzero(v == value)
        out[where] = np.mean(np.argsort(np.argsort(v, kind="stable"))[where])
    return out


def spearman(x: list[float], y: list[float]) -> float:
    rx, ry = ranks(x), ranks(y)
    if ry.std() == 0 or rx.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def held_out(ws: Any, record: Any, n: int) -> list[Any]:
    """Held-out contexts the build used neither for pairs nor for calibration."""
    from convsim.core.steering import build

    _, held = build.split_contexts(build.target(ws, record.id))
    rest = held[build.CALIBRATION_CONTEXTS :]
    if len(rest) >= n:
        return rest[:n]
    print(f"only {len(rest)} held-out contexts the calibration did not use: {n} taken, "
          "some of them calibration's", file=sys.stderr)  # fmt: skip
    return held[-n:]


def sweep_seeds(
    llm: Any, contexts: list[Any], rows: Any, band: Any, strengths: list[float], seeds: int
) -> list[Any]:
    """calibrate.sweep once per seed, one Point per strength (in order; repeats shared): the
    replies of every seed, seed by seed (so reply j answers context j mod len(contexts)), their
    degenerate share, the (seed-independent) perplexity, scored by the first sweep only."""
    from convsim.core.steering import calibrate

    unique = sorted(set(strengths))
    sweeps = [
        calibrate.sweep(
            llm, contexts, rows, band, unique, seed=1000 * k, reply_tokens=64, score=k == 0
        )
        for k in range(seeds)
    ]
    by = {}
    for same in zip(*sweeps, strict=True):  # one strength, seed by seed
        replies = tuple(t for p in same for t in p.replies)
        degenerate = float(np.mean([p.degenerate for p in same]))
        by[same[0].strength] = calibrate.Point(
            same[0].strength, same[0].perplexity, degenerate, replies
        )
    return [by[s] for s in strengths]


def axis_report(
    llm: Any, v: Any, contexts: list[Any], vader: Any, seeds: int, beyond: float = 1.0
) -> dict[str, Any]:
    strengths = [beyond * v.calibration.strength(x) for x in POSITIONS]
    points = sweep_seeds(llm, contexts, v.rows[1:], v.band, strengths, seeds)
    scores = np.array([[metric(v.name, t, vader) for t in p.replies] for p in points])
    means = scores.mean(axis=1)
    base = points[POSITIONS.index(0.0)].perplexity
    per_context = scores.reshape(len(points), seeds, len(contexts)).mean(axis=1)
    lo, hi = per_context[0], per_context[-1]
    report: dict[str, Any] = {
        "axis": v.name,
        "range": [-beyond * v.calibration.negative, beyond * v.calibration.positive],
        "band": list(v.band),
        "metric_by_position": dict(zip(map(str, POSITIONS), map(float, means), strict=True)),
        "spearman": spearman(POSITIONS, list(means)),
        "effect": float(means[-1] - means[0]),
        "ppl_baseline": base,
        "ppl_rise_max": max(p.perplexity / base - 1 for p in points),
        "degenerate_max": max(p.degenerate for p in points),
        "wrong_way": float(np.mean(hi < lo)),
        "examples": {str(x): p.replies[:3] for x, p in zip(POSITIONS, points, strict=True)},
    }
    if v.name == "brief":
        words = -scores
        report["length_ratio"] = float(words[0].mean() / max(words[-1].mean(), 1e-9))
    return report


def combined(llm: Any, found: dict[str, Any], contexts: list[Any], seeds: int) -> dict[str, Any]:
    """happy, warm and brief together at +1 and at -1: coherence only."""
    from convsim.core.steering import mix

    names = [n for n in ("happy", "warm", "brief") if n in found]
    out: dict[str, Any] = {"axes": names}
    base = None
    for sign in (1, -1):
        mixed = mix({n: float(sign) for n in names}, found)
        assert mixed is not None
        rows, first, last = mixed
        pts = sweep_seeds(llm, contexts, rows, (first, last), [0.0, 1.0], seeds)
        base = base or pts[0].perplexity
        out[f"{'+' if sign > 0 else '-'}1"] = {
            "ppl_rise": pts[1].perplexity / base - 1,
            "degenerate": pts[1].degenerate,
        }
    return out


def compare(
    ws: Any, record: Any, llm: Any, v: Any, contexts: list[Any], vader: Any, seeds: int
) -> Any:
    from convsim.core.steering import build, calibrate

    rows = cvgen_vector(ws, record, v.name)
    chosen, sampled = build.calibration_contexts(*build.split_contexts(build.target(ws, record.id)))
    grid = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    band = (1, len(rows) - 1)
    cal = calibrate.calibrate(llm, chosen, rows[1:], band, grid=grid, generate=sampled)

    def effect(r: np.ndarray, b: tuple[int, int], neg: float, pos: float) -> float:
        pts = sweep_seeds(llm, contexts, r, b, sorted({-neg, pos}), seeds)
        means = [np.mean([metric(v.name, t, vader) for t in p.replies]) for p in pts]
        return float(means[-1] - means[0]) if len(pts) == 2 else 0.0

    ours = effect(v.rows[1:], v.band, v.calibration.negative, v.calibration.positive)
    theirs = effect(rows[1:], band, cal.negative, cal.positive)
    return {
        "axis": v.name,
        "convsim_range": [-v.calibration.negative, v.calibration.positive],
        "cvgen_range": [-cal.negative, cal.positive],
        "convsim_effect": ours,
        "cvgen_effect": theirs,
        "ratio": ours / theirs if theirs > 0 else float("inf"),
    }


def slider_latency(ws: Any, record: Any, v: Any) -> dict[str, float]:
    """Time to the first token of a reply at the end of a ~1,900-token conversation: with the
    sliders unchanged, right after a slider change (only the reply's tag is evaluated again),
    and re-reading the whole prompt (what a cache reset on every change would cost)."""
    from convsim.core import training
    from convsim.core.inference.engine import Engine, Sampling
    from convsim.core.steering import mix

    engine = Engine(Path(record.base), [(training.adapter_gguf(ws, record.id), 1.0)])
    engine.set_tags(training.speaker_tags(ws, record))
    turns = [(m.sender or "?", m.text) for m in ws.store.messages(record.chat_id) if m.text]
    while len(engine.tokens("".join(f"[{a}] {b}\n" for a, b in turns))) > 1900:
        turns = turns[len(turns) // 10 :]
    one = Sampling(seed=0, max_tokens=1)

    def first_token_ms(reset: bool = False) -> float:
        if reset:
            engine.model.reset()
        return 1000 * float(engine.simulate(turns, record.person, one).result().first_token_s)

    out = {"prompt_tokens": float(len(engine.tokens("".join(f"[{a}] {b}\n" for a, b in turns))))}
    first_token_ms()  # fills the cache
    out["unchanged_ms"] = first_token_ms()
    for value in (0.5, 1.0):
        engine.set_steering(*mix({v.name: value}, {v.name: v}))  # type: ignore[misc]
        out[f"after_change_to_{value}_ms"] = first_token_ms()
    out["whole_prompt_ms"] = first_token_ms(reset=True)
    engine.close()
    return out


def plot(reports: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(3.2 * len(reports), 3), squeeze=False)
    for ax, r in zip(axes[0], reports, strict=True):
        ys = list(r["metric_by_position"].values())
        ax.plot(POSITIONS, ys, marker="o")
        ax.set_title(f"{r['axis']}  (ρ={r['spearman']:.2f})")
        ax.set_xlabel("slider")
        ax.axvline(0, color="grey", lw=0.5)
    axes[0][0].set_ylabel("metric (see benchmarks/steering.py)")
    fig.tight_layout()
    fig.savefig(path)


def open_persona(model_id: str | None) -> tuple[Any, Any, Any]:
    """(the data folder's workspace, the persona `model_id` or the newest ready one, it loaded
    on llama.cpp with its LoRA); exits with a hint when there is none."""
    from convsim.core import training
    from convsim.core.inference.llama import LlamaModel
    from convsim.core.workspace import Workspace

    ws = Workspace.open()
    ready = [m for m in ws.store.models() if m.status == "ready"]
    if not ready:
        sys.exit("no trained persona: run `convsim quickstart` first")
    record = ws.store.model(model_id) if model_id else ready[-1]
    llm = LlamaModel(Path(record.base), [(training.adapter_gguf(ws, record.id), 1.0)], n_ctx=1024)
    return ws, record, llm


def main() -> int:
    from convsim.core import steering

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="persona id (default: the newest ready one)")
    ap.add_argument("--contexts", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=1, help="replies per context and position")
    ap.add_argument("--axes", default="happy,warm,formal,brief,excited")
    ap.add_argument("--compare", default="happy", help="axes to compare with cvector-generator")
    ap.add_argument("--latency", action="store_true", help="time a reply after a change")
    ap.add_argument("--parity", type=int, default=8, help="contexts for the torch parity check")
    ap.add_argument("--plot", type=Path, default=Path(__file__).with_name("steering.svg"))
    ap.add_argument("--beyond", type=float, default=1.0, help="times the calibrated range")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    if args.beyond <= 0:
        ap.error("--beyond must be above 0")
    vader = _vader()
    ws, record, llm = open_persona(args.model)
    contexts = held_out(ws, record, args.contexts)
    print(f"persona {record.id}, {len(contexts)} held-out contexts, {args.seeds} seeds",
          file=sys.stderr)  # fmt: skip
    found = {v.name: v for v in steering.vectors(Path(record.path))}
    builds = {}
    reports = []
    for name in filter(None, args.axes.split(",")):
        if name not in found:
            t = time.perf_counter()
            found[name] = steering.build_vector(ws, record.id, steering.Spec(name, axis=name))
            builds[name] = time.perf_counter() - t
        reports.append(axis_report(llm, found[name], contexts, vader, args.seeds, args.beyond))
        r = reports[-1]
        print(
            f"{name:<8} range {r['range'][0]:+.1f}..{r['range'][1]:+.1f} blocks {r['band']} "
            f"spearman {r['spearman']:+.2f} effect {r['effect']:+.3f}"
            + (f" length ratio {r['length_ratio']:.2f}" if "length_ratio" in r else "")
            + f" | ppl {r['ppl_baseline']:.1f} (unsteered) max rise {r['ppl_rise_max']:+.1%}"
            f" degenerate max {r['degenerate_max']:.0%} wrong way {r['wrong_way']:.0%}",
            flush=True,
        )
    together = combined(llm, found, contexts, args.seeds) if len(reports) > 1 else {}
    print(f"three sliders together: {json.dumps(together)}", flush=True)
    comparisons = []
    for name in filter(None, args.compare.split(",")):
        comparisons.append(compare(ws, record, llm, found[name], contexts, vader, args.seeds))
        c = comparisons[-1]
        print(
            f"{name}: convsim effect {c['convsim_effect']:+.3f} at {c['convsim_range']}, "
            f"cvector-generator recipe {c['cvgen_effect']:+.3f} at {c['cvgen_range']}: "
            f"ratio {c['ratio']:.2f}",
            flush=True,
        )
    checked = {}
    if args.parity and found:
        first = found.get("happy") or next(iter(found.values()))
        checked = parity(ws, record, llm, first, contexts[: args.parity])
        print(f"parity torch vs llama.cpp ({first.name} at +1), lowest correlation over "
              f"{checked['contexts']} contexts: steered {checked['steered']:.4f}, "
              f"unsteered {checked['unsteered']:.4f}", flush=True)  # fmt: skip
    latency = {}
    if args.latency and found:
        first = found.get("happy") or next(iter(found.values()))
        latency = slider_latency(ws, record, first)
        print(f"first token after a slider change: {json.dumps(latency)}", flush=True)
    if reports:
        plot(reports, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)
    if args.json:
        summary = {"model": record.id, "contexts": len(contexts), "seeds": args.seeds,
                   "build_seconds": builds}  # fmt: skip
        extra = {"compare": comparisons, "parity": checked, "latency": latency}
        print(json.dumps({**summary, "axes": reports, "together": together, **extra}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
