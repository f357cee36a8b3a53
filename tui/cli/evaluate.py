"""`convsim eval`: the "is it really them?" suite of one persona."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from convsim.tui.cli.common import CliError, print_json, workspace

# (figure, what it says, better when) for the terminal table.
ROWS = [
    ("perplexity", "perplexity of their real replies", "lower"),
    ("hits_at_1_others", "Hits@1 vs other people (of 20)", "higher"),
    ("hits_at_1_same_person", "Hits@1 vs their other moments", "higher"),
    ("mrr_others", "MRR vs other people", "higher"),
    ("mrr_same_person", "MRR vs their other moments", "higher"),
    ("authorship", "authorship (0 others .. 1 them)", "higher"),
    ("detector_accuracy", "real-or-generated detector", "0.5"),
    ("first_message_s", "seconds to first token", "lower"),
]
HEADS = {"base": "base", "in_context": "prompted", "tuned": "tuned", "best_of_n": "best-of-N"}


class _Bar:
    """One progress line per stage on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.tty, self.stage = quiet, sys.stderr.isatty(), ""

    def __call__(self, e: Any) -> None:
        if self.quiet:
            return
        if e.stage != self.stage:
            if self.stage and self.tty:
                print(file=sys.stderr)
            self.stage = e.stage
        if self.tty:
            width = 24
            filled = int(width * e.done / max(1, e.total))
            bar = "█" * filled + "░" * (width - filled)
            print(f"\r{e.stage:<22} {bar} {e.done}/{e.total}", end="", file=sys.stderr)
        elif e.done == e.total:
            print(f"{e.stage}: {e.total} done", file=sys.stderr)


def _cell(value: Any, interval: Any) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    if interval and None not in interval:
        text += f" ({interval[0]:.2f}-{interval[1]:.2f})" if abs(value) < 100 else ""
    return text


def print_report(report: dict[str, Any], folder: Path) -> None:
    from convsim.core.evaluation import (
        forever_sentence,
        replies_of,
        style_interval,
        temperature_of,
        versus_in_context,
    )

    variants = [v for v in HEADS if v in report]
    print(
        f"Is it really {report['person']}? {report['model_id']} on {report['items']} held-out "
        f"moments{' (quick)' if report['quick'] else ''}, {replies_of(report)}, temperature "
        f"{temperature_of(report)}, {report['seconds']:.0f} s; 95% intervals in brackets"
    )
    width = 24
    print(f"  {'':<34}" + "".join(f"{HEADS[v]:>{width}}" for v in variants))
    for name, label, _ in ROWS:
        cells = [
            _cell(report[v].get(name), report[v].get("intervals", {}).get(name)) for v in variants
        ]
        print(f"  {label:<34}" + "".join(f"{c:>{width}}" for c in cells))
    print("  style, KS to their real messages (0 = same, lower is better):")
    for feature in report[variants[0]]["style_ks"]:
        cells = [
            _cell(report[v]["style_ks"].get(feature), style_interval(report[v], feature))
            for v in variants
        ]
        print(f"    {feature:<32}" + "".join(f"{c:>{width}}" for c in cells))
    for line in versus_in_context(report):
        print(f"  {line}")
    if forever := forever_sentence(report):
        print(f"  {forever}")
    print(f"  Report: {folder / 'report.html'}   Figures: {folder / 'eval.json'}")


def _saved(folder: Path, model_id: str) -> dict[str, Any]:
    import json

    path = folder / "eval.json"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"{model_id} has no saved report yet: run convsim eval {model_id}") from None
    except json.JSONDecodeError as e:
        raise CliError(f"{path}: not a report ({e}); run convsim eval {model_id} again") from None
    if "tuned" not in report:
        raise CliError(f"{path} is from an older convsim: run convsim eval {model_id} again")
    return dict(report)


def cmd_eval(args: argparse.Namespace) -> int:
    from convsim.core.evaluation import suite
    from convsim.core.inference.sampling import MOST, sampling_problem
    from convsim.tui.cli.models import explain

    if args.best_of < 2:
        raise CliError(f"--best-of must be 2 or more, not {args.best_of}")
    if args.items is not None and args.items < 1:
        raise CliError(f"--items must be 1 or more, not {args.items}")
    if args.temperature is not None and args.temperature < 0:
        raise CliError(f"--temperature must be 0 or more, not {args.temperature}")
    if args.replies is not None and args.replies < 1:
        raise CliError(f"--replies must be 1 or more, not {args.replies}")
    if args.forever_turns is not None and args.forever_turns < 0:
        raise CliError(f"--forever-turns must be 0 or more, not {args.forever_turns}")
    if sampling_problem("seed", args.seed):
        raise CliError(f"--seed must be from 0 to {MOST['seed']}, not {args.seed}")
    with workspace() as ws:
        try:
            record = ws.store.model(args.model_id)
            if args.last:
                report = _saved(Path(record.path), args.model_id)
            else:
                report = suite.run(
                    ws, args.model_id, quick=args.quick, best_of=args.best_of, seed=args.seed,
                    temperature=args.temperature, threads=args.threads, items=args.items,
                    forever_turns=args.forever_turns, replies=args.replies,
                    progress=_Bar(args.json),
                )  # fmt: skip
        except (KeyError, ValueError, FileNotFoundError) as e:
            raise CliError(explain(e)) from None
    if not args.json and sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        print_json(report)
    else:
        print_report(report, Path(record.path))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="is it really them? ranking, style, authorship, detector, forever health",
    )
    p.add_argument("model_id")
    p.add_argument("--quick", action="store_true", help="fewer moments and a short forever run")
    p.add_argument("--best-of", type=int, default=4, help="candidates per best-of-N reply")
    p.add_argument("--items", type=int, help="held-out moments to measure (quick 24, full 80)")
    p.add_argument(
        "--replies", type=int,
        help="replies generated per moment and variant for style, authorship and the detector "
        "(quick 1, full 3)",
    )  # fmt: skip
    p.add_argument(
        "--forever-turns", type=int, help="turns of each forever conversation (0 = skip it)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--temperature", type=float,
        help="sampling temperature of every generated reply (default: the chat's, 1.0)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, help="CPU threads (default: this machine's cores)")
    p.add_argument("--last", action="store_true", help="show the saved report; run nothing")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=cmd_eval)
