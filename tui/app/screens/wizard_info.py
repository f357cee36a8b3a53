"""What the import wizard shows: parse reports, dataset summaries and training-time estimates,
as `Content` (user text stays plain text, markup variables are escaped); and the store reads the
wizard's workers make. Nothing here touches a widget."""

from __future__ import annotations

import math
import os
from typing import Any

from textual.content import Content

# Training speed of the default base on a 2-core laptop-class CPU (benchmarks/train_speed.py),
# used for the time estimate until this machine has trained something itself; in bf16, on a
# CPU with bf16 instructions, it is about 1.5x that.
CPU_TOKENS_PER_S_PER_CORE = 70.0
BF16_SPEEDUP = 1.5


def report_text(r: Any) -> Content:
    """The parse report of one imported chat."""
    new = f" ({r.new} new)" if r.new else ""
    lines = [
        f"{r.title}  ({r.format}, chat {r.chat_id})",
        f"{r.messages} messages{new} from {(r.first or '?')[:16]} to {(r.last or '?')[:16]}",
    ]
    if r.kinds:
        lines.append("kinds: " + ", ".join(f"{k} {n}" for k, n in r.kinds.items()))
    lines += [f"Warning: {w}" for w in getattr(r, "warnings", [])]
    lines += ["", "Participants"]
    lines += [f"  {p['name']}: {p['messages']} messages" for p in r.participants]
    if r.skipped:
        lines += ["", f"Skipped {len(r.skipped)} (not messages, or unreadable):"]
        lines += [f"  {s['position']}: {s['reason']}" for s in r.skipped[:8]]
        if len(r.skipped) > 8:
            lines.append(f"  … and {len(r.skipped) - 8} more")
    # The title is emphasised by markup around a variable: the title itself stays plain text.
    return Content.from_markup(
        "[b]$title[/b]$rest", title=r.title, rest="\n".join(lines)[len(r.title) :]
    )


def chat_report(ws: Any, chat_id: int) -> tuple[Any, dict[int, str]]:
    """An `ImportReport`-shaped summary of a chat already in the store, and who is "me" in it
    (as `stored_me` says)."""
    from convsim.core.store.records import ImportReport

    info = ws.store.chat(chat_id)
    found = ws.store.participants(chat_id)
    people = [{"name": p.name, "messages": p.messages} for p in found]
    report = ImportReport(
        chat_id, info.format, info.title, info.messages, 0, people, info.first, info.last, {}
    )
    return report, {p.chat_id: p.name for p in found if p.is_me}


def stored_me(ws: Any, chat_ids: list[int]) -> dict[int, str]:
    """Who is "me" in each of `chat_ids`, where the store knows it (one read of the store,
    however many chats an export held)."""
    wanted = set(chat_ids)
    return {p.chat_id: p.name for p in ws.store.participants() if p.is_me and p.chat_id in wanted}


def planned(tokens: int, epochs: float | None, seq_len: int, device: str, bf16: bool) -> Any:
    """The recipe's `Plan` for a dataset of about `tokens` training tokens."""
    from convsim.core.training.recipe import TrainConfig, plan_steps

    rows = max(1, math.ceil(tokens / seq_len))
    return plan_steps(rows, TrainConfig.batch_size, seq_len, device, bf16=bf16, epochs=epochs)


def rough_duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {minutes / 60:.1f} h"


def dataset_text(record: Any) -> Content:
    """One paragraph about a built dataset."""
    s = record.stats
    return Content.from_markup(
        "[b]Dataset $id[/b] for [b]$target[/b]: $windows training windows ($tokens tokens), "
        "$held held out for validation; $turns of $target's messages in $sessions sessions.",
        id=str(record.id),
        target=record.target,
        windows=str(s["train_examples"]),
        tokens=f"{s['train_token_estimate']:,}",
        held=str(s["validation_examples"]),
        turns=str(s["target_turns"]),
        sessions=str(s["sessions"]),
    )


def estimate_text(
    device: str,
    tokens: int,
    epochs: float | None,
    seq_len: int,
    rate: float | None,
    default_base: bool,
    bf16: bool = False,
) -> Content:
    """How long training would take: from this machine's last run (`rate`) or a typical CPU.
    `epochs` None: as long as the recipe plans for this much data on `device` (in bf16 when
    `bf16`)."""
    typical = CPU_TOKENS_PER_S_PER_CORE * (os.cpu_count() or 2) * (BF16_SPEEDUP if bf16 else 1)
    speed = rate or typical
    note = "" if default_base else " (for the default base; larger bases are slower)"
    source = "a typical CPU" if rate is None else "this machine's last run"
    plan = planned(tokens, epochs, seq_len, device, bf16)
    return Content.from_markup(
        "Training on [b]$device[/b]: $steps steps ($why), $tokens tokens, $time at $speed "
        "tokens/s (from $source)$note. You can stop and resume at any time.",
        device=f"{device} (bf16)" if bf16 else device,
        steps=str(plan.steps),
        why=plan.why,
        tokens=f"{tokens * plan.passes:,.0f}",
        time=rough_duration(tokens * plan.passes / max(speed, 1e-6)),
        speed=f"{speed:.0f}",
        source=source,
        note=note,
    )


def find_bases(ws: Any) -> tuple[list[Any], float | None, str, bool]:
    """Local GGUFs (LM Studio, Ollama, HF cache), this machine's last measured training speed,
    the device training would use and whether it trains in bf16 there. Reads disk and the
    store: call it from a worker."""
    from convsim.core.bases.prepare import discover_ggufs
    from convsim.core.system.devices import choose_device, precision_name

    found = [
        f
        for f in discover_ggufs(locations=ws.locations)
        if f.path.parent != ws.locations.base_models  # the default is listed already
    ]
    rates = [
        m.metrics["tokens_per_s"]
        for m in ws.store.models()
        if m.metrics and m.metrics.get("tokens_per_s")
    ]
    device, dtype = choose_device()
    return found, (rates[-1] if rates else None), device, precision_name(dtype) == "bf16"
