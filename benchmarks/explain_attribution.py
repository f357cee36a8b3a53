"""Planted-phrase attribution: does "why did it say that?" find the message a reply came from?

    python benchmarks/explain_attribution.py [--phrases 28] [--steps 20] [--threads N]
                                             [--keep DIR] [--home DIR --model MODEL_ID] [--json]

Unique phrases (28 by default, at least 20) are planted as Sam's messages in the bundled sample
chat, spread over its training sessions; a persona of Sam is trained briefly on the default
base (`--steps`; or `--home DIR --model ID` reuses one trained on this script's planted chat,
e.g. from an earlier `--keep DIR` run). Then the persona "reproduces" each planted phrase,
three ways: word for word, edited (a word dropped, "lol" added, lower case, no punctuation)
and partly (the first half of its words, then other words). Each reply is asked about after a
new moment (Riya: "so what's new?"), not the planted message's own context, and every training
message of Sam is ranked (`core.evaluation.Explainer`).

Reported: the share of replies whose planted message ranks first, and the mean reciprocal rank,
for the combined ranking (what `convsim explain` shows) and, measured in the same run as
baselines, each signal alone (MiniLM meaning; the persona's hidden states), a keyword ranking
(word overlap, Jaccard) and reciprocal-rank fusion of the two signals (the fusion not chosen).
Target: the combined ranking puts the planted message first in >= 90% of cases.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GOAL = 0.90
PHRASES = [
    "the marmalade ferris wheel only opens on wet sundays",
    "my cousin keeps a tortoise called professor biscuit",
    "never trust a lighthouse that sells umbrellas",
    "i once lost a kazoo inside a bowling alley in leeds",
    "the walrus at the aquarium winked at me twice",
    "grandmas secret is cardamom in the gravy",
    "we should start a podcast about haunted vending machines",
    "that saxophone busker plays only sea shanties on tuesdays",
    "my landlord collects porcelain frogs from every airport",
    "i dreamt the moon was made of halloumi",
    "the library has a cat named admiral whiskerton",
    "my bike chain snapped outside the cheese museum",
    "apparently pigeons can recognise faces for years",
    "im learning the accordion purely out of spite",
    "theres a llama farm behind the petrol station",
    "my uncle swears he can juggle three pineapples",
    "the trampoline park is hosting a chess tournament",
    "i painted my ceiling tangerine by accident",
    "someone left a canoe in the office car park",
    "my neighbours parrot only speaks portuguese",
    "the bakery does a lavender croissant on fridays",
    "we got stuck in a revolving door for ten minutes",
    "i found a medieval coin in my sourdough starter",
    "my phone autocorrects pasta to pastor every single time",
    "the gym playlist is entirely yodelling today",
    "a heron stole my sandwich at the reservoir",
    "i bought a telescope to spy on thunderstorms",
    "my cactus is thriving on nothing but smooth jazz",
    "the dentist has a signed photo of a famous magician",
    "our flat smells like burnt marshmallows and regret",
]
TURNS = [("Riya", "so what's new?")]
OTHER_ENDING = "anyway how was your day"
VARIANTS = ("exact", "edited", "partial")
METHODS = ("combined", "embedding", "hidden", "keyword", "rrf")
_WORD = re.compile(r"\w+")


def planted_chat(sample: Path, phrases: list[str], out: Path) -> Path:
    """The sample chat with one Sam message per phrase, spread over its first 80% (the
    training sessions), each at the time of the line it follows."""
    lines = sample.read_text(encoding="utf-8").splitlines()
    spots = np.linspace(5, int(len(lines) * 0.8), len(phrases)).astype(int)
    for spot, text in sorted(zip(spots, phrases, strict=True), reverse=True):
        stamp = lines[spot].split(" - ")[0]
        lines.insert(int(spot) + 1, f"{stamp} - Sam: {text}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def variants(phrase: str) -> dict[str, str]:
    words = phrase.split()
    edited = words[: len(words) // 2] + words[len(words) // 2 + 1 :]
    half = words[: max(2, len(words) // 2)]
    return {
        "exact": phrase,
        "edited": " ".join(edited).lower() + " lol",
        "partial": " ".join(half) + " " + OTHER_ENDING,
    }


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def keyword_scores(reply: str, bodies: list[set[str]]) -> np.ndarray:
    q = words(reply)
    return np.array([len(q & b) / max(1, len(q | b)) for b in bodies], dtype=np.float64)


def rrf(sims: dict[str, np.ndarray], k: int = 20) -> np.ndarray:
    total = np.zeros(len(next(iter(sims.values()))))
    for s in sims.values():
        ranks = np.empty(len(s))
        ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
        total += 1.0 / (k + ranks)
    return total


def rank_of(scores: np.ndarray, row: int) -> int:
    """1 + how many other candidates score at least as high (a tie counts against it: a
    signal that cannot tell texts apart must not look good)."""
    return int((np.delete(scores, row) >= scores[row]).sum()) + 1


def train(home: Path, phrases: list[str], steps: int, say: Any) -> tuple[str, float]:
    """A persona of Sam on the planted chat in `home`: trained now, or finished from its last
    checkpoint when an earlier run of this script (`--keep`) was stopped, or reused."""
    from convsim.core.training import resume_training, train_person
    from convsim.core.workspace import SAMPLE_CHAT, Workspace

    overrides = {"steps": steps, "seq_len": 128, "batch_size": 4, "eval_every": 0,
                 "samples": 0, "checkpoint_every": 5}  # fmt: skip

    def step(e: Any) -> None:
        if e.kind == "step" and (e.step % 5 == 0 or e.step == e.total_steps):
            say(f"  step {e.step}/{e.total_steps}, loss {e.loss:.3f}")

    started = time.perf_counter()
    with Workspace.open(home) as ws:
        earlier = [m for m in ws.store.models() if m.person == "Sam"]
        if earlier and earlier[-1].status == "ready":
            say(f"reusing {earlier[-1].id} from an earlier run")
            return earlier[-1].id, 0.0
        if earlier:
            say(f"resuming {earlier[-1].id} from its last checkpoint")
            run = resume_training(ws, earlier[-1].id, on_event=step)
        else:
            chat = planted_chat(SAMPLE_CHAT, phrases, home.parent / "planted_whatsapp.txt")
            (report,) = ws.import_export(chat)
            say(f"training Sam on the default base, {steps} steps (planted chat {report.chat_id})")
            run = train_person(ws, report.chat_id, "Sam", overrides=overrides, on_event=step)
    return run.model.id, time.perf_counter() - started


def measure(home: Path, model_id: str, phrases: list[str], threads: int | None, say: Any) -> dict:
    from convsim.core.evaluation.explain import Explainer, combine
    from convsim.core.memory import shared_embedder
    from convsim.core.workspace import Workspace

    with Workspace.open(home) as ws:
        record = ws.store.model(model_id)
        ids = {m.text: m.id for m in ws.store.messages(record.chat_id)}
        started = time.perf_counter()
        embedder = shared_embedder()
        explainer = Explainer(ws, model_id, embedder, threads=threads)
        index_s = time.perf_counter() - started
        say(f"index: {len(explainer.index.ids)} training messages of Sam, "
            f"{'built' if explainer.built else 'read'} in {index_s:.1f} s")  # fmt: skip
        try:
            train, _, _ = ws.dataset_files(record.dataset_id)
            body = {ex.target_id: ex.target.split("] ", 1)[-1].strip() for ex in train}
            row_of = {int(mid): i for i, mid in enumerate(explainer.index.ids)}
            bodies = [words(body.get(int(mid), "")) for mid in explainer.index.ids]
            planted = [(p, row_of[ids[p]]) for p in phrases if ids.get(p) in row_of]
            say(f"planted in training: {len(planted)} of {len(phrases)}")
            ranks: dict[str, dict[str, list[int]]] = {m: {v: [] for v in VARIANTS} for m in METHODS}
            started = time.perf_counter()
            for phrase, row in planted:
                for variant, reply in variants(phrase).items():
                    sims = explainer.similarities(reply, TURNS)
                    scores = {
                        "combined": combine(sims),
                        "embedding": sims["embedding"],
                        "hidden": sims["hidden"],
                        "keyword": keyword_scores(reply, bodies),
                        "rrf": rrf(sims),
                    }
                    for method, s in scores.items():
                        ranks[method][variant].append(rank_of(s, row))
            per_query = (time.perf_counter() - started) / max(1, len(planted) * len(VARIANTS))
        finally:
            explainer.close()
    return {"candidates": len(explainer.index.ids), "planted": len(planted),
            "index_seconds": index_s, "seconds_per_reply": per_query, "ranks": ranks}  # fmt: skip


def summarise(ranks: dict[str, dict[str, list[int]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method, by_variant in ranks.items():
        every = [r for v in VARIANTS for r in by_variant[v]]
        out[method] = {
            "first": float(np.mean([r == 1 for r in every])),
            "mrr": float(np.mean([1 / r for r in every])),
            **{f"first_{v}": float(np.mean([r == 1 for r in by_variant[v]])) for v in VARIANTS},
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phrases", type=int, default=28, help="phrases planted (20 to 30)")
    parser.add_argument("--steps", type=int, default=20, help="training steps of the persona")
    parser.add_argument("--threads", type=int, help="CPU threads for llama.cpp (default: all)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--home", type=Path, help="with --model: the workspace holding it")
    parser.add_argument("--model", help="a persona trained on this script's planted chat")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    args = parser.parse_args()
    if not 20 <= args.phrases <= len(PHRASES):
        parser.error(f"--phrases must be 20 to {len(PHRASES)}")
    if bool(args.model) != bool(args.home):
        parser.error("--model and --home go together")
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    say("$ python " + " ".join(shlex.quote(a) for a in sys.argv))
    phrases = PHRASES[: args.phrases]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        home, model_id, train_s = args.home, args.model, 0.0
        if model_id is None:
            home = work / "home"
            home.mkdir(parents=True, exist_ok=True)
            model_id, train_s = train(home, phrases, args.steps, say)
            say(f"trained {model_id} in {train_s:.0f} s (home: {home})")
        assert home is not None
        result = measure(home, model_id, phrases, args.threads, say)
    summary = summarise(result.pop("ranks"))
    result.update(model_id=model_id, train_seconds=train_s, methods=summary)
    combined = summary["combined"]["first"]
    result["goal"] = {"first": combined, "target": GOAL, "pass": combined >= GOAL}
    if args.json:
        print(json.dumps(result))
        return 0
    n = result["planted"]
    per_reply = result["seconds_per_reply"]
    print(f"\n{n} planted phrases x {len(VARIANTS)} reproductions ({', '.join(VARIANTS)}), "
          f"{result['candidates']} candidates each; {per_reply:.2f} s a reply")  # fmt: skip
    print(f"{'ranking':<28} {'first':>6} {'MRR':>6}   " + "  ".join(f"{v:>8}" for v in VARIANTS))
    names = {"combined": "combined (convsim explain)", "embedding": "meaning only (MiniLM)",
             "hidden": "hidden states only", "keyword": "keyword overlap (Jaccard)",
             "rrf": "combined by RRF (not used)"}  # fmt: skip
    for method in METHODS:
        s = summary[method]
        cells = "  ".join(f"{s[f'first_{v}']:>8.0%}" for v in VARIANTS)
        print(f"{names[method]:<28} {s['first']:>6.0%} {s['mrr']:>6.3f}   {cells}")
    verdict = "PASS" if result["goal"]["pass"] else "FAIL"
    print(f"goal: planted message first in >= {GOAL:.0%}: combined {combined:.0%} -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
