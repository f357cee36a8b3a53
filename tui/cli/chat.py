"""Command-line commands that talk with a persona: simulate, complete, chat."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from convsim.core.data.turns import is_name, render_turn, safe_name, tag
from convsim.core.inference.sampling import MOST, sampling_problem
from convsim.tui.cli.common import CliError, ctrl_c_sets, print_json, workspace
from convsim.tui.cli.steer import add_steer_option, apply_steer, base_record

# The `Sampling` fields a command line may set (`--top-k` ...); unset, each is the default.
SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty")
# The smallest --ctx: the memory head (up to 160 tokens) must stay under half of it, with room
# left for the conversation.
MIN_CTX = 512


def read_transcript(path: Path | None) -> list[tuple[str, str]]:
    """Turns from a file of `[Name] text` lines, or of JSON Lines {"speaker", "text"}."""
    from convsim.core.data import transcripts

    if path is None:
        return []
    try:
        return transcripts.load(path)
    except transcripts.TranscriptError as e:
        raise CliError(str(e)) from None


def _sampling(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from convsim.core.inference.sampling import Sampling

    s = Sampling(seed=args.seed, max_tokens=args.max_tokens, best_of=args.best_of)
    chosen = {n: getattr(args, n) for n in SAMPLING_FLAGS if getattr(args, n) is not None}
    for name, value in chosen.items():
        if problem := sampling_problem(name, value):
            raise CliError(f"--{name.replace('_', '-')} {problem}")
    return replace(s, **chosen)


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    """The model's Engine (base + its adapter) and its store record (`base`: the plain
    default base, as "Friend")."""
    target = getattr(args, "target", None)
    if target is not None and not is_name(target):
        raise CliError(f"--as {target!r}: expected a name on one line")
    if args.seed == -1:  # llama.cpp's word for a random seed
        args.seed = None
    if args.seed is not None and sampling_problem("seed", args.seed):
        raise CliError(f"--seed must be from 0 to {MOST['seed']} (or -1: random), not {args.seed}")
    for flag in ("best_of", "max_tokens"):
        value = getattr(args, flag, None)
        if value is not None and (problem := sampling_problem(flag, value)):
            raise CliError(f"--{flag.replace('_', '-')} {problem}")
    for flag, least in (("turns", 1), ("ctx", MIN_CTX)):
        value = getattr(args, flag, None)
        if value is not None and value < least:
            raise CliError(f"--{flag} must be {least} or more, not {value}")
    from convsim.core import training
    from convsim.core.data.style import Profile
    from convsim.core.evaluation.heldout import trained_texts
    from convsim.core.inference.engine import Engine
    from convsim.core.steering.build import BASE_ID
    from convsim.tui.cli.models import explain

    with workspace() as ws:
        try:
            texts: list[str] = []
            if args.model_id == BASE_ID:
                record, adapters, tags = base_record(ws), [], {}
            else:
                record = ws.store.model(args.model_id)
                adapters = [(training.adapter_gguf(ws, args.model_id), 1.0)]
                tags = training.speaker_tags(ws, record)
                if args.best_of > 1:
                    texts = trained_texts(ws, args.model_id)
        except (KeyError, ValueError) as e:
            raise CliError(explain(e)) from None
    try:
        engine = Engine(
            Path(record.base),
            adapters,
            n_ctx=args.ctx,
            threads=args.threads,
            gpu_layers=args.gpu_layers,
        )
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from None
    engine.set_tags(tags)
    if texts:
        engine.set_style(record.person, Profile.of(texts))
    apply_steer(engine, record, args.steer)
    return engine, record


def _recall(args: argparse.Namespace, ws: Any, engine: Any, record: Any) -> Any:
    """What the persona remembers of its chat's people (`--memory off`: nothing), read from
    `ws`'s store while it stays open. None when there are no facts: no head at all then."""
    if args.memory == "off" or record.chat_id is None:
        return None
    from convsim.core.memory import Facts, optional_embedder
    from convsim.core.memory.recall import Recall

    if not Facts(ws.store).list(chat_id=record.chat_id, status=("active", "pinned")):
        return None
    count = lambda text: len(engine.tokens(text))  # noqa: E731
    return Recall(ws.store, record.chat_id, count, embedder=optional_embedder())


