"""`convsim memory build|endpoint|key`: extracting facts from a chat, and where extraction runs.

- `memory build CHAT_ID [--extractor local|endpoint] [--model GGUF] [--method spans|json]
  [--json]`: facts from the chat's messages not read yet (a re-import adds only new ones). A
  local GGUF reads message by message ("spans", the default on the default base) or writes each
  window's facts as JSON ("json", the default with `--model`, for instruct models). Ctrl-C
  stops after the window in progress; what was read is kept and the next run goes on from
  there. `--json` prints the report: {"chat_id", "extractor", "messages", "windows", "added",
  "seen", "superseded", "contradicted", "rejected": {reason: n}, "unparsed", "truncated",
  "seconds", "stopped", "extracted_upto"}.
- `memory endpoint [URL --model NAME]`: show or set the OpenAI-compatible server that
  `--extractor endpoint` uses; `memory key set|clear`: its API key, kept only in the system
  keyring (read from the terminal without echo, or from standard input).
"""

from __future__ import annotations

import argparse
import getpass
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from convsim.tui.cli.common import CliError, print_json
from convsim.tui.cli.common import workspace as _workspace

# What to do next, by the kind of endpoint failure (`EndpointError.kind`).
HINTS = {
    "auth": "; store the key with `convsim memory key set`",
    "config": "; set one with `convsim memory endpoint URL --model NAME`",
    "unreachable": " (`convsim memory endpoint` shows the URL in use)",
}


def _extractor(args: argparse.Namespace, ws: Any) -> Any:
    from convsim.core.memory.endpoint import EndpointExtractor, KeyringUnavailable
    from convsim.core.memory.extract import ExtractError
    from convsim.core.memory.spans import local_extractor

    if args.extractor == "endpoint":
        try:
            return EndpointExtractor.from_settings(ws.store)
        except (ExtractError, KeyringUnavailable) as e:
            raise CliError(str(e)) from None
    if args.model is not None:
        path = Path(args.model)
        if not path.is_file():
            raise CliError(f"{path}: no such GGUF file")
    else:
        from convsim.core.bases.prepare import default_base

        path = default_base(ws.locations)
    method = args.method or ("json" if args.model is not None else "spans")
    try:
        return local_extractor(path, method)
    except (ValueError, RuntimeError) as e:
        raise CliError(f"{path}: cannot load it for extraction ({e})") from None


def cmd_build(args: argparse.Namespace) -> int:
    from convsim.core.memory.extract import ExtractError, build_memory

    stop = threading.Event()
    with _workspace() as ws:
        if not ws.store.has_chat(args.chat_id):
            raise CliError(f"no chat with id {args.chat_id}; `convsim chats` lists them")
        extractor = _extractor(args, ws)
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            report = build_memory(ws.store, args.chat_id, extractor, _progress, stop)
        except ExtractError as e:
            hint = HINTS.get(getattr(e, "kind", ""), "")
            raise CliError(f"{e}{hint}") from None
        finally:
            signal.signal(signal.SIGINT, previous)
    if args.json:
        print_json(report.to_json())
        return 130 if report.stopped else 0
    rejected = sum(report.rejected.values())
    print(
        f"Chat {report.chat_id}: read {report.messages} messages in {report.seconds:.0f} s"
        f" ({report.extractor}): {report.added} facts added, {report.seen} seen again,"
        f" {report.superseded} replacing an older value, {report.contradicted} kept aside,"
        f" {rejected} rejected by the checks."
    )
    if report.superseded:
        print(f"Changed facts to look at: convsim memory conflicts {report.chat_id}")
    if report.stopped:
        print("Stopped: `convsim memory build` again goes on from here.")
        return 130
    return 0


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        end = "\n" if done >= total else ""
        print(f"\rreading messages for facts… {done}/{total}", end=end, file=sys.stderr)


def cmd_endpoint(args: argparse.Namespace) -> int:
    from convsim.core.memory.endpoint import endpoint_settings, save_endpoint

    with _workspace() as ws:
        if args.url is not None:
            try:
                save_endpoint(ws.store, args.url, args.model or "")
            except ValueError as e:
                raise CliError(str(e)) from None
        current = endpoint_settings(ws.store)
    if current is None:
        print("No endpoint: extraction runs on a local model. Set one with")
        print("  convsim memory endpoint http://localhost:8080/v1 --model NAME")
    else:
        print(f"Endpoint: {current[0]} (model {current[1] or 'the server default'})")
    return 0


def cmd_key(args: argparse.Namespace) -> int:
    from convsim.core.memory.endpoint import KeyringUnavailable, clear_key, set_key

    try:
        if args.action == "clear":
            print("Key removed." if clear_key() else "No key was set.")
            return 0
        if sys.stdin.isatty():
            key = getpass.getpass("API key (not shown): ")
        else:
            key = sys.stdin.readline()
        set_key(key)
    except KeyringUnavailable as e:
        raise CliError(str(e)) from None
    except ValueError as e:
        raise CliError(str(e)) from None
    print("Key stored in the system keyring.")
    return 0


def add_commands(mem: Any) -> None:
    q = mem.add_parser("build", help="extract facts from a chat's messages (resumable)")
    q.add_argument("chat_id", type=int, metavar="CHAT_ID")
    q.add_argument(
        "--extractor", choices=("local", "endpoint"), default="local",
        help="local: a GGUF on this machine (default); endpoint: `convsim memory endpoint`",
    )  # fmt: skip
    q.add_argument("--model", metavar="GGUF", help="the local GGUF (default: the default base)")
    q.add_argument(
        "--method", choices=("spans", "json"),
        help="local: pick each fact's words from its message (spans; default on the default"
        " base) or write a window's facts as JSON (json; default with --model)",
    )  # fmt: skip
    q.add_argument("--json", action="store_true", help="the report as one JSON object")
    q.set_defaults(func=cmd_build)

    q = mem.add_parser("endpoint", help="show or set the server `--extractor endpoint` uses")
    q.add_argument("url", nargs="?", metavar="URL", help="e.g. http://localhost:8080/v1")
    q.add_argument("--model", help="the model name the server expects")
    q.set_defaults(func=cmd_endpoint)

    q = mem.add_parser("key", help="the endpoint's API key, in the system keyring only")
    q.add_argument("action", choices=("set", "clear"))
    q.set_defaults(func=cmd_key)
