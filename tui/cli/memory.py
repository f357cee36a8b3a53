"""`convsim memory ...`: what convsim knows about each person, and search over their messages.

Scripts rely on these shapes (keep them):
- `memory search CHAT_ID QUERY [--k K] [--json] [--mode M]`, or `--queries FILE` (one query per
  line): with `--json`, one line per query:
  `{"query", "ms", "hits": [{"score", "fact_id", "message_ids", "text"}]}`, best first.
- `memory list CHAT_ID|PERSON [--status S] [--origin O] [--json]`: a JSON array of facts.
- `memory add CHAT_ID PERSON KEY VALUE`, `memory edit FACT_ID [--key K] [--value V]`,
  `memory pin|unpin|remove FACT_ID`, `memory history FACT_ID`, `memory conflicts CHAT_ID`,
  `memory resolve OLD_ID NEW_ID old|new|both`: each `--json` prints the fact(s) it changed.
- `memory build CHAT_ID [--extractor local|endpoint] [--json]`, `memory key set|clear`,
  `memory endpoint URL [--model M]` (see `memory_build.py`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from convsim.tui.cli import memory_build
from convsim.tui.cli.common import CliError, print_json
from convsim.tui.cli.common import workspace as _workspace

OUTCOMES = {
    "added": "Added:",
    "seen": "Already known (the fact below):",
    "superseded": "Added; it replaces an older value, kept as superseded (`memory conflicts`):",
    "contradicted": "Kept aside: a pinned fact says otherwise (`memory conflicts`):",
}
STATUS_CHOICES = ("active", "superseded", "contradicted", "pinned", "removed", "all")
ORIGIN_CHOICES = ("chat", "live", "user", "simulated")


def _chat(ws: Any, chat_id: int) -> None:
    if not ws.store.has_chat(chat_id):
        raise CliError(f"no chat with id {chat_id}; `convsim chats` lists them")


def _facts(ws: Any) -> Any:
    from convsim.core.memory import Facts

    return Facts(ws.store)


def _fact_errors(func: Any) -> Any:
    """Run a command, turning the memory library's errors into one-line CLI errors."""

    def run(args: argparse.Namespace) -> int:
        from convsim.core.memory import EmbedderMissing, FactError

        try:
            return int(func(args))
        except (FactError, EmbedderMissing) as e:
            raise CliError(str(e)) from None

    return run


def _show_facts(facts: list[Any], as_json: bool) -> None:
    if as_json:
        print_json([f.to_json() for f in facts])
        return
    if not facts:
        print("No facts. `convsim memory build CHAT_ID` extracts them from a chat.")
        return
    for f in facts:
        mark = {"pinned": "*", "superseded": "~", "contradicted": "!", "removed": "x"}
        print(
            f"{f.id:>5} {mark.get(f.status, ' ')} {f.person}: {f.key}: {f.value}"
            f"  [{f.origin}, {f.last_seen[:10]}, {len(f.sources)} source(s)]"
        )


# -- search -------------------------------------------------------------------------------------


@_fact_errors
def cmd_search(args: argparse.Namespace) -> int:
    from convsim.core.memory import open_searcher

    if args.queries is not None and args.query:
        raise CliError("give a QUERY or --queries FILE, not both")
    if args.queries is not None:
        try:
            text = Path(args.queries).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CliError(f"{args.queries}: cannot read the queries ({e})") from None
        queries = [q.strip() for q in text.splitlines() if q.strip()]
        if not queries:
            raise CliError(f"{args.queries}: no queries in it (one query per line)")
    elif args.query:
        queries = [args.query]
    else:
        raise CliError("give a QUERY, or --queries FILE with one query per line")
    if args.k < 1:
        raise CliError(f"--k must be 1 or more, not {args.k}")
    with _workspace() as ws:
        _chat(ws, args.chat_id)
        searcher = open_searcher(ws.store, args.chat_id, args.mode, progress=_indexing)
        for query in queries:
            start = time.perf_counter()
            hits = searcher.search(query, args.k)
            ms = (time.perf_counter() - start) * 1000
            if args.json:
                print_json(
                    {"query": query, "ms": round(ms, 3), "hits": [h.to_json() for h in hits]}
                )
                continue
            print(f"{query}  ({ms:.1f} ms)")
            for h in hits:
                where = f"fact {h.fact_id}" if h.fact_id is not None else f"msg {h.message_ids[0]}"
                print(f"  {h.score:.4f}  {where:<10} {h.text}")
            if not hits:
                print("  (nothing found)")
    return 0


def _indexing(done: int, total: int) -> None:
    """Embedding a chat for the first time takes a while: say so on a terminal."""
    if sys.stderr.isatty():
        end = "\n" if done >= total else ""
        print(f"\rindexing messages for search… {done}/{total}", end=end, file=sys.stderr)


# -- facts --------------------------------------------------------------------------------------


@_fact_errors
def cmd_list(args: argparse.Namespace) -> int:
    status = None if args.status is None else [args.status]
    if args.status == "all":
        from convsim.core.memory import STATUSES

        status = list(STATUSES)
    with _workspace() as ws:
        who = args.target
        if who.isdigit():
            _chat(ws, int(who))
            facts = _facts(ws).list(chat_id=int(who), status=status, origin=args.origin)
        else:
            people = ws.store.participants()
            known = {p.name for p in people} | {p.person for p in people if p.person}
            if who not in known:
                raise CliError(f"nobody called {who!r} in any chat; `convsim people` lists them")
            facts = _facts(ws).list(person=who, status=status, origin=args.origin)
        _show_facts(facts, args.json)
    return 0