def _remember(recall: Any, engine: Any, turns: list[tuple[str, str]]) -> list[Any]:
    """Put the facts for the next reply in the engine's head; the facts used."""
    return [] if recall is None else list(recall.apply(engine, turns))


def _partner(record: Any, speaker: str, transcript: list[tuple[str, str]]) -> str:
    """Who `speaker` talks with: the last other voice in the transcript, else the other
    participant of the model's chat, else "You"."""
    for who, _ in reversed(transcript):
        if who != speaker:
            return who
    if record.chat_id is not None:
        with workspace() as ws:
            names = [p.name for p in ws.store.participants(record.chat_id)]
        for name in names:
            if name != speaker:
                return name
    return "You"


def cmd_simulate(args: argparse.Namespace) -> int:
    transcript = read_transcript(Path(args.transcript) if args.transcript else None)
    engine, record = _open(args)
    speaker = args.target or record.person
    # `speaker` answers first, unless the transcript already ends with their message; their
    # partner's turns come from the same model, so the two alternate for --turns messages.
    order = [speaker, _partner(record, speaker, transcript)]
    if transcript and transcript[-1][0] == speaker:
        order.reverse()
    with workspace() as ws:
        facts = _remember(_recall(args, ws, engine, record), engine, transcript)
    used = [f.id for f in facts]
    for speaker, text in engine.forever(transcript, order, _sampling(args), args.turns):
        if args.json:
            print_json({"speaker": speaker, "text": text, "memories": used})
        else:
            print(render_turn(safe_name(speaker), text), end="", flush=True)
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    transcript = read_transcript(Path(args.transcript) if args.transcript else None)
    engine, record = _open(args)
    with workspace() as ws:
        _remember(_recall(args, ws, engine, record), engine, transcript)
    stream = engine.autocomplete(transcript, args.target, args.partial, _sampling(args))
    if args.json:
        completion = "".join(stream)
        print_json({"speaker": args.target, "partial": args.partial, "completion": completion})
        return 0
    for piece in stream:
        print(piece, end="", flush=True)
    print()
    return 0


CANCELLED = "[reply cancelled]"

CHAT_HELP = """\
Type a message and press Enter; the persona's reply streams after it.
Ctrl-C while a reply streams cancels that reply: the part shown so far is marked
[reply cancelled] and left out of the conversation, so the model does not see it later.
/quit, Ctrl-D (end of input) or Ctrl-C at the prompt leaves (exit status 0, 0 and 130)."""


def _read_line(prompt: str | None) -> str | None:
    """One line from stdin (prompting on stderr when given a prompt); None at end of input."""
    if prompt is not None:
        print(prompt, end="", flush=True, file=sys.stderr)
    line = sys.stdin.readline()
    return line if line else None


def _stream_reply(
    engine: Any, transcript: list[tuple[str, str]], person: str, sampling: Any
) -> str | None:
    """Stream `person`'s reply to stdout; the reply, or None when Ctrl-C cancelled it.

    The engine checks the cancel event between tokens, so the reply stops at once; during the
    prompt evaluation (one llama.cpp call) it stops when that call returns.
    """
    cancel = threading.Event()
    shown: list[str] = []
    print(f"{tag(safe_name(person))} ", end="", flush=True)
    with ctrl_c_sets(cancel):
        stream = engine.simulate(transcript, person, sampling, cancel)
        for piece in stream:
            # Once cancelled, the engine still hands over the text it held back (a trailing
            # word): the user asked to stop, so it is not shown.
            if not cancel.is_set():
                shown.append(piece)
                print(piece, end="", flush=True)
    if stream.result().cancelled:
        print(f" {CANCELLED}" if shown else CANCELLED, flush=True)
        return None
    print(flush=True)
    # The reply as the conversation keeps it: a word cut by the length cap may have shown.
    return stream.result().text


