"""Style match under different sampling settings: the persona against the prompted base.

    python benchmarks/sampling_style.py MODEL_ID [--seeds 3] [--setting JSON ...]

The evaluation suite samples every variant with the product's defaults (`Sampling()`). This
generates the replies again at the suite's held-out moments (`heldout.material`, up to 80) under
each `--setting` (fields of `Sampling` as JSON, e.g. '{"temperature": 1.0}'; the defaults when
none is given), `--seeds` replies per moment, for the persona ("tuned") and for the base model
prompted with the person's own messages ("in_context", the suite's baseline, measured in the
same run), and prints the KS statistic of each style feature against the real held-out replies,
their mean, and on how many features the persona is closer than the prompted base (the
issue's goal: 80%). Only replies are generated: ranking, detector and authorship are the suite's.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from convsim.core.evaluation import heldout, imitation, suite
from convsim.core.inference.engine import Engine, Sampling
from convsim.core.training import adapter_gguf
from convsim.core.workspace import Workspace


def replies(engine: Engine, m: heldout.Material, s: Sampling, seeds: int) -> list[list[str]]:
    """`seeds` generated turns per held-out moment: the suite's own generation, once per seed
    (the first with the suite's seeds)."""
    turns: list[list[str]] = []
    for k in range(seeds):
        turns += suite._generate(engine, m, replace(s, seed=1000 * k), None, lambda *_: None)[0]
    return turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_id")
    parser.add_argument("--seeds", type=int, default=3, help="replies per held-out moment")
    parser.add_argument("--setting", action="append", default=[], help="Sampling fields, JSON")
    args = parser.parse_args()
    settings: list[dict[str, Any]] = [json.loads(x) for x in args.setting] or [{}]

    with Workspace.open() as ws:
        record = ws.store.model(args.model_id)
        if record.dataset_id is None:
            raise SystemExit(f"model {args.model_id} has no dataset")
        train, validation, _ = ws.dataset_files(record.dataset_id)
        adapter = adapter_gguf(ws, args.model_id)
    m = heldout.material(train, validation, limit=suite.FULL.items, seed=0)
    print(f"{args.model_id}: {len(m.items)} held-out moments, {len(m.heldout_replies)} real "
          f"messages, {args.seeds} replies per moment")  # fmt: skip

    ks: dict[tuple[str, int], dict[str, float]] = {}
    base = Engine(Path(record.base), n_ctx=2048)
    try:
        count = lambda text: len(base.model.tokenize(text, bos=False))  # noqa: E731
        base.set_head(suite.persona_head(m.train_texts, m.tag, count, 768))
        for n, setting in enumerate(settings):
            ks["in_context", n] = measure(base, m, setting, args.seeds)
    finally:
        base.close()
    tuned = Engine(Path(record.base), [(adapter, 1.0)], n_ctx=2048)
    try:
        for n, setting in enumerate(settings):
            ks["tuned", n] = measure(tuned, m, setting, args.seeds)
    finally:
        tuned.close()

    names = imitation.STYLE_FEATURES
    print(f"\n{'KS to the real replies':<28}" + "".join(f"{x[:10]:>11}" for x in names) + "   mean")
    for n, setting in enumerate(settings):
        print(f"sampling {json.dumps(setting) if setting else 'defaults'}")
        for variant in ("in_context", "tuned"):
            row = ks[variant, n]
            mean = sum(row.values()) / len(row)
            print(f"  {variant:<26}" + "".join(f"{row[x]:>11.3f}" for x in names) + f"{mean:7.3f}")
        closer = sum(ks["tuned", n][x] < ks["in_context", n][x] for x in names)
        print(f"  tuned closer than in_context on {closer} of {len(names)} (goal: 80%)")


def measure(
    engine: Engine, m: heldout.Material, setting: dict[str, Any], seeds: int
) -> dict[str, float]:
    started = time.perf_counter()
    turns = replies(engine, m, replace(Sampling(), **setting), seeds)
    style = imitation.style_match(turns, m.heldout_replies, m.real_turn_sizes)
    print(f"  {setting or 'defaults'}: {len(turns)} replies, {time.perf_counter() - started:.0f} s",
          flush=True)  # fmt: skip
    return {name: v["ks"] for name, v in style.items()}


if __name__ == "__main__":
    main()