@_fact_errors
def cmd_add(args: argparse.Namespace) -> int:
    with _workspace() as ws:
        _chat(ws, args.chat_id)
        people = [p.name for p in ws.store.participants(args.chat_id)]
        if args.person not in people:
            raise CliError(
                f"{args.person!r} is not in chat {args.chat_id}: expected one of "
                + ", ".join(people)
            )
        fact, outcome = _facts(ws).add(
            args.person, args.key, args.value, chat_id=args.chat_id, origin="user"
        )
        if args.json:
            print_json({"outcome": outcome, "fact": fact.to_json()})
        else:
            print(OUTCOMES[outcome])
            _show_facts([fact], False)
    return 0


@_fact_errors
def cmd_change(args: argparse.Namespace) -> int:
    with _workspace() as ws:
        facts = _facts(ws)
        if args.action == "edit":
            if args.key is None and args.value is None:
                raise CliError("give --key and/or --value to change")
            fact = facts.edit(args.fact_id, value=args.value, key=args.key)
        elif args.action in ("pin", "unpin"):
            fact = facts.pin(args.fact_id, pinned=args.action == "pin")
        else:
            fact = facts.remove(args.fact_id)
        _show_facts([fact], args.json)
    return 0


@_fact_errors
def cmd_history(args: argparse.Namespace) -> int:
    with _workspace() as ws:
        facts = _facts(ws)
        fact = facts.get(args.fact_id)
        events = facts.history(args.fact_id)
        if args.json:
            print_json({"fact": fact.to_json(), "events": [e.__dict__ for e in events]})
            return 0
        _show_facts([fact], False)
        for e in events:
            print(f"  {e.at}  {e.action:<11} {e.detail}")
    return 0


@_fact_errors
def cmd_conflicts(args: argparse.Namespace) -> int:
    with _workspace() as ws:
        _chat(ws, args.chat_id)
        pairs = _facts(ws).conflicts(args.chat_id, unresolved=not args.all)
        if args.json:
            print_json(
                [
                    {
                        "old": c.old.to_json(),
                        "new": c.new.to_json(),
                        "at": c.at,
                        "resolution": c.resolution,
                    }
                    for c in pairs
                ]
            )
            return 0
        if not pairs:
            print("No contradictions waiting.")
        for c in pairs:
            print(f"{c.old.person}: {c.old.key}: was {c.old.value!r} ({c.old.last_seen[:10]}),"
                  f" now {c.new.value!r} ({c.new.last_seen[:10]})"
                  f"  -> convsim memory resolve {c.old.id} {c.new.id} old|new|both"
                  + (f"  [{c.resolution}]" if c.resolution else ""))  # fmt: skip
    return 0


@_fact_errors
def cmd_resolve(args: argparse.Namespace) -> int:
    with _workspace() as ws:
        old, new = _facts(ws).resolve(args.old_id, args.new_id, args.choice)
        _show_facts([old, new], args.json)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("memory", help="facts about each person, and search over their messages")
    mem = p.add_subparsers(dest="memory_command", metavar="COMMAND", required=True)

    q = mem.add_parser("search", help="search a chat's messages and facts")
    q.add_argument("chat_id", type=int, metavar="CHAT_ID")
    q.add_argument("query", nargs="?", metavar="QUERY")
    q.add_argument("--queries", metavar="FILE", help="many queries, one per line")
    q.add_argument("--k", type=int, default=10, help="hits per query (default 10)")
    q.add_argument(
        "--mode", choices=("hybrid", "keyword", "embedding"), default="hybrid",
        help="hybrid (default): words and meaning; keyword: words only; embedding: meaning only",
    )  # fmt: skip
    q.add_argument("--json", action="store_true", help="one JSON object per query, per line")
    q.set_defaults(func=cmd_search)

    q = mem.add_parser("list", help="the facts of a chat (CHAT_ID) or of a person (NAME)")
    q.add_argument("target", metavar="CHAT_ID|PERSON")
    q.add_argument(
        "--status", choices=STATUS_CHOICES, help="only this status (default: not removed)"
    )
    q.add_argument("--origin", choices=ORIGIN_CHOICES, help="only facts from here")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)

    q = mem.add_parser("add", help="add a fact yourself")
    q.add_argument("chat_id", type=int, metavar="CHAT_ID")
    q.add_argument("person", metavar="PERSON")
    q.add_argument("key", metavar="KEY", help="what it is about: job, lives in, sister...")
    q.add_argument("value", metavar="VALUE")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_add)

    q = mem.add_parser("edit", help="change a fact's key or value")
    q.add_argument("fact_id", type=int, metavar="FACT_ID")
    q.add_argument("--key")
    q.add_argument("--value")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_change, action="edit")
    for name, text in (
        ("pin", "always give this fact to the persona; nothing overrides it"),
        ("unpin", "make a pinned fact ordinary again"),
        ("remove", "mark a fact wrong (kept in the history, never used)"),
    ):
        q = mem.add_parser(name, help=text)
        q.add_argument("fact_id", type=int, metavar="FACT_ID")
        q.add_argument("--json", action="store_true")
        q.set_defaults(func=cmd_change, action=name)

    q = mem.add_parser("history", help="every change to a fact")
    q.add_argument("fact_id", type=int, metavar="FACT_ID")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_history)

    q = mem.add_parser("conflicts", help="facts that changed or contradict each other")
    q.add_argument("chat_id", type=int, metavar="CHAT_ID")
    q.add_argument("--all", action="store_true", help="resolved ones too")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_conflicts)

    q = mem.add_parser("resolve", help="settle a conflict: old, new or both true")
    q.add_argument("old_id", type=int, metavar="OLD_ID")
    q.add_argument("new_id", type=int, metavar="NEW_ID")
    q.add_argument("choice", choices=("old", "new", "both"))
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_resolve)

    memory_build.add_commands(mem)
