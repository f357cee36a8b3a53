"""Command-line commands for learning: feedback, learn, and a persona's versions.

- `feedback add MODEL_ID --transcript FILE --reply TEXT (--good | --bad | --better TEXT)`
- `feedback import MODEL_ID FILE.jsonl`: one object per line, `transcript`, `reply` and
  `rating` 1, -1 or "better" (with `better`)
- `feedback list MODEL_ID [--json]`, `feedback remove MODEL_ID ID...`
- `feedback constitution MODEL_ID [--file FILE | --clear]`: the lines the judge goes by
- `learn MODEL_ID [--json] [--resume] [--no-replay] ...`: one update ("sleep")
- `models versions MODEL_ID [--json]`, `models rollback MODEL_ID VERSION [--json]`
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from convsim.core.files import read_text
from convsim.tui.cli.common import CliError, clip, ctrl_c_sets, print_json, workspace

COUNTS = {
    "feedback": "feedback items",
    "pairs": "preference pairs",
    "unpaired": "liked or disliked replies",
    "judged": "pairs the judge made",
    "new_messages": "new messages",
    "new_held_out": "new messages held out",
    "replay_pool": "earlier examples to replay",
}


def cmd_feedback_add(args: argparse.Namespace) -> int:
    from convsim.core.learning import Feedback, FeedbackError
    from convsim.tui.cli.chat import read_transcript

    transcript = read_transcript(Path(args.transcript) if args.transcript else None)
    kind = "good" if args.good else "bad" if args.bad else "better"
    with workspace() as ws:
        try:
            item = Feedback(ws.store).add(args.model_id, kind, transcript, args.reply,
                                          better=args.better, origin="cli")  # fmt: skip
        except FeedbackError as e:
            raise CliError(str(e)) from None
    if args.json:
        print_json(item.to_json())
    else:
        print(f"feedback {item.id}: {kind} on {args.model_id} version {item.version}")
    return 0


def cmd_feedback_import(args: argparse.Namespace) -> int:
    from convsim.core.learning import Feedback, FeedbackError

    with workspace() as ws:
        try:
            ids = Feedback(ws.store).import_jsonl(args.model_id, Path(args.file))
        except FeedbackError as e:
            raise CliError(str(e)) from None
    if args.json:
        print_json({"model_id": args.model_id, "added": len(ids), "ids": ids})
    else:
        print(f"{len(ids)} feedback items added to {args.model_id}")
    return 0


def cmd_feedback_list(args: argparse.Namespace) -> int:
    from convsim.core.learning import Feedback

    with workspace() as ws:
        _known(ws, args.model_id)
        items = Feedback(ws.store).items(args.model_id)
    if args.json:
        print_json([i.to_json() for i in items])
        return 0
    if not items:
        print(f"no feedback on {args.model_id} yet")
    for i in items:
        learnt = f"learnt in v{i.used_in}" if i.used_in else "new"
        text = f"{i.reply!r} -> {i.better!r}" if i.better else repr(i.reply)
        print(f"{i.id:>5}  {i.kind:<10} v{i.version}  {learnt:<14} {clip(text, 70)}")
    return 0


def cmd_feedback_remove(args: argparse.Namespace) -> int:
    from convsim.core.learning import Feedback, FeedbackError

    with workspace() as ws:
        _known(ws, args.model_id)
        try:
            n = Feedback(ws.store).remove(args.model_id, args.ids)
        except FeedbackError as e:
            raise CliError(str(e)) from None
    print(f"{n} feedback item{'s' * (n != 1)} removed")
    return 0


def cmd_constitution(args: argparse.Namespace) -> int:
    from convsim.core.learning import constitution, set_constitution

    with workspace() as ws:
        _known(ws, args.model_id)
        if args.clear or args.file:
            text = "" if args.clear else read_text(Path(args.file), CliError)
            try:
                set_constitution(ws, args.model_id, text)
            except ValueError as e:
                raise CliError(f"{args.file}: {e}") from None
        text = constitution(ws, args.model_id)
    print(text.rstrip() or f"{args.model_id} has no constitution (write one with --file FILE)")
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    from convsim.core.learning import LearnSettings, learn
    from convsim.core.learning.sleep import NothingToLearn
    from convsim.core.memory import EndpointError
    from convsim.tui.cli.models import Progress, explain

    overrides = {
        "replay": 0.0 if args.no_replay else args.replay,
        "replay_weight": args.replay_weight,
        "epochs": args.epochs,
        "learning_rate": args.lr,
        "new_messages": False if args.no_new_messages else None,
        "judge": True if args.judge else None,
        "max_perplexity_rise": args.max_perplexity_rise,
        "max_hits_drop": args.max_hits_drop,
        "slice_items": args.slice_items,
        "threads": args.threads,
        "seed": args.seed,
    }
    try:
        settings = LearnSettings().with_overrides(
            **{k: v for k, v in overrides.items() if v is not None}
        )
    except ValueError as e:
        raise CliError(str(e)) from None
    show = Progress(args.json)
    cancel = threading.Event()

    def event(e: Any) -> None:
        if e.train is not None:
            show(e.train)
        elif not args.json and e.message and e.done in (0, e.total):
            print(f"{e.stage}: {e.message}" + (f" ({e.total})" if e.total else ""),
                  file=sys.stderr)  # fmt: skip

    with workspace() as ws, ctrl_c_sets(cancel):
        try:
            out = learn(ws, args.model_id, settings=settings, resume=args.resume,
                        on_event=event, cancel=cancel, progress=show.base)  # fmt: skip
        except NothingToLearn as e:
            raise CliError(str(e)) from None
        except EndpointError as e:
            raise CliError(f"the judge: {e}") from None
        except (KeyError, ValueError, FileNotFoundError) as e:
            raise CliError(explain(e)) from None
    if args.json:
        print_json(out.to_json())
        return 0
    if out.status == "cancelled":
        print(f"stopped; continue with: convsim learn {args.model_id} --resume")
        return 0
    what = ", ".join(f"{n} {COUNTS.get(k, k)}" for k, n in out.counts.items() if n)
    print(f"{args.model_id} version {out.version}: learnt from {what} in {out.seconds:.0f} s")
    print_forgetting([row.to_json() for row in out.table])
    if out.promoted:
        print(f"promoted: version {out.version} is now in use ({out.reason})")
    else:
        print(f"not promoted: {out.reason}; version {out.current} stays in use.")
        print(f"  keep it anyway with: convsim models rollback {args.model_id} {out.version}")
    return 0


def print_forgetting(rows: list[dict[str, Any]]) -> None:
    """The forgetting table: each frozen slice before and after the update."""
    print(f"  {'held-out slice':<26}{'perplexity':>22}{'Hits@1':>18}")
    for r in rows:
        ppl = (f"{r['perplexity_before']:.1f} -> {r['perplexity_after']:.1f} "
               f"({r['perplexity_change']:+.1%})")  # fmt: skip
        hits = f"{r['hits_at_1_before']:.2f} -> {r['hits_at_1_after']:.2f}"
        print(f"  {r['slice']:<26}{ppl:>22}{hits:>18}  {'ok' if r['ok'] else 'WORSE'}")


def cmd_versions(args: argparse.Namespace) -> int:
    from convsim.core.training.versions import current, versions

    with workspace() as ws:
        _known(ws, args.model_id)
        every = versions(ws.store, args.model_id)
        now = current(ws.store, args.model_id).version
    if args.json:
        print_json([v.to_json(now) for v in every])
        return 0
    for v in every:
        mark = "*" if v.version == now else " "
        why = v.record.get("reason", "")
        print(
            f"{mark} v{v.version}  {v.created}  {v.status:<9} {'kept' if v.kept else '':<5} {why}"
        )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from convsim.core.training.versions import use_version, versions

    with workspace() as ws:
        _known(ws, args.model_id)
        try:
            now = use_version(ws.store, args.model_id, args.version)
        except ValueError as e:
            raise CliError(str(e)) from None
        every = versions(ws.store, args.model_id)
    if args.json:
        print_json({"model_id": args.model_id, "current": now.version,
                    "versions": [v.to_json(now.version) for v in every]})  # fmt: skip
    else:
        print(f"{args.model_id} now uses version {now.version}")
    return 0


def _known(ws: Any, model_id: str) -> None:
    try:
        ws.store.model(model_id)
    except KeyError:
        raise CliError(f"no model {model_id!r} (see convsim models)") from None


def add_commands(sub: Any) -> None:
    p = sub.add_parser("feedback", help="feedback on a persona's messages, for it to learn")
    fsub = p.add_subparsers(dest="feedback_command", required=True)
    a = fsub.add_parser("add", help="what you think of one message")
    a.add_argument("model_id")
    a.add_argument("--transcript", metavar="FILE", help="the conversation before the message")
    a.add_argument("--reply", required=True, help="the persona's message")
    kind = a.add_mutually_exclusive_group(required=True)
    kind.add_argument("--good", action="store_true", help="they would say that")
    kind.add_argument("--bad", action="store_true", help="they would never say that")
    kind.add_argument("--better", metavar="TEXT", help="what they would have said")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_feedback_add)
    i = fsub.add_parser("import", help="feedback from a JSON Lines file")
    i.add_argument("model_id")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_feedback_import)
    ls = fsub.add_parser("list", help="the feedback given so far")
    ls.add_argument("model_id")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_feedback_list)
    rm = fsub.add_parser("remove", help="delete feedback items")
    rm.add_argument("model_id")
    rm.add_argument("ids", type=int, nargs="+")
    rm.set_defaults(func=cmd_feedback_remove)
    c = fsub.add_parser("constitution", help="a few lines about the person, for the judge")
    c.add_argument("model_id")
    given = c.add_mutually_exclusive_group()
    given.add_argument("--file", help="a text file with the lines")
    given.add_argument("--clear", action="store_true")
    c.set_defaults(func=cmd_constitution)

    p = sub.add_parser("learn", help="update a persona from feedback and new messages (sleep)")
    p.add_argument("model_id")
    p.add_argument("--resume", action="store_true", help="continue a stopped update")
    p.add_argument("--no-replay", action="store_true", help="learn without replaying the past")
    p.add_argument("--replay", type=float, help="share of each batch replayed (default 0.4)")
    p.add_argument("--replay-weight", type=float,
                   help="a replay token's weight beside a new one (default 4)")  # fmt: skip
    p.add_argument("--no-new-messages", action="store_true", help="learn feedback only")
    p.add_argument("--judge", action="store_true", help="pairs from the endpoint's judgement")
    p.add_argument("--epochs", type=float, help="passes over the new material (default 1)")
    p.add_argument("--lr", type=float, help="learning rate (default: the first training's)")
    p.add_argument("--max-perplexity-rise", type=float, help="promotion limit (default 0.03)")
    p.add_argument("--max-hits-drop", type=float, help="promotion limit (default 0.02)")
    p.add_argument("--slice-items", type=int, help="held-out moments per slice (default 16)")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=cmd_learn)


def add_version_commands(models: argparse.ArgumentParser) -> None:
    """`models versions` and `models rollback`, under the `models` command."""
    vsub = models.add_subparsers(dest="models_command")
    # `--json` before the subcommand (`models --json versions X`) counts as well as after it.
    v = vsub.add_parser("versions", help="a persona's versions; * marks the one in use")
    v.add_argument("model_id")
    v.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    v.set_defaults(func=cmd_versions)
    r = vsub.add_parser("rollback", help="use an earlier version (or keep an unpromoted one)")
    r.add_argument("model_id")
    r.add_argument("version", type=int)
    r.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    r.set_defaults(func=cmd_rollback)
