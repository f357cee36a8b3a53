"""Synthetic WhatsApp exports for benchmarks and scale tests.

`generate(path, n_messages, seed=0)` writes an Android-layout export (`dd/mm/yyyy, HH:MM - Name:
text`) with exactly `n_messages` messages: several senders (one with an emoji in the name), about
10% multi-line bodies, media placeholders, deleted markers, system lines and emoji. The output is
deterministic for a given seed, so benchmark runs compare like with like.

Run as a script: `python benchmarks/whatsapp_gen.py OUT.txt [N] [SEED] [--time]`; with
`--time` it also prints the best-of-5 wall time of the WhatsApp importer's parse of the file.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

SENDERS = ("Riya Sharma", "Tom", "Ana Lucía", "+44 7700 900123", "Jo \U0001f338")
_WORDS = (
    "hey ok sure lol yes no maybe tomorrow tonight dinner coffee work later running late "
    "what time are you coming did you see that thanks love it sounds good haha see you soon "
    "where is the train I am almost there can you call me when free the meeting moved again"
)
WORDS = _WORDS.split()
EMOJI = (
    "\U0001f602",
    "\u2764\ufe0f",
    "\U0001f44d\U0001f3fd",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f389",
)
SYSTEM = (
    "Riya Sharma added Tom",
    "Tom left",
    "Ana Lucía changed this group's icon",
    "+44 7700 900123 changed to +44 7700 900124",
)


def _sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(2, 9))
    if rng.random() < 0.2:
        words.append(rng.choice(EMOJI))
    return " ".join(words)


def _body(rng: random.Random) -> tuple[str, bool]:
    """(text, is a system line): 1% system, 4% media, 1% deleted, 10% multi-line, rest text."""
    r = rng.random()
    if r < 0.01:
        return rng.choice(SYSTEM), True
    if r < 0.05:
        return "<Media omitted>", False
    if r < 0.06:
        return "This message was deleted", False
    if r < 0.16:
        return "\n".join(_sentence(rng) for _ in range(rng.randint(2, 4))), False
    return _sentence(rng), False


def generate(path: Path | str, n_messages: int, seed: int = 0) -> int:
    """Write `n_messages` messages to `path` and return that count. Timestamps never go
    backwards and days pass 13 early on, so the day/month order is unambiguous (dmy)."""
    rng = random.Random(seed)
    when = datetime(2019, 1, 1, 8, 0)
    lines: list[str] = []
    for _ in range(n_messages):
        when += timedelta(seconds=rng.choice((5, 20, 60, 90, 300, 1800, 7200)))
        body, system = _body(rng)
        stamp = when.strftime("%d/%m/%Y, %H:%M")
        if system:
            lines.append(f"{stamp} - {body}")
        else:
            lines.append(f"{stamp} - {rng.choice(SENDERS)}: {body}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return n_messages


def time_parse(path: Path | str, runs: int = 5) -> tuple[int, float]:
    """(messages, best wall seconds) for `whatsapp.parse` of `path`, file read included."""
    from convsim.core.chats.importers import ImportOptions, whatsapp
    from convsim.core.chats.importers.base import Source

    best, count = float("inf"), 0
    for _ in range(runs):
        start = time.perf_counter()
        with Source(Path(path)) as source:
            chats = whatsapp.parse(source, ImportOptions())
        best = min(best, time.perf_counter() - start)
        count = len(chats[0].messages)
        del chats
        gc.collect()  # free this run's messages outside the next run's timing
    return count, best


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--time"]
    out = args[0] if args else "whatsapp_200k.txt"
    count = int(args[1]) if len(args) > 1 else 200_000
    generate(out, count, int(args[2]) if len(args) > 2 else 0)
    if "--time" in sys.argv:
        parsed, seconds = time_parse(out)
        print(f"{parsed} messages parsed in {seconds:.3f} s (best of 5)")
