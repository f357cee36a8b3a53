"""Fact extraction on the labelled set: which facts does `build_memory` find on the default base,
how many are true, and does it see facts change?

    python benchmarks/memory_extract.py [--messages N] [--seed 0] [--methods spans,json]
                                        [--facts] [--json] [--keep DIR]

The labelled set (`memory_set.py`: a ~1,000-message two-person WhatsApp chat over a year, with 70
ground-truth facts in `facts.jsonl`, 10 of them replacing an earlier value) is imported into an
empty data folder per method, and `build_memory` runs on it with `local_extractor(default base,
method)` and the default gate. `--messages N` keeps only the first N messages (and the facts
stated in them: first evidence line within them) for a quick check. Both methods run in the same
process, one after the other; "json" (the window-as-JSON extractor the app used first) is the
baseline printed beside "spans".

Definitions:
- answers: the model's answers (json: one per window; spans: one per cued (message, person,
  key)); parsed: those that were the JSON asked for (grammar-held: all should be); truncated:
  JSON answers cut at the time cap and kept up to their last complete fact.
- facts: every fact the store holds for the chat after the build (active, superseded or
  contradicted).
- a match between an extracted fact and a true fact: the same person; a compatible key
  (`COMPATIBLE`: the true fact's own words, e.g. "city" or "neighbourhood", map to the keys
  the extractors use, e.g. "lives in"); and a shared content word between the values (the
  gate's `content_words`: stop words out, stems; matched as the gate matches, by stem or shared
  prefix), not counting words without a letter (a bare "5" matches nothing).
- precision: the share of extracted facts that match some true fact; recall: the share of
  true facts matched by some extracted fact.
- changes seen: of the true facts that replace an earlier value, those for which the store
  holds a flagged pair (`Facts.conflicts`) whose old fact matches the earlier value and is
  superseded, and whose new fact matches the new value and is active; paired: the same
  without the statuses (a later fact may have superseded the new one since: a neighbourhood
  after a city, both "lives in"). flagged: all flagged pairs (false ones included).
- s/1k msgs: `build_memory`'s seconds (model answers, gate, store) per 1,000 messages read;
  model loading is reported apart. Two CPU cores shared with other work slow llama.cpp a lot:
  compare the two methods within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from memory_set import MemorySet, build_set

from convsim.core.bases.prepare import default_base
from convsim.core.locations import Locations
from convsim.core.memory.extract import build_memory
from convsim.core.memory.facts import Fact, Facts
from convsim.core.memory.gate import _matches, content_words
from convsim.core.memory.spans import METHODS, local_extractor
from convsim.core.workspace import Workspace

# The true facts' keys (memory_set.FACTS) -> the extractors' keys (gate.KEYS) that say the same.
COMPATIBLE: dict[str, set[str]] = {
    "job": {"job", "workplace"}, "new job": {"job", "workplace"},
    "shift start": {"job", "workplace"}, "boss": {"job", "workplace", "other"},
    "commute": {"job", "workplace", "car", "hobby", "other"},
    "city": {"lives in", "hometown"}, "neighbourhood": {"lives in"}, "moved": {"lives in", "plan"},
    "flatmate": {"friend", "lives in", "other"},
    "partner": {"partner"}, "relationship with Alex": {"partner"}, "partner's job": {"partner"},
    "breakup": {"partner"}, "sister": {"sibling"}, "brother": {"sibling"},
    "sister's job": {"sibling"}, "brother studies": {"sibling"}, "niece": {"other"},
    "parents": {"parent"}, "pet": {"pet"}, "dog breed": {"pet"}, "birthday": {"birthday", "age"},
    "allergy": {"allergy", "diet", "health"}, "intolerance": {"allergy", "diet", "health"},
    "diet": {"diet"}, "favourite food": {"likes", "diet"}, "favourite drink": {"likes", "diet"},
    "car": {"car"}, "driving licence": {"car", "other"}, "hobby": {"hobby", "likes"},
    "band": {"hobby", "likes"}, "instrument": {"hobby", "likes"},
    "learning": {"studies", "hobby"}, "studies": {"studies", "school"},
    "exams": {"studies", "school", "job"}, "trip": {"trip", "plan"}, "plan": {"plan", "trip"},
    "event": {"other", "hobby", "likes", "trip", "plan"}, "injury": {"health"},
    "football team": {"likes", "hobby"}, "tattoo": {"other"}, "plant": {"other", "pet", "likes"},
    "met Jordan": {"friend", "school", "other"},
}  # fmt: skip


def overlaps(a: str, b: str) -> bool:
    """Whether two values share a content word that has a letter (see the module docstring)."""
    words_b = {w for w in content_words(b) if any(c.isalpha() for c in w)}
    return any(_matches(w, words_b) for w in content_words(a) if any(c.isalpha() for c in w))


def matches(fact: Fact, truth: dict[str, Any]) -> bool:
    return (
        fact.person == truth["person"]
        and fact.key in COMPATIBLE.get(truth["key"], {truth["key"]})
        and overlaps(fact.value, truth["value"])
    )


def trimmed(built: MemorySet, messages: int | None) -> tuple[str, list[dict[str, Any]]]:
    """The chat text and the true facts, cut to the first `messages` messages (line 1 of
    chat.txt is the encryption notice: message k is line k + 1)."""
    if messages is None:
        return built.chat_text, built.facts
    lines = built.lines[: messages + 1]
    facts = [f for f in built.facts if f["evidence"][0] <= messages + 1]
    return "\n".join(lines) + "\n", facts


def run_method(method: str, chat: Path, home: Path, base: Path) -> dict[str, Any]:
    """Import the chat into `home`, build memory with `method`; the raw results."""
    with Workspace(Locations(home)) as ws:
        chat_id = ws.import_export(chat)[0].chat_id
        start = time.perf_counter()
        extractor = local_extractor(base, method)
        load = time.perf_counter() - start
        report = build_memory(ws.store, chat_id, extractor)
        facts = Facts(ws.store)
        held = facts.list(chat_id=chat_id)
        pairs = [(c.old, c.new) for c in facts.conflicts(chat_id, unresolved=False)]
    if method == "spans":
        answers = getattr(extractor, "calls", 0)
    else:
        answers = report.windows + report.unparsed
    return {"report": report, "facts": held, "pairs": pairs, "answers": answers, "load": load}


def score(raw: dict[str, Any], truths: list[dict[str, Any]]) -> dict[str, Any]:
    held: list[Fact] = raw["facts"]
    report = raw["report"]
    matched = [f for f in held if any(matches(f, t) for t in truths)]
    found = [t for t in truths if any(matches(f, t) for f in held)]
    by_id = {t["id"]: t for t in truths}
    changes = [(by_id[t["replaces"]], t) for t in truths if t["replaces"] in by_id]
    seen = [
        new["id"]
        for old, new in changes
        if any(
            matches(o, old) and o.status == "superseded" and matches(n, new)
            and n.status == "active"
            for o, n in raw["pairs"]
        )
    ]  # fmt: skip
    paired = [
        new["id"]
        for old, new in changes
        if any(matches(o, old) and matches(n, new) for o, n in raw["pairs"])
    ]
    return {
        "answers": raw["answers"],
        "parsed": raw["answers"] - report.unparsed,
        "truncated": report.truncated,
        "facts": len(held),
        "matched": len(matched),
        "precision": len(matched) / len(held) if held else 0.0,
        "true_facts": len(truths),
        "recall": len(found) / len(truths) if truths else 0.0,
        "changes": len(changes),
        "changes_seen": len(seen),
        "changes_paired": len(paired),
        "flagged": len(raw["pairs"]),
        "messages": report.messages,
        "seconds": report.seconds,
        "s_per_1k": report.seconds / report.messages * 1000 if report.messages else 0.0,
        "load_seconds": round(raw["load"], 2),
        "rejected": report.rejected,
        "found": [t["id"] for t in found],
        "held": [dict(f.to_json(), true=f in matched) for f in held],
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    head = (
        f"{'method':<16}{'answers':>8}{'parsed':>8}{'cut':>5}{'facts':>7}{'true':>6}"
        f"{'precision':>10}{'recall':>8}{'changes':>9}{'paired':>7}{'flagged':>8}"
        f"{'s/1k msgs':>11}{'load s':>8}"
    )
    print(head)
    print("-" * len(head))
    for method, r in results.items():
        label = f"{method} (baseline)" if method == "json" else method
        print(
            f"{label:<16}{r['answers']:>8}{r['parsed']:>8}{r['truncated']:>5}{r['facts']:>7}"
            f"{r['matched']:>6}{r['precision']:>10.3f}{r['recall']:>8.3f}"
            f"{str(r['changes_seen']) + '/' + str(r['changes']):>9}{r['changes_paired']:>7}"
            f"{r['flagged']:>8}"
            f"{r['s_per_1k']:>11.1f}{r['load_seconds']:>8.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, help="only the first N messages")
    parser.add_argument("--seed", type=int, default=0, help="the labelled set's seed")
    parser.add_argument("--methods", default="spans,json", help="comma-separated: spans,json")
    parser.add_argument("--facts", action="store_true", help="list each method's facts")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    if not methods or set(methods) - set(METHODS):
        parser.error(f"--methods: choose from {', '.join(METHODS)}")
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    base = default_base(Locations.from_env())
    built = build_set(args.seed)
    text, truths = trimmed(built, args.messages)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        chat = work / "chat.txt"
        chat.write_text(text, encoding="utf-8")
        for method in methods:
            say(f"{method}: extracting…")
            raw = run_method(method, chat, work / f"home-{method}", base)
            results[method] = score(raw, truths)
            say(f"  {method}: {results[method]['seconds']:.0f} s")
    messages = next(iter(results.values()))["messages"]
    summary = {"seed": args.seed, "messages": messages, "true_facts": len(truths),
               "base": base.name, "methods": results}  # fmt: skip
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    print(f"\n{messages} messages, {len(truths)} true facts, base {base.name}\n")
    print_table(results)
    if args.facts:
        for method, r in results.items():
            print(f"\n{method} (+ true, - not):")
            for f in r["held"]:
                mark = "+" if f["true"] else "-"
                print(f"  {mark} {f['person']}: {f['key']}: {f['value']}  [{f['status']}]")
            missed = [t for t in truths if t["id"] not in r["found"]]
            print(f"  missed: {', '.join(t['id'] for t in missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
