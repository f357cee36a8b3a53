"""Import throughput: convsim's end-to-end import (parse + store) of a generated WhatsApp export,
side by side with the parse time of whatstk (a reference parser) on the same file.

    python benchmarks/import_speed.py [--messages 200000] [--repeat 3]

Each measurement runs in a fresh child process, so its peak memory (max RSS) is its own; the
runs alternate between the two, and the best of each is compared. The target from the import
issue: convsim's import at least 5x faster than whatstk's parse alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from whatsapp_gen import generate

CONVSIM = """
import json, resource, sys, time, tempfile
from pathlib import Path
from convsim.core.chats.importers import parse_export
from convsim.core.workspace import Workspace
path = Path(sys.argv[1])
t0 = time.perf_counter()
chats = parse_export(path, "whatsapp")
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as home, Workspace.open(Path(home)) as ws:
    t2 = time.perf_counter()
    (report,) = ws.import_export(path, "whatsapp")
    t3 = time.perf_counter()
print(json.dumps({"parse_s": t1 - t0, "import_s": t3 - t2, "messages": report.new,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

WHATSTK = """
import json, resource, sys, time
from whatstk import WhatsAppChat
t0 = time.perf_counter()
chat = WhatsAppChat.from_source(filepath=sys.argv[1])
t1 = time.perf_counter()
print(json.dumps({"parse_s": t1 - t0, "messages": len(chat.df),
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(code: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs each")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "WhatsApp Chat with Benchmark.txt"
        generate(path, args.messages, seed=0)
        size_mb = path.stat().st_size / 1e6
        print(f"export: {args.messages} messages, {size_mb:.1f} MB ({path.name})")

        # Interleaved, so that both sides sample the same moments of a shared machine.
        mine, base = [], []
        for _ in range(args.repeat):
            mine.append(run(CONVSIM, path))
            try:
                base.append(run(WHATSTK, path))
            except subprocess.CalledProcessError as e:
                sys.exit(f"whatstk baseline failed (pip install whatstk): {e.stderr[-300:]}")
        ours = min(mine, key=lambda r: r["import_s"])
        theirs = min(base, key=lambda r: r["parse_s"])

    rate = ours["messages"] / ours["import_s"]
    speedup = theirs["parse_s"] / ours["import_s"]
    print(
        f"convsim import (parse + store): {ours['import_s']:.2f} s  {rate:,.0f} messages/s"
        f"  (parse alone {ours['parse_s']:.2f} s)  peak RSS {ours['max_rss_mb']:.0f} MB"
        f"  stored {ours['messages']}"
    )
    print(
        f"whatstk parse only:             {theirs['parse_s']:.2f} s"
        f"  peak RSS {theirs['max_rss_mb']:.0f} MB  rows {theirs['messages']}"
    )
    print(f"speed-up: {speedup:.1f}x (target >= 5x) -> {'PASS' if speedup >= 5 else 'FAIL'}")


if __name__ == "__main__":
    main()
