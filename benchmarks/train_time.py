"""Time to train a persona of a 5,000-message chat with the defaults, on this machine.

    python benchmarks/train_time.py [--messages 5000] [--baseline] [--keep DIR]

Builds a WhatsApp export of `--messages` messages by repeating the shipped sample chat (Sam and
Riya, 885 messages) with the dates moved a year on each time, imports it into a fresh home and
runs `convsim train 1 --as Sam`: what a user who presses Train gets. Reported: the wall time of
the whole command (loading the base, training, the final validation pass, writing the GGUF
adapter), the steps the recipe chose against one full pass, tokens/s and peak memory.

Target from the imitation issue: under 15 minutes on a 2-core CPU. The baseline is the recipe
before it had a CPU budget, one full pass: with `--baseline` it is trained and timed in the
same run (it takes about twice as long); without, the line says how many steps it would be.
The base model comes from the usual places (`CONVSIM_BASE_MODELS`, the bundled default).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "core" / "chats" / "samples" / "sample_whatsapp.txt"
TARGET_S = 15 * 60
DATED = re.compile(r"^(\d+/\d+/)(\d{4})(, .*)$")


def repeated_chat(path: Path, n_messages: int) -> int:
    """Write the sample chat again and again, a year later each time, until `n_messages`
    messages; returns how many of them are Sam's."""
    header, *body = SAMPLE.read_text(encoding="utf-8").splitlines()
    lines, count, copy = [header], 0, 0
    while count < n_messages:
        for line in body:
            dated = DATED.match(line)
            if dated and count == n_messages:
                break
            if dated:
                count += 1
                line = f"{dated[1]}{int(dated[2]) + copy}{dated[3]}"
            lines.append(line)
        copy += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sum(1 for line in lines if " - Sam: " in line)


def convsim(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVSIM_HOME": str(home)}
    command = [sys.executable, "-m", "convsim.tui.cli", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"convsim {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def train(home: Path, *extra: str) -> dict:
    started = time.perf_counter()
    done = convsim(home, "train", "1", "--as", "Sam", "--json", *extra)
    result = json.loads(done.stdout)
    result["wall_s"] = time.perf_counter() - started
    return result


def line(label: str, run: dict) -> str:
    from convsim.core.training.memory import peak_memory_text
    from convsim.core.training.recipe import TrainConfig

    m = run["metrics"]
    per_pass = -(-m["train_rows"] // TrainConfig.batch_size)  # the default's, rounded up
    return (
        f"{label}: {run['wall_s'] / 60:.1f} min, {m['steps']} steps (one pass: {per_pass}; "
        f"{m.get('plan')}), "
        f"{m['tokens_per_s']:.0f} tokens/s, {peak_memory_text(m)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--baseline", action="store_true", help="also time one full pass")
    ap.add_argument("--keep", type=Path, help="use this folder as the home and keep it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.keep or Path(tmp) / "home"
        chat = Path(tmp) / "chat.txt"
        sams = repeated_chat(chat, args.messages)
        print(f"chat: {args.messages} messages, {sams} of them Sam's", flush=True)
        convsim(home, "import", str(chat))
        recipe = train(home)
        print(line("default recipe", recipe), flush=True)
        if args.baseline:
            print(line("baseline, one full pass", train(home, "--epochs", "1")))
        else:
            print("baseline, one full pass: not run (--baseline trains it)")
        verdict = "met" if recipe["wall_s"] < TARGET_S else "NOT met"
        print(f"target: under {TARGET_S // 60} min: {verdict}")


if __name__ == "__main__":
    main()
