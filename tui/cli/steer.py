"""`convsim steer build|list|remove`: steering vectors ("sliders") of a persona, and `--steer`
on the commands that generate.

- `steer build MODEL_ID (--axis NAME | --poles "A" "B" | --pairs FILE) [--name NAME]
  [--method mean|pca|fit|own] [--count N] [--json]`: contrast pairs from the persona's chat,
  directions on the persona in torch, calibration on llama.cpp; saved as
  `<model folder>/steering/NAME.gguf` (a llama.cpp control vector). Ctrl-C stops it, saving
  nothing. `--json` prints the vector as `steer list --json` does.
- `steer list MODEL_ID [--json]`: the persona's vectors; `--json` prints one object per line:
  {"name", "positive", "negative", "range": [negative, positive], "band": [first, last],
  "method", "pairs", "baseline_perplexity", "path"}.
- `steer remove MODEL_ID NAME [NAME...]`: deletes those vectors (a damaged file too, by its
  name); a name the persona has no vector of is refused before anything is deleted.
- `--steer NAME=VALUE[,NAME=VALUE]` on simulate, complete and chat: slider positions, -1..1.

MODEL_ID `base` is the plain default base model (contexts from the bundled sample chat);
simulate, complete and chat accept it too, as the app's untrained "Friend".
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convsim.tui.cli.common import CliError, ctrl_c_sets, duration, print_json
from convsim.tui.cli.common import workspace as _workspace


def vector_json(v: Any) -> dict[str, Any]:
    return {
        "name": v.name,
        "positive": v.poles[0],
        "negative": v.poles[1],
        "range": [-v.calibration.negative, v.calibration.positive],
        "band": list(v.band),
        "method": v.meta.get("method"),
        "pairs": v.meta.get("pairs"),
        "baseline_perplexity": v.calibration.baseline,
        "path": str(v.path),
    }


@dataclass(frozen=True)
class BaseRecord:
    """The plain default base, standing in for a model record."""

    base: str
    path: str  # its vectors are in path/steering
    id: str = "base"
    person: str = "Friend"
    chat_id: int | None = None


def base_record(ws: Any) -> BaseRecord:
    from convsim.core.bases.prepare import default_base
    from convsim.core.steering.build import base_folder

    return BaseRecord(str(default_base(ws.locations)), str(base_folder(ws)))


def _model(ws: Any, model_id: str) -> Any:
    from convsim.core.steering.build import BASE_ID
    from convsim.tui.cli.models import explain

    if model_id == BASE_ID:
        return base_record(ws)
    try:
        return ws.store.model(model_id)
    except KeyError as e:
        raise CliError(explain(e)) from None


def _vectors(record: Any, fits: tuple[str, int, int] | None = None) -> list[Any]:
    from convsim.core import steering

    try:
        return steering.vectors(Path(record.path), fits)
    except steering.VectorFileError as e:
        raise CliError(
            f"{e}\nBuild it again, or remove it: convsim steer remove {record.id} {e.path.stem}"
        ) from None


def cmd_build(args: argparse.Namespace) -> int:
    from convsim.core import steering
    from convsim.tui.cli.models import explain

    name = args.name or args.axis or ("custom" if args.poles else Path(args.pairs).stem.lower())
    if args.pairs and not args.name:  # a name you did not type: say where it came from
        try:
            steering.check_name(name)
        except ValueError as e:
            raise CliError(f"{e}; it is the pairs file's name: pass --name NAME") from None
    spec = steering.Spec(
        name,
        axis=args.axis,
        poles=tuple(args.poles) if args.poles else None,
        pairs_file=Path(args.pairs) if args.pairs else None,
        method=args.method,
        n_pairs=args.count,
    )
    cancel = threading.Event()
    shown: list[str] = []

    def progress(e: Any) -> None:
        if args.json:
            return
        if e.stage != (shown[-1] if shown else None):
            shown.append(e.stage)
            print(f"{e.stage}: {e.note}" if e.note else f"{e.stage}…", file=sys.stderr)
        elif e.done == e.total or e.done % 40 == 0:
            print(f"  {e.stage} {e.done}/{e.total}", file=sys.stderr)

    with _workspace() as ws, ctrl_c_sets(cancel):
        _model(ws, args.model_id)
        try:
            v = steering.build_vector(
                ws, args.model_id, spec, on_event=progress, cancel=cancel, threads=args.threads
            )
        except steering.Cancelled as e:
            print(str(e), file=sys.stderr)
            return 130
        except (KeyError, ValueError) as e:
            raise CliError(explain(e) if isinstance(e, KeyError) else str(e)) from None
    if args.json:
        print_json(vector_json(v))
        return 0
    c = v.calibration
    print(
        f"Vector {v.name!r} ({v.poles[1]} ← → {v.poles[0]}) for {args.model_id}: {v.path}\n"
        f"  {blocks(v.band)}, usable strength -{c.negative:g} … +{c.positive:g} "
        f"(perplexity {c.baseline:.1f} unsteered), built in "
        f"{duration(float(v.meta.get('seconds') or 0))}\n"
        f"  use it: convsim simulate {args.model_id} --steer {v.name}=0.5"
    )
    return 0


def blocks(band: tuple[int, int]) -> str:
    """ "blocks 8–12", or "block 10" for a band of one."""
    return f"block {band[0]}" if band[0] == band[1] else f"blocks {band[0]}–{band[1]}"


def cmd_list(args: argparse.Namespace) -> int:
    with _workspace() as ws:
        found = _vectors(_model(ws, args.model_id))
    if args.json:
        for v in found:
            print_json(vector_json(v))
        return 0
    if not found:
        print(f"No vectors yet. Build one: convsim steer build {args.model_id} --axis happy")
        return 0
    for v in found:
        c = v.calibration
        print(
            f"{v.name:<12} {v.poles[1]:>10} ← → {v.poles[0]:<10} "
            f"-{c.negative:g} … +{c.positive:g}  {blocks(v.band)}"
        )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from convsim.core import steering

    with _workspace() as ws:
        record = _model(ws, args.model_id)
        try:
            steering.remove(Path(record.path), args.names)
        except ValueError as e:
            raise CliError(f"{e}; see `convsim steer list {args.model_id}`") from None
        except OSError as e:  # a folder or file this user may not delete
            raise CliError(f"cannot remove: {e}") from None
    for name in dict.fromkeys(args.names):
        print(f"Removed the vector {name!r} of {args.model_id}.")
    return 0


def apply_steer(engine: Any, record: Any, text: str | None) -> dict[str, float]:
    """Set `engine`'s steering from a `--steer` value; the slider positions used."""
    if not text:
        return {}
    from convsim.core import steering
    from convsim.core.steering.library import model_fits

    try:
        chosen = steering.parse_mix(text)
    except ValueError as e:
        raise CliError(f"--steer: {e}") from None
    available = {v.name: v for v in _vectors(record, model_fits(Path(record.base)))}
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        have = ", ".join(sorted(available)) or "none"
        raise CliError(
            f"--steer: no vector {unknown[0]!r} for {record.id} (it has: {have}); "
            f"build one with `convsim steer build {record.id} --axis NAME`"
        )
    mixed = steering.mix(chosen, available)
    engine.set_steering(*(mixed if mixed is not None else (None,)))
    return chosen


