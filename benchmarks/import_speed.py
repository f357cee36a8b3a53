"""Import throughput and memory: `convsim import` end to end (a fresh process: start-up, parse,
store, exit) of a generated WhatsApp export, beside whatstk's parse of the same file (a reference
parser, timed inside its process after its imports), in the same run.

    python benchmarks/import_speed.py [--messages 200000] [--repeat 3] [--big 2000000]

Runs alternate between the two and the best of each is compared; the target from the hardening
issue is convsim's whole import at least 10x faster than whatstk's parse alone. `--big N` also
imports an N-message export (about 66 bytes a message) and reports the peak memory of both
imports: it must not grow with the size of the file beyond the parse batch.

Where the time goes is printed too, for an export read whole (up to `STREAM_BYTES`): parse and
store timed apart, in another process. The store alone (the already parsed messages made into
rows, written and committed in one transaction) plus start-up is the floor no parser can go
under in this design, where the store follows the parse; the script prints the speed-up a
parser costing nothing would reach. Below that lies SQLite's own work: the same rows, made
before the clock starts, written with the store's INSERT; the script prints it as a share of
the time a 10x import may take.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from whatsapp_gen import generate

from convsim.core.chats.importers.whatsapp_chunks import STREAM_BYTES
from convsim.core.store.importing import ROWS_PER_INSERT

# Every process runs as an installed app does, from cached bytecode (pip and the release build
# compile it at install): a shell that sets PYTHONDONTWRITEBYTECODE would otherwise make each
# start-up compile convsim's modules again (about 0.08 s of a 2-core machine).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

# Runs a command and prints its peak memory (max RSS of its only child), in MB.
PEAK = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)
scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 2**20)
print(done.stdout.decode().strip().splitlines()[-1])
"""

WHATSTK = """
import json, sys, time
from whatstk import WhatsAppChat
t0 = time.perf_counter()
chat = WhatsAppChat.from_source(filepath=sys.argv[1])
print(json.dumps({"parse_s": time.perf_counter() - t0, "messages": len(chat.df)}))
"""

# convsim's parse, then the store writing its result (an empty store, one transaction, committed),
# each timed: where the time of an import goes.
BREAKDOWN = """
import json, sys, tempfile, time
from itertools import chain
from pathlib import Path
from convsim.core.chats.importers import parse_export
from convsim.core.store import Store, importing
t0 = time.perf_counter()
chats = parse_export(sys.argv[1])
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as home, Store.open(Path(home) / "store.db") as store:
    t2 = time.perf_counter()
    store.add_import(chats, sys.argv[1])
    t3 = time.perf_counter()
# SQLite alone: the same rows, already made (one sender, whose row exists, as foreign keys
# are checked), into an empty store's messages table with the store's own multi-row INSERT.
rows = [(m.timestamp, 1, m.kind, m.text, None) for c in chats for m in c.messages]
per = importing.ROWS_PER_INSERT
flat = [tuple(chain.from_iterable(rows[i : i + per])) for i in range(0, len(rows), per)]
with tempfile.TemporaryDirectory() as home, Store.open(Path(home) / "store.db") as store:
    with store.transaction() as conn:
        conn.execute("INSERT INTO chats VALUES (1, 'whatsapp', 'x', NULL, '')")
        conn.execute("INSERT INTO participants (id, chat_id, name) VALUES (1, 1, 'x')")
    whole = [v for v in flat if len(v) == 5 * per]
    sql = importing._INSERT + ", ".join(["(?, ?, ?, ?, ?)"] * per)
    t4 = time.perf_counter()
    with store.transaction() as conn:
        conn.executemany(sql, whole)  # as insert_messages does; a short last batch apart
        for values in flat[len(whole) :]:
            rows_sql = ", ".join(["(?, ?, ?, ?, ?)"] * (len(values) // 5))
            conn.execute(importing._INSERT + rows_sql, values)
    t5 = time.perf_counter()
print(json.dumps({"parse_s": t1 - t0, "store_s": t3 - t2, "sqlite_s": t5 - t4}))
"""


def convsim_import(path: Path) -> dict[str, float]:
    """Wall time, peak memory and messages stored of `convsim import PATH --json`, run in a
    fresh process on an empty data folder."""
    with tempfile.TemporaryDirectory() as home:
        env = {**ENV, "CONVSIM_HOME": home}
        command = [sys.executable, "-m", "convsim.tui.cli", "import", str(path), "--json"]
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PEAK, *command], env=env, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        seconds = time.perf_counter() - start
    status, peak = out.splitlines()[0].split()
    if status != "0":
        sys.exit(f"convsim import failed on {path}")
    report = json.loads(out.splitlines()[1])
    return {"seconds": seconds, "peak_mb": float(peak), "messages": report["new"]}


