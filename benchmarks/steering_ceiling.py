"""How far could any steering move each metric before the persona stops sounding like itself?

    pip install ".[bench]"      # the VADER sentiment lexicon
    python benchmarks/steering_ceiling.py [--model MODEL_ID] [--contexts 50] [--samples 32]
                                          [--axes happy,brief] [--rise 0.10]
                                          [--nudge-seeds 3] [--json]

A yardstick for the vectors that `benchmarks/steering.py` measures, on the same held-out moments
and with the same metrics. After each of `--contexts` held-out real contexts, `--samples`
replies of the unsteered persona are sampled on llama.cpp as steering.py samples them, and the
person's real reply is scored. Reweighting the persona's replies by exp(t * metric), an
exponential tilt, is of all changes to its reply distribution that move the metric's mean as
far, the smallest (in KL divergence); replies that score the same keep their odds. Under it:
- the mean metric after context k is sum_j m_kj e^(t m_kj) / sum_j e^(t m_kj), over its
  sampled replies j;
- the real reply's negative log-likelihood becomes nll_k - t * m(real_k) + log Z_k, with
  Z_k = mean_j e^(t m_kj), so the perplexity of the real replies can be computed exactly as
  steering.py computes it (pooled over the contexts' tokens).
For each axis, on each side, the tilt is found where that perplexity rise reaches `--rise`
(the calibration's limit by default) and the effect between the two sides is printed as
steering.py prints it (sentiment shift, verbose/brief length ratio), beside the unsteered
persona's mean in the same run. It is a yardstick, not a proof: a vector could in principle
keep the perplexity of the real replies lower for the same move (the tilt is the smallest
change to what the persona says, not to how it scores what the person said). `ess` is the
smallest effective number of samples behind one context's tilted mean; `by samples` gives the
effect at `--rise` from the first quarter, half and all of the samples. Few samples err both
ways: the tilt cannot move a context past its most extreme sample, and log Z estimated from
them runs low, which understates the rise. Where the figure still moves with the samples,
it is not settled.

For length there is a second yardstick that, unlike the tilt, a runtime could apply token by
token: a nudge to the ending alone, a bias of d added to the logits of every token that ends a
message (as the engine decides, and end-of-generation tokens), +d shortening the replies and -d
lengthening them. For each d in +-`NUDGES`, the real replies are scored and `--nudge-seeds`
replies sampled after each context under that bias, on llama.cpp as steering.py samples (the
same seeds: d = 0 is its unsteered position). Each side's end is where the perplexity rise
reaches `--rise`, interpolated between the two nudges around it, and the words there too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from steering import _vader, held_out, metric, open_persona

RISES = (0.025, 0.05, 0.075, 0.10, 0.15, 0.20)
NUDGES = (0.5, 1.0, 1.5, 2.0, 2.5)  # the biases tried on the ending tokens, each way


def sample(llm: Any, contexts: list[Any], samples: int) -> tuple[list[list[str]], Any]:
    """(per context, `samples` unsteered replies; the unsteered Point with each context's real
    reply scored), sampled as `calibrate.sweep` samples (the seeds steering.py gives seed k)."""
    from convsim.core.steering import calibrate

    rows = np.zeros((llm.n_layers() - 1, llm.n_embd()), dtype=np.float32)  # never applied
    replies: list[list[str]] = []
    scored = calibrate.sweep(llm, contexts, rows, (1, 1), [0.0], reply_tokens=64, generate=0)[0]
    for k, c in enumerate(contexts):
        replies.append([
            calibrate.sweep(llm, [c], rows, (1, 1), [0.0], seed=1000 * j + k,
                            reply_tokens=64, score=False)[0].replies[0]
            for j in range(samples)
        ])  # fmt: skip
        print(f"  sampled {k + 1}/{len(contexts)}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return replies, scored


class Tilt:
    """The tilted persona for one axis: metric means and perplexity rise at tilt t."""

    def __init__(self, m: np.ndarray, real: np.ndarray, nll: np.ndarray, tokens: np.ndarray):
        self.m, self.real, self.nll, self.tokens = m, real, nll, tokens

    def _weights(self, t: float) -> np.ndarray:
        a = t * self.m
        return np.exp(a - a.max(axis=1, keepdims=True))

    def mean(self, t: float) -> np.ndarray:
        """Per context: the metric's mean under the tilt."""
        w = self._weights(t)
        return (w * self.m).sum(axis=1) / w.sum(axis=1)

    def ess(self, t: float) -> float:
        w = self._weights(t)
        return float((w.sum(axis=1) ** 2 / (w**2).sum(axis=1)).min())

    def rise(self, t: float) -> float:
        a = t * self.m
        top = a.max(axis=1)
        log_z = top + np.log(np.exp(a - top[:, None]).mean(axis=1))
        nll = self.nll - t * self.real + log_z
        return math.exp((nll.sum() - self.nll.sum()) / self.tokens.sum()) - 1

    def at(self, rise: float, sign: int) -> float:
        """The tilt on side `sign` where the perplexity rise first reaches `rise` (the rise is
        convex in t: its second derivative is the metric's variance under the tilt)."""
        lo, hi = 0.0, 1e-3
        while self.rise(sign * hi) < rise:
            lo, hi = hi, 2 * hi
            if hi > 1e6:
                return sign * lo
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.rise(sign * mid) < rise else (lo, mid)
        return sign * lo


