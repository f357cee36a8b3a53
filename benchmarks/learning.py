"""The persona keeps learning: one update from 200 scripted feedback items, with and without replay.

    python benchmarks/learning.py MODEL_ID [--items 200] [--probes 60] [--threads N]

The scripted preference: the user edits the persona's messages to say "you" for "u" and "I" for
"i" (Sam, in the sample chat, writes "u" and "i" in one message of eight each, "you" and "I"
almost never). The benchmark
1. draws the persona's replies at moments of its training chat until 200 of them say "u" or "i",
   and stores the edit of each (`convsim feedback import`, kind "better");
2. measures, before and after the update, the preferred form's rate (the share of replies with
   "you"/"u"/"I"/"i" that say only "you" and "I") in replies drawn at held-out moments
   (`--probes` of them, four seeds each), and the perplexity of the person's real replies in the
   old held-out sessions (every one of them, on llama.cpp);
3. runs `convsim learn MODEL_ID --json` (replay on, the default) and times the whole process;
4. rolls back, and runs the same update with `--no-replay`: the forgetting replay prevents.

Targets (issue 13): the rate rises by >= 30 points, old-session perplexity rises by <= 3%, and
the update takes <= 5 minutes on the 2-core CPU. The baseline is the version before the update,
measured in the same run. The persona ends on the replay update's version.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from convsim.core.data.packing import example_fields
from convsim.core.data.turns import parse, tag_of
from convsim.core.inference.engine import Engine, Sampling
from convsim.core.inference.llama import LlamaModel
from convsim.core.training.versions import current, use_version, versions
from convsim.core.workspace import Workspace

GOAL_RISE = 0.30
GOAL_PERPLEXITY = 0.03
GOAL_SECONDS = 300
SEEDS = 4  # replies drawn at each held-out moment


WORDS = re.compile(r"\b(u|you|i|I)\b")
EDITS = {"u": "you", "i": "I"}


def preferred(text: str) -> bool | None:
    """Does the reply say "you" and "I" rather than "u" and "i"? None when it says neither."""
    found = WORDS.findall(text)
    return all(w not in EDITS for w in found) if found else None


def edit(text: str) -> str:
    return WORDS.sub(lambda m: EDITS.get(m[0], m[0]), text)


def moments(examples: list[Any], n: int, seed: int) -> list[tuple[list[Any], str]]:
    """(transcript, tag) at `n` examples with a context, drawn with `seed`."""
    usable = [ex for ex in examples if example_fields(ex)[0].strip()]
    picked = random.Random(seed).sample(usable, min(n, len(usable)))
    return [(parse(example_fields(ex)[0])[-6:], tag_of(example_fields(ex)[1])[1:-1])
            for ex in picked]  # fmt: skip


def replies(engine: Engine, at: list[tuple[list[Any], str]], seeds: int) -> list[str]:
    out = []
    for n, (turns, tag) in enumerate(at):
        for seed in range(seeds):
            reply = engine.simulate(turns, tag, Sampling(seed=1000 * seed + n)).result()
            out.append(reply.text)
    return out


def rate(texts: list[str]) -> tuple[float, int]:
    judged = [p for p in map(preferred, texts) if p is not None]
    return sum(judged) / max(1, len(judged)), len(judged)


def perplexity(model: LlamaModel, validation: list[Any]) -> float:
    nll, tokens = 0.0, 0
    for ex in validation:
        context, target = example_fields(ex)
        tag = tag_of(target)
        prefix = model.tokenize(context + tag)
        cont = model.tokenize(target[len(tag) :], bos=False)
        logps = model.token_logprobs(prefix + cont, len(prefix))
        nll -= sum(logps)
        tokens += len(logps)
    return math.exp(nll / max(1, tokens))


def measure(base: Path, adapter: Path, probes: list[Any], validation: list[Any],
            threads: int | None) -> dict[str, float]:  # fmt: skip
    engine = Engine(base, [(adapter, 1.0)], threads=threads)
    try:
        share, n = rate(replies(engine, probes, SEEDS))
        ppl = perplexity(engine.model, validation)
    finally:
        engine.close()
    return {"rate": share, "judged": n, "perplexity": ppl}


def convsim(*args: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "convsim.tui.cli", *args], check=True,
                          stdout=subprocess.PIPE, text=True)  # fmt: skip
    return json.loads(done.stdout), time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_id")
    ap.add_argument("--items", type=int, default=200, help="feedback items")
    ap.add_argument("--probes", type=int, default=60, help="held-out moments to draw replies at")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    with Workspace.open() as ws:
        record = ws.store.model(args.model_id)
        assert record.dataset_id is not None
        train, validation, _ = ws.dataset_files(record.dataset_id)
        start = current(ws.store, args.model_id)
        base = Path(record.base)
        probes = moments(validation, args.probes, 1)
        say(f"version {start.version}: drawing replies at {args.items} moments for feedback")
        engine = Engine(base, [(start.adapter_gguf, 1.0)], threads=args.threads)
        rows, pool = [], moments(train, len(train), 0)
        try:
            for n, (turns, tag) in enumerate(pool * 4):
                if len(rows) == args.items:
                    break
                text = engine.simulate(turns, tag, Sampling(seed=n)).result().text
                if preferred(text) is False:
                    said = [{"speaker": s, "text": t} for s, t in turns]
                    rows.append({"transcript": said, "reply": text, "rating": "better",
                                 "better": edit(text)})  # fmt: skip
        finally:
            engine.close()
        say(f"measuring version {start.version} ({args.probes} probes x {SEEDS} seeds)")
        before = measure(base, start.adapter_gguf, probes, validation, args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feedback.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        convsim("feedback", "import", args.model_id, str(path), "--json")
    runs: dict[str, dict[str, Any]] = {}
    for name, extra in (("replay", []), ("no replay", ["--no-replay"])):
        if name == "no replay":
            convsim("models", "rollback", args.model_id, str(start.version), "--json")
        say(f"convsim learn {args.model_id} --json {' '.join(extra)}")
        out, seconds = convsim("learn", args.model_id, "--json", *extra)
        with Workspace.open() as ws:
            made = versions(ws.store, args.model_id)[out["version"] - 1]
        say(f"measuring version {made.version}")
        runs[name] = {**measure(base, made.adapter_gguf, probes, validation, args.threads),
                      "seconds": seconds, "learn": out}  # fmt: skip
    with Workspace.open() as ws:
        use_version(ws.store, args.model_id, runs["replay"]["learn"]["version"])

    report = {"model_id": args.model_id, "items": len(rows), "before": before, **runs}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"\n{args.model_id}: {len(rows)} edits (you for u, I for i), {args.probes} held-out"
          f" moments x {SEEDS} seeds; old sessions: {len(validation)} replies")  # fmt: skip
    print(f"  {'':<30}{'you and I':>12}{'old-session ppl':>17}{'update':>10}")
    label = f"before (version {start.version})"
    print(f"  {label:<30}{before['rate']:>7.0%} of {before['judged']:<3}"
          f"{before['perplexity']:>17.2f}")  # fmt: skip
    for name, r in runs.items():
        change = r["perplexity"] / before["perplexity"] - 1
        label = f"after, {name} (v{r['learn']['version']})"
        print(f"  {label:<30}{r['rate']:>7.0%} of {r['judged']:<3}{r['perplexity']:>11.2f}"
              f" ({change:+.1%}){r['seconds']:>9.0f}s")  # fmt: skip
    r = runs["replay"]
    rise = r["rate"] - before["rate"]
    ppl = r["perplexity"] / before["perplexity"] - 1
    free = runs["no replay"]["perplexity"] / before["perplexity"] - 1
    for target, value, ok in (
        (f"preferred form rises >= {GOAL_RISE:.0%} points", f"{rise * 100:+.0f} points",
         rise >= GOAL_RISE),
        (f"old-session perplexity rises <= {GOAL_PERPLEXITY:.0%}", f"{ppl:+.1%}",
         ppl <= GOAL_PERPLEXITY),
        ("without replay, forgetting is worse", f"{free:+.1%} vs {ppl:+.1%}", free > ppl),
        (f"update time <= {GOAL_SECONDS // 60} min", f"{r['seconds']:.0f} s",
         r["seconds"] <= GOAL_SECONDS),
    ):  # fmt: skip
        print(f"  {target:<44} {value:>18}  {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
