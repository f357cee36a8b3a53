"""With memory vs without: does the persona answer questions about known facts with the true value?

    python benchmarks/memory_answers.py [--samples 3] [--json]

On the labelled chat of `memory_set.py`, imported into a temporary store: the current (not
superseded) facts of `facts.jsonl` are stored as facts the user entered, then each person is
asked about each of their facts in the second person ("where do you work now?"), after the last
messages of the chat, as the chat screen and `convsim chat` ask. The reply is generated on the
default base (the model a user starts with, speaking as that person) twice per seed: with
memory (the facts `Recall` chooses go into the prompt's head, exactly as in the app) and without
(no head: the baseline, measured in the same run). A reply states the true value when it holds
one of the value's distinctive words (content words of 4+ letters that the question lacks).

Reported: the share of replies stating the true value with and without memory, and how often
Recall put the asked-about fact in the head. Extraction is not measured here (facts are given):
this is the retrieval-into-generation path (`benchmarks/memory_extract.py` measures extraction).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory_set import build_set

# The second-person question for a key; facts with other keys are not asked about.
ASK = {
    "job": "where do you work now?",
    "new job": "where do you work now?",
    "city": "which city do you live in now?",
    "neighbourhood": "which part of town are you in now?",
    "partner": "who are you seeing these days?",
    "sister": "what's your sister's name again?",
    "brother": "what's your brother's name again?",
    "pet": "what's your pet called?",
    "birthday": "when is your birthday?",
    "car": "what car do you drive?",
    "hobby": "what do you do for fun these days?",
    "studies": "what are you studying?",
    "diet": "what do you eat, anything you avoid?",
    "favourite food": "what's your favourite food?",
    "favourite drink": "what's your favourite drink?",
    "instrument": "what instrument do you play?",
    "football team": "which football team do you support?",
    "intolerance": "anything you can't eat?",
}
CONTEXT = 6  # messages of the chat before the question
_WORD = re.compile(r"[A-Za-z][A-Za-z']{3,}")


def value_words(value: str, question: str) -> set[str]:
    asked = {w.lower() for w in _WORD.findall(question)}
    return {w.lower() for w in _WORD.findall(value)} - asked - {"with", "from", "that", "this"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=3, help="seeds per question and side")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CONVSIM_HOME"] = str(Path(tmp) / "home")
        from convsim.core.bases.prepare import default_base
        from convsim.core.inference.engine import Engine, Sampling
        from convsim.core.memory import Facts, shared_embedder
        from convsim.core.memory.recall import Recall
        from convsim.core.workspace import Workspace

        folder = Path(tmp) / "set"
        build_set(0).write(folder)
        facts = [json.loads(line) for line in (folder / "facts.jsonl").read_text().splitlines()]
        with Workspace.open(Path(tmp) / "home") as ws:
            (report,) = ws.import_export(folder / "chat.txt")
            chat_id = report.chat_id
            people = [p.name for p in ws.store.participants(chat_id)]
            context = [(m.sender or "", m.text) for m in ws.store.messages(chat_id)][-CONTEXT:]
            store_facts = Facts(ws.store)
            asked = []
            for fact in facts:
                if fact["superseded"]:
                    continue
                held, _ = store_facts.add(fact["person"], fact["key"], fact["value"],
                                          chat_id=chat_id, origin="user")  # fmt: skip
                if fact["key"] in ASK:
                    asked.append((fact, held.id))
            engine = Engine(default_base(ws.locations), n_ctx=2048, threads=args.threads)
            count = lambda text: len(engine.tokens(text))  # noqa: E731
            recall = Recall(ws.store, chat_id, count, embedder=shared_embedder())
            hits = {"memory": 0, "none": 0}
            chosen_right, replies, examples = 0, 0, []
            start = time.perf_counter()
            for fact, fact_id in asked:
                other = next(p for p in people if p != fact["person"])
                question = ASK[fact["key"]]
                turns = [*context, (other, question)]
                chosen = recall.choose(turns)
                chosen_right += fact_id in [f.id for f in chosen.facts]
                words = value_words(fact["value"], question)
                for side, head in (("memory", chosen.head), ("none", "")):
                    engine.set_head(head)
                    for seed in range(args.samples):
                        sampling = Sampling(temperature=0.7, seed=seed, max_tokens=32)
                        text = engine.simulate(turns, fact["person"], sampling).result().text
                        said = {w.lower() for w in _WORD.findall(text)}
                        hits[side] += bool(words & said)
                        if side == "memory" and seed == 0 and len(examples) < 4:
                            examples.append((question, fact["value"], text))
                replies += args.samples
            seconds = time.perf_counter() - start
            engine.close()

    summary = {
        "questions": len(asked),
        "replies_per_side": replies,
        "with_memory": round(hits["memory"] / max(replies, 1), 3),
        "without_memory": round(hits["none"] / max(replies, 1), 3),
        "recall_chose_the_fact": round(chosen_right / max(len(asked), 1), 3),
        "seconds": round(seconds, 1),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{len(asked)} questions about current facts, {args.samples} seeds each, default base")
    print(f"  replies stating the true value, with memory:    {summary['with_memory']:.1%}")
    print(f"  replies stating the true value, without memory: {summary['without_memory']:.1%}"
          "  (baseline, same run)")  # fmt: skip
    print(f"  the asked-about fact was in the head:           "
          f"{summary['recall_chose_the_fact']:.1%}")  # fmt: skip
    print(f"  {seconds:.0f} s for {2 * replies} replies")
    for question, value, text in examples:
        print(f"  e.g. {question!r} (true: {value!r}) -> {text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
