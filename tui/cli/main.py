"""The `convsim` command line. Thin: parses arguments, calls `convsim.core`, prints results.

Start-up must stay fast: nothing heavy (torch, transformers, llama_cpp, textual) is imported at
module level; each command imports what it needs.
"""

from __future__ import annotations

import argparse
import errno
import math
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convsim.tui.cli import chat as cli_chat
from convsim.tui.cli import chats as cli_chats
from convsim.tui.cli import doctor as cli_doctor
from convsim.tui.cli import evaluate as cli_evaluate
from convsim.tui.cli import explain as cli_explain
from convsim.tui.cli import forget as cli_forget
from convsim.tui.cli import learn as cli_learn
from convsim.tui.cli import memory as cli_memory
from convsim.tui.cli import models as cli_models
from convsim.tui.cli import steer as cli_steer
from convsim.tui.cli.common import CliError, ctrl_c_outside_llama
from convsim.tui.cli.common import workspace as _workspace

if TYPE_CHECKING:
    from convsim.core.workspace import Workspace

EXIT_ERROR = 2
# Errors that say the data folder (or a file in it) cannot be written or made: reported in a
# line instead of a traceback.
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR}


def cmd_quickstart(args: argparse.Namespace) -> int:
    """The built-in demo, end to end on the default base model: the shipped sample chat →
    store → dataset → a short LoRA training run → GGUF export → one simulated reply. Ctrl-C
    during training stops it with a checkpoint; the next quickstart continues that run."""
    from convsim.core import training
    from convsim.core.data.dataset import DatasetConfig
    from convsim.core.inference.engine import Engine, Sampling
    from convsim.core.workspace import SAMPLE_CHAT

    with _workspace() as ws:
        print(f"convsim home: {ws.locations.home}")
        (report,) = ws.import_export(SAMPLE_CHAT)
        cli_chats.print_import(report)
        overrides = {"steps": args.steps, "seq_len": 256, "eval_every": args.steps}
        progress = cli_models.Progress(quiet=False)
        stopped = _stopped_demo(ws, report.chat_id, args.target, overrides)
        if stopped is not None:
            print(f"Continuing the training {stopped} that was stopped…")

            def run(cancel: threading.Event) -> training.TrainOutcome:
                return training.resume_training(
                    ws, stopped, on_event=progress, cancel=cancel, progress=progress.base
                )
        else:
            record = ws.build_dataset(report.chat_id, DatasetConfig(target=args.target))
            cli_chats.print_dataset(record)
            print(f"Training a LoRA for {args.target!r} on the default base ({args.steps} steps)…")

            def run(cancel: threading.Event) -> training.TrainOutcome:
                return training.train_person(
                    ws, report.chat_id, args.target, dataset_id=record.id, overrides=overrides,
                    on_event=progress, cancel=cancel, progress=progress.base,
                )  # fmt: skip

        outcome = cli_models.until_stopped(run)
        model = outcome.model
        if outcome.result.cancelled:
            print(f"Stopped at step {outcome.result.steps}. Run convsim quickstart to go on.")
            return 0
        print(f"Model {model.id}: adapter {outcome.adapter_gguf}")
        exported = training.export_model(ws, model.id, "q8_0")
        print(f"Exported merged GGUF: {exported}")
        other = next(p["name"] for p in report.participants if p["name"] != args.target)
        transcript = [(other, "hey! are you free this weekend?")]
        engine = Engine(exported, n_ctx=512)
        sampling = Sampling(seed=0, max_tokens=40)
        reply = engine.simulate(transcript, args.target, sampling).result()
        print("Simulated reply:")
        print(f"  [{other}] {transcript[0][1]}")
        print(f"  [{args.target}] {reply.text}")
    return 0


def _stopped_demo(
    ws: Workspace, chat_id: int, person: str, overrides: dict[str, Any]
) -> str | None:
    """The id of a quickstart run for `person` on the sample chat, with these settings, that was
    stopped (Ctrl-C, a closed terminal) before it finished; None when there is none."""
    from convsim.core.training.runs import run_config
    from convsim.core.workspace import shown_status

    for model in reversed(ws.store.models()):
        if (model.chat_id, model.person) != (chat_id, person):
            continue
        if shown_status(model) not in ("cancelled", "stopped"):
            continue
        try:
            config = run_config(Path(model.path))
        except ValueError:
            continue
        if all(getattr(config, key) == value for key, value in overrides.items()):
            return model.id
    return None