def report(axis: str, tilt: Tilt, rises: list[float]) -> dict[str, Any]:
    base = float(tilt.mean(0.0).mean())
    out: dict[str, Any] = {"axis": axis, "unsteered": base, "by_rise": []}
    for rise in rises:
        lo, hi = tilt.at(rise, -1), tilt.at(rise, 1)
        neg, pos = float(tilt.mean(lo).mean()), float(tilt.mean(hi).mean())
        row = {"rise": rise, "tilt": [lo, hi], "metric": [neg, pos], "effect": pos - neg,
               "ess": min(tilt.ess(lo), tilt.ess(hi))}  # fmt: skip
        if axis == "brief":
            row["length_ratio"] = neg / pos if pos < 0 else math.inf  # -words: verbose / brief
        out["by_rise"].append(row)
    return out


def ending_nudge(llm: Any, contexts: list[Any], seeds: int, rise: float) -> dict[str, Any]:
    """The perplexity rise and mean words a reply for each nudge d (see the docstring), and
    the words at the nudge where, on each side, the rise reaches `rise`."""
    from convsim.core.inference.engine import ends_message
    from convsim.core.steering import calibrate

    ends = np.array([llm.is_eog(t) or ends_message(llm.detokenize([t]))
                     for t in range(llm.n_vocab())], dtype=np.float32)  # fmt: skip
    rows = np.zeros((llm.n_layers() - 1, llm.n_embd()), dtype=np.float32)  # never applied
    table = []
    for d in sorted({0.0, *NUDGES, *(-x for x in NUDGES)}):
        points = [
            calibrate.sweep(llm, contexts, rows, (1, 1), [0.0], seed=1000 * k, reply_tokens=64,
                            score=k == 0, logit_bias=d * ends)[0]
            for k in range(seeds)
        ]  # fmt: skip
        words = [-metric("brief", t, None) for p in points for t in p.replies]  # as counted there
        table.append({"nudge": d, "perplexity": points[0].perplexity, "words": np.mean(words)})
        print(f"  nudge {d:+.1f}: perplexity {table[-1]['perplexity']:.2f}, "
              f"{table[-1]['words']:.2f} words", file=sys.stderr, flush=True)  # fmt: skip
    base = next(r["perplexity"] for r in table if r["nudge"] == 0.0)
    for r in table:
        r["rise"] = r["perplexity"] / base - 1
    verbose, brief = (_end(table, sign, rise) for sign in (-1, 1))
    return {"table": table, "verbose": verbose, "brief": brief,
            "length_ratio": verbose["words"] / brief["words"]}  # fmt: skip


def _end(table: list[dict[str, Any]], sign: int, rise: float) -> dict[str, Any]:
    """Going outwards on one side: where the rise reaches `rise`, between the last nudge
    inside and the first past it (straight lines in d); the outermost if none passes it."""
    side = sorted((r for r in table if r["nudge"] * sign >= 0), key=lambda r: abs(r["nudge"]))
    for inside, out in itertools.pairwise(side):
        if out["rise"] > rise:
            q = (rise - inside["rise"]) / (out["rise"] - inside["rise"])
            q = min(1.0, max(0.0, q))
            return {key: inside[key] + q * (out[key] - inside[key])
                    for key in ("nudge", "rise", "words")}  # fmt: skip
    return {key: side[-1][key] for key in ("nudge", "rise", "words")}