def cmd_chat(args: argparse.Namespace) -> int:
    from convsim.core.inference import best_of

    engine, record = _open(args)
    if engine.styles:  # --best-of on a persona: take up the tally of its earlier chats
        best_of.remember(engine, Path(record.path))
    interactive = sys.stdin.isatty()
    if interactive:
        print(
            f"Chatting with {record.person} as {args.target}. "
            "Ctrl-C stops a reply; /quit, Ctrl-D or Ctrl-C at the prompt leaves.",
            file=sys.stderr,
        )
    with workspace() as ws:
        return _chat_loop(args, engine, record.person, _recall(args, ws, engine, record))


def _chat_loop(args: argparse.Namespace, engine: Any, person: str, recall: Any) -> int:
    transcript: list[tuple[str, str]] = []
    sampling = _sampling(args)
    interactive = sys.stdin.isatty()
    shown: list[int] = []
    while True:
        try:
            line = _read_line(f"{tag(safe_name(args.target))} " if interactive else None)
        except KeyboardInterrupt:
            print(file=sys.stderr)  # end the prompt's line before the shell's
            return 130
        if line is None or line.strip() == "/quit":
            return 0
        text = line.strip()
        if not text:
            continue
        transcript.append((args.target, text))
        facts = _remember(recall, engine, transcript)
        if interactive and [f.id for f in facts] != shown:
            shown = [f.id for f in facts]
            remembered = "; ".join(f"{f.person}, {f.key}: {f.value}" for f in facts)
            print(f"  (remembering: {remembered or 'nothing'})", file=sys.stderr)
        reply = _stream_reply(engine, transcript, person, sampling)
        if reply is not None:
            transcript.append((person, reply))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_id")
    p.add_argument("--seed", type=int, help="sampling seed (default: random)")
    p.add_argument(
        "--temperature", type=float,
        help="0 = greedy; lower = plainer, higher = more varied (default: convsim's, 1.0)",
    )  # fmt: skip
    for flag, kind, what in (
        ("--top-k", int, "keep the K likeliest words (default 0: all)"),
        ("--top-p", float, "keep the likeliest words making up P of the chance (default 1: all)"),
        ("--min-p", float, "drop words under P times the likeliest one's chance (default 0)"),
        ("--repeat-penalty", float, "above 1: fewer repeated words in a message (default 1: off)"),
    ):
        p.add_argument(flag, type=kind, help=what)
    p.add_argument("--max-tokens", type=int, default=64, help="length cap of one message")
    p.add_argument(
        "--best-of", type=int, default=1, metavar="N",
        help="sample N replies and keep the one that fits best (default 1; slower)",
    )  # fmt: skip
    p.add_argument("--ctx", type=int, default=2048, help="context size in tokens")
    p.add_argument("--threads", type=int, help="CPU threads (default: this machine's cores)")
    p.add_argument(
        "--gpu-layers", type=int, help="layers on the GPU (default: all when llama.cpp can)"
    )
    p.add_argument(
        "--memory", choices=("on", "off"), default="on",
        help="give the persona the facts `convsim memory` holds about its chat (default on)",
    )  # fmt: skip
    add_steer_option(p)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("simulate", help="continue a conversation: generate the next messages")
    _common(p)
    p.add_argument(
        "--as", dest="target", help="whose messages to generate (default: the model's person)"
    )
    p.add_argument("--transcript", help="file of '[Name] text' lines or JSONL speaker/text")
    p.add_argument("--turns", type=int, default=4, help="messages to generate (default 4)")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("complete", help="autocomplete a half-typed message")
    _common(p)
    p.add_argument("--as", dest="target", required=True, help="who is typing")
    p.add_argument("--partial", required=True, help="the text typed so far")
    p.add_argument("--transcript", help="file of '[Name] text' lines or JSONL speaker/text")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser(
        "chat",
        help="chat with a persona in the terminal (/quit to leave)",
        description=CHAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("--as", dest="target", default="You", help="your name in the chat")
    p.set_defaults(func=cmd_chat)
