"""Evidence recall of memory search: does `convsim memory search` find the messages that answer a
question about the people in a chat?

    python benchmarks/memory_recall.py [--seed 0] [--json] [--dump-misses] [--keep DIR]
                                       [--with-facts]

The labelled set (`memory_set.py`: a ~1,000-message two-person WhatsApp chat over a year and ~80
questions, each with the 1-3 messages that hold its answer) is imported with the real `convsim`
command into an empty data folder, then every question is asked through ONE
`convsim memory search CHAT_ID --queries FILE --json --k 10 --mode M` per mode. For each question
the first k distinct message ids across the hits, in rank order, are its top k: recall@k is the
share of its evidence among them, hit@k whether any of it is. Both averaged over the questions,
for all of them and split by whether the fact asked about changed over time (a move, a new job:
the current value is only in the latest messages) and whether the evidence shares a content word
with the question (if not, words alone should miss it).

`--with-facts` then runs `convsim memory build` (local extraction on the default base) and asks
hybrid search again ("hybrid+facts"): fact hits point at their source messages.
Keyword-only search is the baseline, measured in the same run. Goal (issue 11): hybrid
recall@10 >= 0.80 and at least 5 points above keyword-only. `--dump-misses` lists the questions
hybrid search does not fully answer at 10 (the evidence, which of it was found, the top 3 hits);
`--json` prints the whole summary as one JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from memory_set import MemorySet, build_set

CLI = [sys.executable, "-m", "convsim.tui.cli"]
MODES = ("hybrid", "keyword", "embedding")
KS = (5, 10)
GOAL_RECALL, GOAL_MARGIN = 0.80, 0.05


def convsim(home: Path, *args: str, show_progress: bool = False) -> tuple[str, float]:
    """stdout and wall seconds of `convsim ARGS` in a fresh process on the data folder `home`;
    with `show_progress` its stderr goes to ours (the indexing progress, on a terminal)."""
    env = {**os.environ, "CONVSIM_HOME": str(home)}
    start = time.perf_counter()
    done = subprocess.run(
        [*CLI, *args], env=env, stdout=subprocess.PIPE,
        stderr=None if show_progress else subprocess.PIPE, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"convsim {' '.join(args[:3])} failed ({done.returncode}): {done.stderr or ''}")
    return done.stdout, seconds


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def import_set(home: Path, chat: Path) -> int:
    """Import the set's chat and return its chat id."""
    out, _ = convsim(home, "import", str(chat), "--json")
    reports = json_lines(out)
    if len(reports) != 1:
        sys.exit(f"expected one chat from {chat}, got {len(reports)}")
    return int(reports[0]["chat_id"])


def store_ids(home: Path, chat_id: int, built: MemorySet) -> dict[int, int]:
    """chat.txt line number -> store message id, matched by (minute, sender, text) in file order
    (the store's order), not assumed from the line numbers."""
    out, _ = convsim(home, "messages", str(chat_id), "--json")
    waiting: dict[tuple, deque[int]] = defaultdict(deque)
    for m in json_lines(out):
        waiting[(m["timestamp"][:16], m["sender"], m["text"])].append(int(m["id"]))
    ids = {}
    for r in built.records:
        queue = waiting.get((r.timestamp[:16], r.sender, r.text))
        if queue:
            ids[r.line] = queue.popleft()
    needed = {line for q in built.questions for line in q["evidence"]}
    missing = sorted(needed - set(ids))
    if missing:
        sys.exit(f"evidence lines not found in the store after import: {missing[:10]}")
    return ids


def search(home: Path, chat_id: int, queries: Path, mode: str, k: int) -> tuple[list, float]:
    """The JSON result of each query (in order) and the wall seconds of the whole command."""
    out, seconds = convsim(
        home, "memory", "search", str(chat_id), "--queries", str(queries), "--json",
        "--k", str(k), "--mode", mode,
    )  # fmt: skip
    return json_lines(out), seconds


def top_ids(result: dict[str, Any], k: int) -> list[int]:
    """The first k distinct message ids across the hits, in rank order."""
    seen: list[int] = []
    for hit in result["hits"]:
        for message_id in hit["message_ids"]:
            if message_id not in seen:
                seen.append(message_id)
    return seen[:k]


def score(questions: list[dict], results: list[dict], ids: dict[int, int]) -> list[dict]:
    """Per question: recall@k and hit@k for each k in KS."""
    rows = []
    for q, result in zip(questions, results, strict=True):
        evidence = {ids[line] for line in q["evidence"]}
        row: dict[str, Any] = {"id": q["id"]}
        for k in KS:
            found = evidence & set(top_ids(result, k))
            row[f"recall@{k}"] = len(found) / len(evidence)
            row[f"hit@{k}"] = 1.0 if found else 0.0
        rows.append(row)
    return rows


def average(rows: list[dict]) -> dict[str, float]:
    keys = [f"{m}@{k}" for m in ("recall", "hit") for k in KS]
    n = len(rows)
    return {"n": n, **{key: sum(r[key] for r in rows) / n if n else 0.0 for key in keys}}