def _shares(samples: int) -> list[int]:
    return sorted({max(2, samples // 4), max(2, samples // 2), samples})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="persona id (default: the newest ready one)")
    ap.add_argument("--contexts", type=int, default=50)
    ap.add_argument("--samples", type=int, default=32, help="unsteered replies per context")
    ap.add_argument("--axes", default="happy,warm,formal,brief,excited")
    ap.add_argument("--rise", type=float, default=0.10, help="the perplexity rise allowed")
    ap.add_argument("--nudge-seeds", type=int, default=3,
                    help="replies a context for each ending nudge (0: no nudge)")  # fmt: skip
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.samples < 2:
        ap.error("--samples must be at least 2")
    vader = _vader()
    ws, record, llm = open_persona(args.model)
    contexts = held_out(ws, record, args.contexts)
    print(f"persona {record.id}, {len(contexts)} held-out contexts, {args.samples} unsteered "
          "replies each", file=sys.stderr)  # fmt: skip
    replies, scored = sample(llm, contexts, args.samples)
    nudge = {}
    if args.nudge_seeds > 0 and "brief" in args.axes.split(","):
        nudge = ending_nudge(llm, contexts, args.nudge_seeds, args.rise)
    llm.close()
    nll, tokens = np.asarray(scored.nll), np.asarray(scored.tokens)
    print(f"unsteered perplexity of the real replies {scored.perplexity:.1f}")
    rises = sorted({*RISES, args.rise})
    reports = []
    for axis in filter(None, args.axes.split(",")):
        m = np.array([[metric(axis, t, vader) for t in rs] for rs in replies])
        real = np.array([metric(axis, c.reply.rstrip("\n"), vader) for c in contexts])
        reports.append(report(axis, Tilt(m, real, nll, tokens), rises))
        r = reports[-1]
        row = next(x for x in r["by_rise"] if x["rise"] == args.rise)
        key = "length_ratio" if axis == "brief" else "effect"
        r["by_samples"] = {n: report(axis, Tilt(m[:, :n], real, nll, tokens), [args.rise])
                           ["by_rise"][0][key] for n in _shares(args.samples)}  # fmt: skip
        print(
            f"{axis:<8} unsteered {r['unsteered']:+.3f} | at a perplexity rise of "
            f"{args.rise:.1%}: {row['metric'][0]:+.3f} .. {row['metric'][1]:+.3f}, "
            f"effect {row['effect']:+.3f}"
            + (f" length ratio {row['length_ratio']:.2f}" if axis == "brief" else "")
            + f" (ess {row['ess']:.1f}) | by samples ({key}): "
            + " ".join(f"{n} {e:.3f}" for n, e in r["by_samples"].items())
            + " | effect by rise: "
            + " ".join(f"{x['rise']:.1%} {x['effect']:+.3f}" for x in r["by_rise"]),
            flush=True,
        )
    if nudge:
        v, b = nudge["verbose"], nudge["brief"]
        print(
            f"brief    a nudge to the ending alone ({args.nudge_seeds} replies a context), at a "
            f"perplexity rise of {args.rise:.1%}: {v['words']:.2f} words (nudge {v['nudge']:+.2f},"
            f" rise {v['rise']:+.1%}) against {b['words']:.2f} (nudge {b['nudge']:+.2f}, rise "
            f"{b['rise']:+.1%}), length ratio {nudge['length_ratio']:.2f} | by nudge: "
            + " ".join(f"{r['nudge']:+.1f} {r['words']:.2f}w {r['rise']:+.1%}"
                       for r in nudge["table"]),
            flush=True,
        )  # fmt: skip
    if args.json:
        print(json.dumps({"model": record.id, "contexts": len(contexts),
                          "samples": args.samples, "perplexity": scored.perplexity,
                          "axes": reports, "nudge": nudge}, default=float))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