# -- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convsim",
        description="Learn how real people text from chat exports, then talk like them.",
    )
    parser.add_argument("--version", action=cli_doctor.VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "quickstart", help="demo: sample chat → dataset → train → export → a simulated reply"
    )
    p.add_argument("--as", dest="target", default="Sam", help="who to learn (default: Sam)")
    p.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    p.set_defaults(func=cmd_quickstart)

    cli_chats.add_commands(sub)

    p = sub.add_parser("app", help="open the convsim app (the default with no command)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="start the app headless, check the home screen renders, quit (for tests/CI)",
    )
    p.set_defaults(func=cmd_app)

    cli_models.add_commands(sub)
    cli_evaluate.add_commands(sub)
    cli_doctor.add_commands(sub)
    cli_chat.add_commands(sub)
    cli_forget.add_commands(sub)
    cli_memory.add_commands(sub)
    cli_learn.add_commands(sub)
    cli_steer.add_commands(sub)
    cli_explain.add_commands(sub)
    return parser


def cmd_app(args: argparse.Namespace) -> int:
    from convsim.tui.app import run_app, smoke_test

    if getattr(args, "smoke", False):
        print(smoke_test())
        return 0
    return run_app()


def quiet_libraries(allow_network: bool) -> None:
    """The CLI shows its own progress: keep the ML libraries' bars, warnings and telemetry out
    of the user's terminal, and keep the Hugging Face libraries off the network unless the user
    asked for a download (`--base hf:...`). Set before those libraries are imported."""
    import os
    import warnings

    if not allow_network:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for key, value in (
        ("TQDM_DISABLE", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("HF_HUB_DISABLE_TELEMETRY", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
    ):
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


def _out_of_range(args: argparse.Namespace) -> str | None:
    """Why a number given on the command line cannot be used at all, or None: a whole number
    past what the store holds (an id of 20 digits), a fraction that is not finite (nan), or
    fewer than one CPU thread."""
    for name, value in vars(args).items():
        flag = name.replace("_", " ")
        values = value if isinstance(value, list) else [value]
        if name == "threads" and value is not None and value < 1:
            return f"--threads must be 1 or more, not {value}"
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
                return f"{flag}: {v} is out of range"
            if isinstance(v, float) and not math.isfinite(v):
                return f"{flag}: expected a finite number, not {v}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_libraries(allow_network=any(a.startswith("hf:") for a in argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    if bad := _out_of_range(args):
        parser.error(bad)
    if not getattr(args, "func", None):
        if sys.stdin.isatty() and sys.stdout.isatty():
            args.func = cmd_app
        else:
            parser.print_help()
            return 0
    import sqlite3

    from convsim.core.chats.messages import ChatImportError
    from convsim.core.files import DiskFullError
    from convsim.core.store import NewerStoreError, StoreCorruptError, StoreInUse, is_damage

    try:
        with ctrl_c_outside_llama():
            return int(args.func(args))
    except StoreCorruptError as e:
        print(f"convsim: error: {cli_doctor.damaged_store_message(e)}", file=sys.stderr)
        return EXIT_ERROR
    except sqlite3.DatabaseError as e:  # damage deeper than the header, found while reading
        if not is_damage(e):
            raise
        print(f"convsim: error: the store is damaged ({e}); run `convsim doctor`", file=sys.stderr)
        return EXIT_ERROR
    except (CliError, ChatImportError, NewerStoreError, DiskFullError, StoreInUse) as e:
        print(f"convsim: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("convsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`convsim messages 1 --json | head`): stop quietly, and keep
        # Python from complaining again while it flushes stdout at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        if e.errno not in NOT_WRITABLE:
            raise
        print(f"convsim: error: {_not_writable(e)}", file=sys.stderr)
        return EXIT_ERROR


def _not_writable(error: OSError) -> str:
    """A file convsim cannot read, write or make, said in a line; for its data folder, how to
    use another."""
    from pathlib import Path

    from convsim.core.locations import Locations

    if error.filename is None:
        return str(error)
    home = Locations.from_env().home
    path = Path(error.filename)
    ours = path == home or path.is_relative_to(home) or home.is_relative_to(path)
    hint = "; convsim keeps its data there (set CONVSIM_HOME to use another folder)"
    return f"{error.filename}: {error.strerror}" + (hint if ours else "")


if __name__ == "__main__":
    sys.exit(main())
