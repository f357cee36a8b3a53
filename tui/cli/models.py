"""Command-line commands for persona models: train, models, export, bases."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from convsim.convert import QUANT_KINDS
from convsim.tui.cli.common import CliError, duration, print_json, record_json, workspace


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / max(1, total))
    return "█" * filled + "░" * (width - filled)


class Progress:
    """Renders training events on a terminal: a one-line bar, plus evaluations and samples."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def base(self, e: Any) -> None:
        """Base-model preparation (BaseModelProgress): one line per stage."""
        if not self.quiet and e.message != getattr(self, "_last", None):
            print(e.message, file=sys.stderr)
            self._last = e.message

    def __call__(self, e: Any) -> None:
        if self.quiet:
            return
        out = sys.stderr
        if e.kind == "step":
            line = (
                f"step {e.step}/{e.total_steps} {_bar(e.step, e.total_steps)} "
                f"loss {e.loss:.3f}  {e.tokens_per_s or 0:.0f} tok/s  ETA {duration(e.eta_s)}"
            )
            print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=out)
        elif e.kind == "eval":
            print(f"\n  validation loss {e.val_loss:.3f}", file=out)
            for sample in e.samples:
                print("  " + sample.replace("\n", "\n  "), file=out)
        elif e.kind in ("start", "cancelled"):
            print(f"{e.kind}: {e.message}", file=out)
        elif e.kind == "done":
            print("", file=out)


T = TypeVar("T")


def until_stopped(run: Callable[[threading.Event], T]) -> T:
    """`run(cancel)` in a worker thread, so that Ctrl-C sets `cancel` and the run stops at a
    step boundary with a checkpoint written, instead of being killed mid-step; what it raises is
    raised here (a library error as a one-line `CliError`)."""
    cancel, finished = threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["out"] = run(cancel)
        except BaseException as e:  # handed to the main thread, which reports it
            box["error"] = e
        finally:
            finished.set()

    worker = threading.Thread(target=work, name="convsim-train")
    worker.start()
    # Waited for on an Event, not with Thread.join: a join that Ctrl-C interrupts can leave
    # the thread looking finished while it still runs (CPython before 3.13). Another Ctrl-C
    # while it stops changes nothing: the step ends, its checkpoint is written.
    while not finished.is_set():
        try:
            finished.wait(0.2)
        except KeyboardInterrupt:
            if not cancel.is_set():
                print("\nstopping after this step…", file=sys.stderr)
            cancel.set()
    worker.join()
    if "error" in box:
        error = box["error"]
        if isinstance(error, (KeyError, ValueError, FileNotFoundError)):
            raise CliError(explain(error)) from None
        raise error
    return box["out"]


def explain(error: BaseException) -> str:
    """A library error as one line for the terminal, with the command that fixes it where
    there is one (the library says what is wrong; which command helps is the CLI's business)."""
    from convsim.core.training.errors import AdapterMissing, ModelNotReady

    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if isinstance(error, ModelNotReady):
        return f"{message}; finish it with: convsim train --resume {error.model_id}"
    if isinstance(error, AdapterMissing):
        again = (
            f"convsim train {error.chat_id} --as {error.person!r}"
            if error.chat_id is not None
            else "convsim train"
        )
        return f"{message}; train it again with: {again}"
    return message


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "steps": args.steps,
        "epochs": args.epochs,
        "rank": args.rank,
        "alpha": args.alpha,
        "learning_rate": args.lr,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "loss_on": args.loss_on,
        "dropout": args.dropout,
        "schedule": args.schedule,
        "warmup_steps": args.warmup_steps,
        "target_modules": (
            [m.strip() for m in args.target_modules.split(",")]
            if args.target_modules is not None
            else None
        ),
        "device": args.device,
        "precision": args.precision,
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "seed": args.seed,
    }