GROUPS = {
    "all": lambda q: True,
    "changed over time": lambda q: q["changed"],
    "  current value": lambda q: q["when"] == "now",
    "  earlier value": lambda q: q["when"] == "before",
    "unchanged": lambda q: not q["changed"],
    "no shared word": lambda q: not q["shares_word"],
}


def misses(
    built: MemorySet, results: list[dict], rows: list[dict], ids: dict[int, int]
) -> list[dict]:
    """The questions not fully answered at 10: evidence (found or not) and the top 3 hits."""
    out = []
    for q, result, row in zip(built.questions, results, rows, strict=True):
        if row["recall@10"] >= 1.0:
            continue
        top = set(top_ids(result, 10))
        evidence = []
        for line in q["evidence"]:
            record = built.records[line - 1]
            evidence.append({
                "line": line, "id": ids[line], "found": ids[line] in top,
                "sender": record.sender, "text": record.text,
            })  # fmt: skip
        hits = [
            {"score": h["score"], "message_ids": h["message_ids"], "text": h["text"]}
            for h in result["hits"][:3]
        ]
        out.append({
            "id": q["id"], "question": q["question"], "answer": q["answer"],
            "recall@10": row["recall@10"], "evidence": evidence, "top3": hits,
        })  # fmt: skip
    return out


def print_table(summary: dict[str, Any]) -> None:
    head = f"{'mode':<10} {'questions':<18} {'n':>3}" + "".join(
        f" {m}@{k:<3}" for m in ("recall", "hit") for k in KS
    )
    print(head)
    print("-" * len(head))
    for mode, groups in summary["modes"].items():
        for group, avg in groups.items():
            cells = "".join(
                f" {avg[f'{m}@{k}']:>{len(m) + 4}.3f}" for m in ("recall", "hit") for k in KS
            )
            print(f"{mode:<10} {group:<18} {avg['n']:>3}{cells}")
        print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the labelled set's seed")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    parser.add_argument("--dump-misses", action="store_true", help="list hybrid's misses at 10")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument(
        "--with-facts", action="store_true",
        help="also: `memory build` the chat (local extraction), then hybrid search again",
    )  # fmt: skip
    args = parser.parse_args()
    modes = [*MODES, *(["hybrid+facts"] if args.with_facts else [])]
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        built = build_set(args.seed)
        chat = built.write(work / "set")
        queries = work / "queries.txt"
        queries.write_text("".join(q["question"] + "\n" for q in built.questions), "utf-8")
        home = work / "home"
        chat_id = import_set(home, chat)
        ids = store_ids(home, chat_id, built)
        say(
            f"set: seed {args.seed}, {built.messages} messages, {len(built.questions)} questions,"
            f" {sum(q['changed'] for q in built.questions)} about facts that changed over time"
        )
        results, seconds, rows = {}, {}, {}
        for mode in modes:  # the first search indexes the chat (words and embeddings)
            if mode == "hybrid+facts":
                out, built_s = convsim(home, "memory", "build", str(chat_id), "--json")
                say(f"  memory build: {json.loads(out)['added']} facts in {built_s:.1f} s")
            searched = mode.split("+")[0]
            results[mode], seconds[mode] = search(home, chat_id, queries, searched, max(KS))
            got = [r["query"] for r in results[mode]]
            if got != [q["question"] for q in built.questions]:
                sys.exit(f"{mode}: the results do not match the questions one for one")
            rows[mode] = score(built.questions, results[mode], ids)
            say(f"  {mode}: {seconds[mode]:.1f} s for the whole command")

    summary: dict[str, Any] = {"seed": args.seed, "messages": built.messages, "modes": {}}
    for mode in modes:
        summary["modes"][mode] = {
            group: average([r for q, r in zip(built.questions, rows[mode], strict=True) if keep(q)])
            for group, keep in GROUPS.items()
        }
    hybrid = summary["modes"]["hybrid"]["all"]["recall@10"]
    keyword = summary["modes"]["keyword"]["all"]["recall@10"]
    passed = hybrid >= GOAL_RECALL and hybrid - keyword >= GOAL_MARGIN
    summary["goal"] = {"hybrid_recall@10": hybrid, "keyword_recall@10": keyword, "pass": passed}
    summary["seconds"] = seconds
    summary["misses"] = misses(built, results["hybrid"], rows["hybrid"], ids)

    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    print()
    print_table(summary)
    print(
        f"goal: hybrid recall@10 {hybrid:.3f} >= {GOAL_RECALL:.2f} and >= keyword-only "
        f"{keyword:.3f} + {GOAL_MARGIN:.2f} (baseline) -> {'PASS' if passed else 'FAIL'}"
    )
    print(f"hybrid misses at 10: {len(summary['misses'])} of {len(built.questions)} questions")
    if args.dump_misses:
        for miss in summary["misses"]:
            print(f"\n{miss['id']} {miss['question']}  [{miss['answer']}]  "
                  f"recall@10 {miss['recall@10']:.2f}")  # fmt: skip
            for e in miss["evidence"]:
                mark = "found" if e["found"] else "MISSED"
                print(f"  {mark:>6} #{e['id']} {e['sender']}: {e['text']}")
            for i, h in enumerate(miss["top3"], 1):
                print(f"  top {i}: {h['score']:.4f} {h['message_ids']} {h['text'][:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