def convsim_start_up() -> float:
    """Wall time of `convsim chats` on an empty data folder: start-up and exit, no import."""
    with tempfile.TemporaryDirectory() as home:
        env = {**ENV, "CONVSIM_HOME": home}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "convsim.tui.cli", "chats"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        return time.perf_counter() - start


def breakdown(path: Path) -> dict[str, float]:
    """Seconds of convsim's parse and of its store's write of the same export, in one process
    (an export small enough to be parsed whole)."""
    return _json_of(BREAKDOWN, path, "timing convsim's parse and store failed")


def whatstk_parse(path: Path) -> dict[str, float]:
    return _json_of(WHATSTK, path, "whatstk baseline failed (pip install whatstk)")


def _json_of(script: str, path: Path, failed: str) -> dict[str, float]:
    """The JSON last line `script` prints, run in a fresh process on `path`; exits with
    `failed` and the end of its stderr when it fails."""
    try:
        out = subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=ENV,
                             capture_output=True, text=True).stdout  # fmt: skip
    except subprocess.CalledProcessError as e:
        sys.exit(f"{failed}: {e.stderr[-300:]}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs each")
    parser.add_argument("--big", type=int, default=0, help="also an export this large (memory)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "WhatsApp Chat with Benchmark.txt"
        generate(path, args.messages, seed=0)
        print(f"export: {args.messages:,} messages, {path.stat().st_size / 1e6:.1f} MB")
        mine, base, idle, parts = [], [], [], []
        convsim_start_up()  # writes the bytecode cache, if it is not there yet
        for _ in range(args.repeat):  # interleaved: both sample the same moments of the machine
            mine.append(convsim_import(path))
            base.append(whatstk_parse(path))
            idle.append(convsim_start_up())
            if path.stat().st_size <= STREAM_BYTES:  # else imported in batches: not comparable
                parts.append(breakdown(path))
        ours = min(mine, key=lambda r: r["seconds"])
        theirs = min(base, key=lambda r: r["parse_s"])
        big = None
        if args.big:
            path.unlink()
            generate(path, args.big, seed=0)
            print(f"big export: {args.big:,} messages, {path.stat().st_size / 1e6:.1f} MB")
            big = convsim_import(path)

    speedup = theirs["parse_s"] / ours["seconds"]
    print(
        f"convsim import, whole process: {ours['seconds']:.2f} s"
        f"  {ours['messages'] / ours['seconds']:,.0f} messages/s  peak {ours['peak_mb']:.0f} MB"
        f"  stored {ours['messages']:,}"
    )
    start_up = min(idle)
    print(f"  of which start-up and exit (convsim chats, nothing to do): {start_up:.2f} s")
    if parts:
        parse_s, store_s = (min(p[k] for p in parts) for k in ("parse_s", "store_s"))
        print(f"  parse {parse_s:.2f} s, store {store_s:.2f} s (timed apart, in another process)")
    print(f"whatstk parse only (baseline): {theirs['parse_s']:.2f} s  rows {theirs['messages']:,}")
    print(f"speed-up: {speedup:.1f}x (target >= 10x) -> {'PASS' if speedup >= 10 else 'FAIL'}")
    if parts:
        floor = start_up + store_s
        print(
            f"floor (start-up + store, a parser costing nothing): {floor:.2f} s, at most "
            f"{theirs['parse_s'] / floor:.1f}x"
        )
        sqlite_s = min(p["sqlite_s"] for p in parts)
        print(
            f"SQLite alone (the same rows already made, one multi-row INSERT per "
            f"{ROWS_PER_INSERT}, committed): {sqlite_s:.2f} s, "
            f"{sqlite_s / (theirs['parse_s'] / 10):.0%} of the time a 10x import may take"
        )
    if big:
        grew = big["peak_mb"] / ours["peak_mb"]
        print(
            f"big import: {big['seconds']:.1f} s  peak {big['peak_mb']:.0f} MB for "
            f"{big['messages']:,} messages ({grew:.2f}x the peak of the "
            f"{args.messages:,}-message import for {big['messages'] / ours['messages']:.0f}x "
            "the messages)"
        )


if __name__ == "__main__":
    main()
