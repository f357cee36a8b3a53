"""Training settings compared on one chat: each trained with `convsim train`, then measured.

    python benchmarks/recipe.py CHAT_ID --as NAME [--setting "FLAGS" ...] [--seeds 3]

(a flag and its value separated by a space: "--lr 4e-4", not "--lr=4e-4")

Each `--setting` is a string of `convsim train` flags (e.g. "", the defaults, "--lr 4e-4" or
"--rank 32 --alpha 64"); none given: the defaults alone. Every setting trains a new persona of
NAME on the chat (in the data folder of `CONVSIM_HOME`), and then, on the suite's held-out
moments (`heldout.material`, up to 80):
- perplexity of the real replies, and Hits@1 of the real reply against 19 messages of other
  people and 19 of the same person, each ranked against the persona's own prior
  (`ranking.rank` without a reference: comparable between settings, not with `convsim eval`);
- the style KS of `--seeds` replies per moment against the real replies (as
  `sampling_style.py`), and on how many features the persona is closer than the base model
  prompted with the person's messages (measured once, in the same run, at the first setting's
  moments; a setting whose dataset has other moments, e.g. another `--context`, shows "other").
Each row is printed as soon as it is measured, with the training time. Training on the CPU is
deterministic for the same data and seed, so a setting that changes nothing the run sees
(e.g. a `--context` longer than every session of the chat) gives the same figures again.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from sampling_style import measure as style_measure

from convsim.core.evaluation import heldout, imitation, ranking, suite
from convsim.core.inference.engine import Engine
from convsim.core.workspace import Workspace


def train(chat_id: int, person: str, flags: str) -> tuple[str, float]:
    """A new persona trained by `convsim train` with `flags`: its id and the seconds it took."""
    command = [sys.executable, "-m", "convsim.tui.cli", "train", str(chat_id), "--as", person]
    started = time.perf_counter()
    done = subprocess.run([*command, *shlex.split(flags), "--json"], capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"convsim train {flags} failed: {done.stderr[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result.get("status", "ready") != "ready":
        sys.exit(f"convsim train {flags} ended {result.get('status')}, not ready")
    return result["model_id"], time.perf_counter() - started


def material(model_id: str) -> tuple[heldout.Material, Path, Path]:
    """The held-out moments of a persona's dataset, its base model and its adapter."""
    with Workspace.open() as ws:
        return heldout.of_model(ws, model_id, limit=suite.FULL.items, seed=0)


def moments(m: heldout.Material) -> list[tuple[str, str]]:
    """What the replies are generated at: settings are compared only where these are equal."""
    return [(item.context, item.reply) for item in m.items]


def measure(m: heldout.Material, base: Path, adapter: Path, seeds: int) -> dict[str, Any]:
    """The persona's perplexity and Hits@1 (own prior) at the moments, and its style KS."""
    engine = Engine(base, [(adapter, 1.0)], n_ctx=2048)
    try:
        ranked = ranking.rank(engine.model, "", m.items, m.tag)
        ks = style_measure(engine, m, {}, seeds)[0]
    finally:
        engine.close()
    tokens = sum(r.tokens for r in ranked)
    n = len(ranked)
    return {
        "perplexity": math.exp(sum(r.nll for r in ranked) / tokens) if tokens else math.nan,
        "hits_others": sum(r.rank_others == 1 for r in ranked) / n if n else math.nan,
        "hits_same": sum(r.rank_same_person == 1 for r in ranked) / n if n else math.nan,
        "ks": ks,
    }


def prompted_ks(m: heldout.Material, base: Path, seeds: int) -> dict[str, float]:
    """Style KS of the base model prompted with the person's messages (the suite's baseline)."""
    engine = Engine(base, n_ctx=2048)
    try:
        count = lambda text: len(engine.model.tokenize(text, bos=False))  # noqa: E731
        engine.set_head(suite.persona_head(m.train_texts, m.tag, count, 768))
        return style_measure(engine, m, {}, seeds)[0]
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chat_id", type=int)
    parser.add_argument("--as", dest="person", required=True)
    parser.add_argument("--setting", action="append", default=[], help="convsim train flags")
    parser.add_argument("--seeds", type=int, default=3, help="replies per held-out moment")
    args = parser.parse_args()
    names = imitation.STYLE_FEATURES
    prompted: dict[str, float] = {}
    first: list[tuple[str, str]] = []
    header = (f"{'setting':<28}{'ppl':>7}{'hits@1 oth':>11}{'same':>6}{'KS mean':>9}"
              f"{'closer':>8}{'train s':>9}")  # fmt: skip
    for flags in args.setting or [""]:
        model_id, seconds = train(args.chat_id, args.person, flags)
        m, base, adapter = material(model_id)
        f = measure(m, base, adapter, args.seeds)
        if not prompted:  # the baseline, at the first setting's moments
            prompted, first = prompted_ks(m, base, args.seeds), moments(m)
            mean = sum(prompted.values()) / len(prompted)
            print(f"{header}\n{'prompted base':<28}{'':24}{mean:9.3f}")
        ks = f["ks"]
        same = moments(m) == first
        closer = f"{sum(ks[x] < prompted[x] for x in names)}/{len(names)}" if same else "other"
        label, mean = f"{flags or 'defaults'} ({model_id})", sum(ks.values()) / len(ks)
        print(f"{label:<28}{f['perplexity']:7.2f}{f['hits_others']:11.2f}{f['hits_same']:6.2f}"
              f"{mean:9.3f}{closer:>8}{seconds:9.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
