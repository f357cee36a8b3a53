"""`convsim forget chat CHAT_ID` and `convsim forget person NAME`: remove messages and everything
derived from them (datasets, models and their exports, transcripts, store backups), erased from
the database file too. The plan comes from `Workspace.forget_plan`; this module shows it, asks,
and carries it out."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from convsim.tui.cli.common import CliError, print_json
from convsim.tui.cli.common import workspace as _workspace


def cmd_forget(args: argparse.Namespace) -> int:
    from convsim.core.workspace import TrainingRunning, refuse_training

    with _workspace() as ws:
        try:
            if args.what == "chat":
                plan = ws.forget_plan(chat_id=args.target)
            else:
                plan = ws.forget_plan(person=args.target)
        except KeyError as e:
            hint = "`convsim chats` lists them" if args.what == "chat" else "`convsim people`"
            raise CliError(f"{e.args[0]}; {hint}") from None
        if args.dry_run:
            _show(plan, args.json, done=False)
            return 0
        try:
            refuse_training(plan.models)  # say so before asking (`forget` checks again)
            if not args.yes:
                _confirm(plan)
            erased = ws.forget(plan)
        except TrainingRunning as e:
            raise CliError(f"{e}; nothing was removed") from None
    _show(plan, args.json, done=True, erased=erased)
    return 0


def _confirm(plan: Any) -> None:
    """Ask in a terminal; anywhere else, --yes is the only way to say yes."""
    if not sys.stdin.isatty():
        raise CliError(
            f"forgetting {plan.subject} removes {len(plan.lines())} things (see --dry-run); "
            "pass --yes to confirm"
        )
    print("This removes, for good:", file=sys.stderr)
    for line in plan.lines():
        print(f"  {line}", file=sys.stderr)
    try:
        answer = input("Type 'forget' to confirm: ")
    except EOFError:  # Ctrl-D
        answer = ""
    if answer.strip().lower() != "forget":
        raise CliError("nothing was removed")


def _show(plan: Any, as_json: bool, done: bool, erased: bool = True) -> None:
    if as_json:
        print_json({**plan.to_json(), "forgotten": done, "erased": done and erased})
        return
    print(("Forgot " if done else "Would forget ") + plan.subject + ":")
    for line in plan.lines():
        print(f"  {line}")
    if done and not erased:
        print(
            "  note: another convsim was reading the store; the deleted rows leave the database "
            "file's journal the next time it is closed"
        )


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "forget", help="remove a chat or a person and everything made from their messages"
    )
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, kind, help_text in (
        ("chat", int, "a chat, with its datasets, models, exports and transcripts"),
        ("person", str, "one person's messages in every chat, and everything made from them"),
    ):
        q = what.add_parser(name, help=help_text)
        q.add_argument("target", type=kind, metavar="CHAT_ID" if name == "chat" else "NAME")
        q.add_argument("--yes", action="store_true", help="don't ask (scripts)")
        q.add_argument("--dry-run", action="store_true", help="only list what would go")
        q.add_argument("--json", action="store_true", help="one JSON object: what went")
        q.set_defaults(func=cmd_forget)
