"""Style match under different sampling settings: the persona against the prompted base.

    python benchmarks/sampling_style.py MODEL_ID [--seeds 3] [--setting JSON ...] [--on training]

The evaluation suite samples every variant with the product's defaults (`Sampling()`). This
generates the replies again at the suite's held-out moments (`heldout.material`, up to 80) under
each `--setting` (fields of `Sampling` as JSON, e.g. '{"temperature": 1.0}'; the defaults when
none is given), `--seeds` replies per moment, for the persona ("tuned") and for the base model
prompted with the person's own messages ("in_context", the suite's baseline, measured in the
same run), and prints the KS statistic of each style feature against the real held-out replies,
their mean, on how many features the persona is closer than the prompted base (the issue's
goal: 80%) and, per feature, the difference of the two KS with its paired 95% interval
(`imitation.style_versus`: below 0 is closer; an interval across 0, undecided by this many
replies and real messages), the real-or-generated detector's accuracy with its 95% interval
(the suite's `imitation.detector_accuracy`; goal for the persona: at most 0.65), and the mean
of each feature beside the real one. Only replies are generated: ranking and authorship are
the suite's.

`--on training` measures on the latest training sessions instead (as many as hold 80 moments,
treated as held out; the prompt shows the person's messages of the earlier ones): whether a
sampling setting could be chosen per persona on what it was trained on, never on its held-out
sessions.

What a higher temperature may cost is coherence, so each row also has the plain base model's
perplexity of the replies after their moment (no head: a reader who knows nothing of the
person; over the first `ranking.MAX_REPLY_TOKENS` tokens of each reply's first message, as the
real held-out replies are one message each, their figure printed beside it) and how many
replies are degenerate (`steering.calibrate.degenerate`: repetition collapse, stray special
tokens; a reply with no message counts too).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from convsim.core.evaluation import heldout, imitation, ranking, suite
from convsim.core.inference.best_of import continuation
from convsim.core.inference.engine import Engine, Sampling
from convsim.core.steering.calibrate import degenerate
from convsim.core.workspace import Workspace

# Features whose means are printed beside the KS table: all of them, so a KS shows which way.
SHOWN_MEANS = imitation.STYLE_FEATURES


def replies(engine: Engine, m: heldout.Material, s: Sampling, seeds: int) -> suite.Replies:
    """`seeds` generated turns per held-out moment: the suite's own generation."""
    return suite.generate(engine, m, replace(s, seed=0), per_moment=seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_id")
    parser.add_argument("--seeds", type=int, default=3, help="replies per moment")
    parser.add_argument("--setting", action="append", default=[], help="Sampling fields, JSON")
    parser.add_argument(
        "--on", choices=("heldout", "training"), default="heldout",
        help="the moments: held-out sessions, or the latest training sessions",
    )  # fmt: skip
    args = parser.parse_args()
    settings: list[dict[str, Any]] = [json.loads(x) for x in args.setting] or [{}]

    with Workspace.open() as ws:
        try:
            m, base_path, adapter = heldout.of_model(
                ws, args.model_id, limit=suite.FULL.items, seed=0
            )
            if args.on == "training":
                m = latest_trained(ws, args.model_id, suite.FULL.items)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
    print(f"{args.model_id}: {len(m.items)} {args.on} moments, {len(m.heldout_replies)} real "
          f"messages, {args.seeds} replies per moment")  # fmt: skip

    ks: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    told: dict[tuple[str, int], tuple[float, tuple[float, float], int]] = {}  # `measure`
    turns: dict[tuple[str, int], suite.Replies] = {}
    base = Engine(base_path, n_ctx=2048)
    try:
        count = lambda text: len(base.model.tokenize(text, bos=False))  # noqa: E731
        base.set_head(suite.persona_head(m.train_texts, m.tag, count, 768))
        for n, setting in enumerate(settings):
            key = ("in_context", n)
            ks[key], told[key], turns[key] = measure(base, m, setting, args.seeds)
    finally:
        base.close()
    tuned = Engine(base_path, [(adapter, 1.0)], n_ctx=2048)
    try:
        for n, setting in enumerate(settings):
            key = ("tuned", n)
            ks[key], told[key], turns[key] = measure(tuned, m, setting, args.seeds)
    finally:
        tuned.close()
    reader = Engine(base_path, n_ctx=2048)
    try:
        sense = coherence(reader, m, turns)
    finally:
        reader.close()

    names = imitation.STYLE_FEATURES
    print(f"\n{'KS to the real replies':<28}" + "".join(f"{x[:12]:>13}" for x in names)
          + "   mean  base ppl  degenerate  detector (95% interval)")  # fmt: skip
    for n, setting in enumerate(settings):
        print(f"sampling {json.dumps(setting) if setting else 'defaults'}")
        for variant in ("in_context", "tuned"):
            row = {x: ks[variant, n][x]["ks"] for x in names}
            mean = sum(row.values()) / len(row)
            ppl, broken, looked = sense[variant, n]
            right, (low, high), _ = told[variant, n]
            print(f"  {variant:<26}" + "".join(f"{row[x]:>13.3f}" for x in names)
                  + f"{mean:7.3f}{ppl:10.1f}{f'{broken} of {looked}':>12}"
                  + f"  {right:.3f} ({low:.2f}-{high:.2f})")  # fmt: skip
        closer = sum(ks["tuned", n][x]["ks"] < ks["in_context", n][x]["ks"] for x in names)
        print(f"  tuned closer than in_context on {closer} of {len(names)} (goal: 80%)")
        t, ic = turns["tuned", n], turns["in_context", n]
        versus = imitation.style_versus(t.turns, t.moments, ic.turns, ic.moments,
                                        m.heldout_replies, m.real_turn_sizes)  # fmt: skip
        print(f"  {'tuned KS - in_context KS':<26}"
              + "".join(f"{versus[x][0]:>+13.3f}" for x in names))  # fmt: skip
        print(f"  {'  paired 95% interval':<26}"
              + "".join(f"{f'{lo:+.2f}..{hi:+.2f}':>13}" for x in names
                        for lo, hi in [versus[x][1]]))  # fmt: skip
        for variant in ("in_context", "tuned"):
            print(f"  {variant}: " + ", ".join(f"{x} {ks[variant, n][x]['generated_mean']:.3f}"
                                               for x in SHOWN_MEANS))  # fmt: skip
    real = ks["tuned", 0]
    print("the real replies: " + ", ".join(f"{x} {real[x]['real_mean']:.3f}" for x in SHOWN_MEANS)
          + f"; base ppl {sense['real', 0][0]:.1f}")  # fmt: skip


def latest_trained(ws: Workspace, model_id: str, moments: int) -> heldout.Material:
    """The fewest latest training sessions that hold at least `moments` replies with a context,
    as held-out material (the earlier training sessions as what was trained on); ValueError
    when that leaves no earlier session."""
    dataset_id = ws.store.model(model_id).dataset_id
    if dataset_id is None:
        raise ValueError(f"model {model_id} has no dataset")
    train, _, _ = ws.dataset_files(dataset_id)
    replies = Counter(e.session for e in train if e.context.strip())
    picked: set[int] = set()
    for session in sorted({e.session for e in train}, reverse=True):
        if sum(replies[s] for s in picked) >= moments:
            break
        picked.add(session)
    rest = [e for e in train if e.session not in picked]
    if not rest:
        raise ValueError(f"model {model_id}: fewer than {moments} trained-on moments to measure")
    return heldout.material(rest, [e for e in train if e.session in picked], limit=moments)


def measure(
    engine: Engine, m: heldout.Material, setting: dict[str, Any], seeds: int
) -> tuple[dict[str, dict[str, float]], tuple[float, tuple[float, float], int], suite.Replies]:
    """Style match, `imitation.detector_accuracy` and the generated replies."""
    started = time.perf_counter()
    said = replies(engine, m, replace(Sampling(), **setting), seeds)
    style = imitation.style_match(said.turns, m.heldout_replies, m.real_turn_sizes)
    told = imitation.detector_accuracy(m.heldout_replies, said.turns, said.moments)
    print(f"  {setting or 'defaults'}: {len(said.turns)} replies, "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return style, told, said


def coherence(
    reader: Engine, m: heldout.Material, turns: dict[tuple[str, int], suite.Replies]
) -> dict[tuple[str, int], tuple[float, int, int]]:
    """Per key: the reader's perplexity per token of the replies' first messages after their
    moment, the degenerate replies and the replies looked at; ("real", 0): the same for the
    real replies."""
    # per key: summed -log p, tokens scored, degenerate replies, replies looked at
    nll: dict[tuple[str, int], list[float]] = {k: [0.0] * 4 for k in [("real", 0), *turns]}
    model = reader.model
    scorer = ranking._Scorer(model)  # reads each moment into the cache once
    for i, item in enumerate(m.items):
        prefix = model.tokenize(item.context + f"[{m.tag}]")
        if len(prefix) + 2 * ranking.MAX_REPLY_TOKENS > model.n_ctx():
            continue
        for key in nll:
            said = [[item.reply]] if key[0] == "real" else turns[key].at(i)
            for turn in said:
                tally = nll[key]
                tally[3] += 1
                if not turn:
                    tally[2] += 1
                    continue
                first = model.tokenize(continuation(turn[:1], m.tag), bos=False)
                lps = scorer.logprobs(prefix, first[: ranking.MAX_REPLY_TOKENS])
                tally[0] -= sum(lps)
                tally[1] += len(lps)
                whole = model.tokenize(continuation(turn, m.tag), bos=False)
                tally[2] += degenerate(" ".join(turn), whole)
    return {k: (math.exp(t[0] / max(t[1], 1)), int(t[2]), int(t[3])) for k, t in nll.items()}


if __name__ == "__main__":
    main()