def cmd_train(args: argparse.Namespace) -> int:
    from convsim.core import training

    progress = Progress(quiet=args.json)

    def run(cancel: threading.Event) -> Any:
        with workspace() as ws:
            if args.resume:
                return training.resume_training(
                    ws, args.resume, on_event=progress, cancel=cancel, progress=progress.base
                )
            if args.chat_id is None or not args.target:
                raise CliError("give CHAT_ID and --as NAME, or --resume MODEL_ID")
            return training.train_person(
                ws,
                args.chat_id,
                args.target,
                base=args.base,
                max_context=args.context,
                overrides=_overrides(args),
                start_from=args.start_from,
                on_event=progress,
                cancel=cancel,
                progress=progress.base,
            )

    out = until_stopped(run)
    result = {
        "model_id": out.model.id,
        "status": out.model.status,
        "adapter_gguf": str(out.adapter_gguf) if out.adapter_gguf else None,
        "metrics": {k: v for k, v in out.result.metrics.items() if k != "history"},
    }
    if args.json:
        print_json(result)
    elif out.result.cancelled:
        step, model_id = out.result.steps, out.model.id
        print(f"Stopped at step {step}. Continue: convsim train --resume {model_id}")
    else:
        m = result["metrics"]
        val = f"{m['val_loss']:.3f}" if m.get("val_loss") is not None else "n/a"
        print(f"Model {out.model.id} ready: {out.adapter_gguf}")
        from convsim.core.training.memory import peak_memory_text

        peak = peak_memory_text(m)  # "peak memory 3.1 GB"; None for runs from before
        plan = f" ({m['plan']})" if m.get("plan") else ""
        print(
            f"  {m['steps']} steps{plan}, validation loss {val}, {m['tokens_per_s']:.0f} tokens/s"
            + (f", {peak}" if peak else "")
        )
        print(f"  Next: convsim eval {out.model.id}   |   convsim export {out.model.id}")
    return 1 if out.result.cancelled and args.json else 0


def cmd_models(args: argparse.Namespace) -> int:
    from convsim.core.training import shown_status

    with workspace() as ws:
        models = ws.store.models()
    if not models and not args.json:
        print("No models yet. Train one: convsim train CHAT_ID --as NAME")
    for m in models:
        metrics = {k: v for k, v in (m.metrics or {}).items() if k != "history"}
        status = shown_status(m)
        if args.json:
            running = status == "training"
            print_json(
                record_json(
                    m, {"id": "model_id"}, ("base_sha256",), metrics=metrics, running=running
                )
            )
        else:
            val = metrics.get("val_loss")
            val_text = f"val loss {val:.3f}" if val is not None else ""
            print(f"{m.id:<14} {m.person:<16} {status:<10} {val_text}  base {m.base}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from convsim.core import training

    with workspace() as ws:
        try:
            path = training.export_model(ws, args.model_id, args.quant)
        except (KeyError, ValueError) as e:
            raise CliError(explain(e)) from None
    if args.json:
        print_json({"model_id": args.model_id, "quant": args.quant, "path": str(path)})
    else:
        print(f"Exported {args.model_id} ({args.quant}): {path}")
        print("  Load it in LM Studio, Ollama (FROM <path>) or llama.cpp (-m <path>).")
    return 0


def cmd_bases(args: argparse.Namespace) -> int:
    from convsim.core import bases

    with workspace() as ws:
        found = bases.discover_ggufs(locations=ws.locations)
    for f in found:
        if args.json:
            print_json({"name": f.name, "path": str(f.path), "size": f.size, "source": f.source})
        else:
            print(f"{f.source:<12} {f.size / 1e6:>8.0f} MB  {f.name}\n             {f.path}")
    if not found and not args.json:
        print("No GGUF models found in the LM Studio, Ollama or Hugging Face folders.")
    return 0


def add_commands(sub: Any) -> None:
    from convsim.core.system.devices import DEVICES, PRECISIONS

    p = sub.add_parser("train", help="train a persona model (LoRA) for one person of a chat")
    p.add_argument("chat_id", type=int, nargs="?")
    p.add_argument("--as", dest="target", help="the person to learn")
    p.add_argument("--base", help="base model: a .gguf path, hf:OWNER/REPO/FILE.gguf, or default")
    p.add_argument("--resume", metavar="MODEL_ID", help="continue a stopped run")
    p.add_argument(
        "--start-from",
        metavar="MODEL_ID",
        help="update a finished model: train its adapter further, into a new model",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimiser steps")
    length.add_argument(
        "--epochs", type=float, help="passes over the data (default: from its size, see README)"
    )
    p.add_argument("--rank", type=int)
    p.add_argument("--alpha", type=float)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--seq-len", type=int, help="tokens per packed training row")
    p.add_argument("--batch-size", type=int, help="rows per step")
    p.add_argument("--loss-on", choices=("target", "all"), help="learn their turns or all text")
    p.add_argument("--dropout", type=float, help="LoRA dropout")
    p.add_argument("--schedule", choices=("cosine", "linear", "constant"))
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--target-modules", help="comma-separated, e.g. q_proj,v_proj")
    p.add_argument("--context", type=int, help="max earlier messages per example (default 16)")
    p.add_argument("--device", choices=DEVICES)
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (default): bf16 on a GPU and on CPUs with bf16 instructions, else fp32",
    )
    p.add_argument("--eval-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="list trained models; their versions; rollback")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    from convsim.tui.cli.learn import add_version_commands

    add_version_commands(p)

    p = sub.add_parser("export", help="merge a model into its base and quantise to one GGUF")
    p.add_argument("model_id")
    p.add_argument("--quant", choices=QUANT_KINDS, default="q8_0")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bases", help="list GGUF models found on this machine")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bases)
