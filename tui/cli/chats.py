"""Command-line commands for chats and their data: import, chats, messages, people, dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from convsim.tui.cli.common import CliError, record_json
from convsim.tui.cli.common import print_json as _print_json
from convsim.tui.cli.common import workspace as _workspace


def _parse_columns(spec: str | None) -> dict[str, str]:
    if not spec:
        return {}
    out = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("timestamp", "sender", "text", "kind"):
            raise CliError(
                f"--columns: {part!r} is not FIELD=COLUMN with FIELD one of "
                "timestamp, sender, text, kind"
            )
        out[key.strip()] = value.strip()
    return out


WHICH_ORDER = "every date could be day/month or month/day"


def _ask_date_order(path: Path) -> str | None:
    if not sys.stdin.isatty():
        return None
    print(f"{path}: {WHICH_ORDER}.", file=sys.stderr)
    answer = input("Is the first number the day (d) or the month (m)? [d/m] ").strip().lower()
    return {"d": "dmy", "m": "mdy"}.get(answer[:1])


def cmd_import(args: argparse.Namespace) -> int:
    from convsim.core.workspace import SAMPLE_CHAT, AmbiguousDateOrder, ImportOptions

    path = SAMPLE_CHAT if args.sample else Path(args.path)
    options = ImportOptions(date_order=args.date_order, columns=_parse_columns(args.columns))
    # A script asking for JSON can't answer a question: the locale's order, with a warning.
    options.locale_fallback = bool(args.json)
    if args.me:
        options.me_name = args.me
    shown: list[float] = []  # the shares shown, so the line is ended only if one was

    def show(done: float, messages: int) -> None:
        shown.append(done)
        print(
            f"\r  storing… {done:4.0%}  {messages:,} messages", end="", file=sys.stderr, flush=True
        )

    progress = show if sys.stderr.isatty() and not args.json else None
    with _workspace() as ws:
        try:
            reports = ws.import_export(path, args.format, options, progress)
        except AmbiguousDateOrder as e:
            order = _ask_date_order(path)
            if order is None:
                raise CliError(f"{e.path}: {WHICH_ORDER}; pass --date-order dmy or mdy") from None
            options.date_order = order
            reports = ws.import_export(path, args.format, options, progress)
    if shown:
        print(file=sys.stderr)
    for report in reports:
        if args.json:
            _print_json(report.to_json())
        else:
            print_import(report)
    return 0


def print_import(r: Any) -> None:
    print(f"Imported {r.title!r} ({r.format}) as chat {r.chat_id}")
    system = r.kinds.get("system", 0)
    notices = f" and {system} system notice{'s' * (system != 1)}" if system else ""
    print(f"  {r.messages} messages{notices}, {r.new} new in the store, {r.first} → {r.last}")
    for p in r.participants:
        print(f"  {p['name']}: {p['messages']} messages")
    print("  kinds: " + ", ".join(f"{k} {n}" for k, n in r.kinds.items()))
    for warning in r.warnings:
        print(f"  warning: {warning}")
    if r.skipped:
        print(f"  skipped {len(r.skipped)}:")
        for s in r.skipped[:10]:
            print(f"    {s['position']}: {s['reason']}")
        if len(r.skipped) > 10:
            print(f"    … and {len(r.skipped) - 10} more (see --json)")


# -- reading ---------------------------------------------------------------------------------


def cmd_chats(args: argparse.Namespace) -> int:
    with _workspace() as ws:
        chats = ws.store.chats()
    if args.json:
        for c in chats:
            _print_json(record_json(c, {"id": "chat_id"}))
        return 0
    if not chats:
        print("No chats yet. Import one: convsim import PATH  (or try: convsim quickstart)")
    for c in chats:
        who = ", ".join(c.participants)
        print(f"{c.id:>4}  {c.title}  [{c.format}]  {c.messages} messages  {c.first} → {c.last}")
        print(f"      {who}")
    return 0


def _chat_id(ws: Any, chat_id: int) -> int:
    if not ws.store.has_chat(chat_id):
        raise CliError(f"no chat with id {chat_id}; `convsim chats` lists them")
    return chat_id


def cmd_messages(args: argparse.Namespace) -> int:
    with _workspace() as ws:
        messages = ws.store.messages(_chat_id(ws, args.chat_id))
    for m in messages:
        if args.json:
            _print_json(record_json(m))
        else:
            who = m.sender if m.sender is not None else "*"
            print(f"{m.timestamp}  {who}: {m.text}")
    return 0


def cmd_people(args: argparse.Namespace) -> int:
    with _workspace() as ws:
        if args.action == "merge":
            members = []
            for spec in args.members:
                chat, sep, name = spec.partition(":")
                if not sep or not chat.isdigit():
                    raise CliError(f"{spec!r}: expected CHAT_ID:NAME, e.g. 3:Riya")
                members.append((int(chat), name))
            try:
                ws.store.merge(args.person, members)
            except KeyError as e:
                raise CliError(str(e.args[0])) from None
        elif args.action == "me":
            try:
                ws.store.set_me(_chat_id(ws, args.chat_id), args.name)
            except KeyError as e:
                raise CliError(str(e.args[0])) from None
        people = ws.store.participants()
    for p in people:
        if args.json:
            _print_json(record_json(p, {"is_me": "me"}, omit=("id",)))
        else:
            extra = (f"  → {p.person}" if p.person else "") + ("  (me)" if p.is_me else "")
            print(f"{p.chat_id:>4}  {p.name}  {p.messages} messages{extra}")
    return 0


# -- datasets --------------------------------------------------------------------------------


def _dataset_config(args: argparse.Namespace) -> Any:
    from convsim.core.data.dataset import DatasetConfig

    tags = {}
    for spec in args.tag or []:
        name, sep, tag = spec.partition("=")
        if not sep or not name.strip() or not tag.strip():
            raise CliError(f"--tag {spec!r}: expected NAME=TAG, e.g. 'Sam Jones=Sam'")
        tags[name] = tag.strip()
    try:
        return DatasetConfig(
            target=args.target,
            tags=tags,
            session_gap_minutes=args.gap,
            max_context=args.context,
            media=args.media,
            system=args.system,
            scrub=args.scrub,
            validation_fraction=args.validation,
            seed=args.seed,
        )
    except ValueError as e:  # a setting out of its range, a tag that cannot be one
        message = str(e)
        for field, flag in _FLAGS.items():
            message = message.replace(field, flag)
        raise CliError(message) from None


# DatasetConfig's fields as `convsim dataset` names them, for its errors.
_FLAGS = {"session_gap_minutes": "--gap", "max_context": "--context",
          "validation_fraction": "--validation"}  # fmt: skip


def cmd_dataset(args: argparse.Namespace) -> int:
    config = _dataset_config(args)
    with _workspace() as ws:
        try:
            record = ws.build_dataset(_chat_id(ws, args.chat_id), config)
        except ValueError as e:
            raise CliError(str(e)) from None
    if args.json:
        _print_json(
            {
                "dataset_id": record.id,
                "chat_id": record.chat_id,
                "target": record.target,
                "path": str(record.path),
                "stats": record.stats,
                "samples": record.samples,
            }
        )
    else:
        print_dataset(record)
    return 0


def print_dataset(record: Any) -> None:
    s = record.stats
    print(f"Dataset {record.id} for {record.target!r} from chat {record.chat_id}: {record.path}")
    print("  " + ", ".join(f"{k}: {v}" for k, v in s.items() if not isinstance(v, dict)))
    for sample in record.samples[:2]:
        print("  ── sample ──")
        for line in sample.rstrip("\n").splitlines():
            print(f"  {line}")


# -- quickstart ------------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    from convsim.core.chats.importers import FORMATS

    p = sub.add_parser("import", help="import a chat export (file, folder or zip)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("path", nargs="?", help="the export: a file, a folder or a zip")
    what.add_argument(
        "--sample", action="store_true", help="the sample chat that ships with convsim, to try it"
    )
    p.add_argument("--format", choices=FORMATS, help="skip auto-detection")
    p.add_argument("--date-order", choices=("dmy", "mdy"), help="WhatsApp day/month order")
    p.add_argument("--columns", help="generic CSV/JSONL: timestamp=COL,sender=COL,text=COL")
    p.add_argument("--me", help="your name, for formats that only say 'me' (iMessage, SMS)")
    p.add_argument("--json", action="store_true", help="one JSON object per imported chat")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("chats", help="list imported chats")
    p.add_argument("--json", action="store_true", help="JSON Lines, one chat per line")
    p.set_defaults(func=cmd_chats)

    p = sub.add_parser("messages", help="print a chat's messages, oldest first")
    p.add_argument("chat_id", type=int)
    p.add_argument("--json", action="store_true", help="JSON Lines, one message per line")
    p.set_defaults(func=cmd_messages)

    p = sub.add_parser("people", help="list participants; merge them into people; mark yourself")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_people, action=None)
    people = p.add_subparsers(dest="action", metavar="ACTION")
    q = people.add_parser("merge", help="make participants of several chats one person")
    q.add_argument("person", help="the person's name")
    q.add_argument("members", nargs="+", metavar="CHAT_ID:NAME")
    q.add_argument("--json", action="store_true")
    q = people.add_parser("me", help="mark which participant of a chat is you")
    q.add_argument("chat_id", type=int)
    q.add_argument("name")
    q.add_argument("--json", action="store_true")

    p = sub.add_parser("dataset", help="build a training dataset for one person of a chat")
    p.add_argument("chat_id", type=int)
    p.add_argument("--as", dest="target", required=True, help="participant to learn")
    p.add_argument("--tag", action="append", metavar="NAME=TAG", help="rename a speaker tag")
    p.add_argument("--gap", type=float, default=240, help="minutes of silence between sessions")
    p.add_argument("--context", type=int, default=16, help="max preceding messages per example")
    p.add_argument("--media", choices=("placeholder", "drop"), default="placeholder")
    p.add_argument("--system", choices=("drop", "placeholder"), default="drop")
    p.add_argument("--scrub", action="store_true", help="mask phones, e-mails, URLs, cards")
    p.add_argument(
        "--validation", type=float, default=0.1, help="share of latest sessions held out"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dataset)