def add_steer_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--steer", metavar="NAME=VALUE[,...]",
        help="steering sliders, each -1..1 (see `convsim steer list MODEL_ID`); several whose "
        "sizes sum past 1 are scaled down together to sum 1",
    )  # fmt: skip


def add_commands(sub: Any) -> None:
    p = sub.add_parser("steer", help="steering vectors: sliders for a persona's mood and style")
    steer = p.add_subparsers(dest="steer_command", required=True, metavar="COMMAND")
    q = steer.add_parser("build", help="build and calibrate a steering vector for a persona")
    q.add_argument("model_id", help="a persona, or 'base' for the plain default base model")
    how = q.add_mutually_exclusive_group(required=True)
    how.add_argument("--axis", help="a built-in axis: happy, warm, formal, brief, excited")
    how.add_argument(
        "--poles", nargs=2, metavar=("POSITIVE", "NEGATIVE"),
        help='your own axis from two short descriptions, e.g. --poles "cheerful" "grumpy"',
    )  # fmt: skip
    how.add_argument(
        "--pairs", metavar="FILE",
        help='JSON Lines of {"positive": "...", "negative": "..."}: one message said both ways',
    )  # fmt: skip
    q.add_argument("--name", help="the vector's name (default: the axis, or 'custom')")
    q.add_argument(
        "--method", choices=("mean", "pca", "fit", "own"), default="mean",
        help="mean difference (default), PCA, fitted to the pairs, or fitted to pairs of the "
        "persona's own replies (own: slower, moves happy further)",
    )  # fmt: skip
    q.add_argument("--count", type=int, default=100, help="contrast pairs (at least 100)")
    q.add_argument("--threads", type=int, help="CPU threads (default: all)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_build)
    q = steer.add_parser("list", help="a persona's steering vectors and their ranges")
    q.add_argument("model_id")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)
    q = steer.add_parser("remove", help="delete steering vectors of a persona")
    q.add_argument("model_id", help="a persona, or 'base'")
    q.add_argument("names", nargs="+", metavar="NAME", help="vectors, as `steer list` names them")
    q.set_defaults(func=cmd_remove)
