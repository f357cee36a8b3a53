"""What the import wizard shows: parse reports and training-time estimates."""

from __future__ import annotations

from typing import Any

from textual.content import Content

# Training speed of the default base on a 2-core laptop-class CPU (benchmarks/train_speed.py),
# used for the time estimate until this machine has trained something itself.
CPU_TOKENS_PER_S_PER_CORE = 70.0


def report_text(r: Any) -> Content:
    """The parse report of one imported chat."""
    new = f" ({r.new} new)" if r.new else ""
    lines = [
        f"{r.title}  ({r.format}, chat {r.chat_id})",
        f"{r.messages} messages{new} from {(r.first or '?')[:16]} to {(r.last or '?')[:16]}",
    ]
    if r.kinds:
        lines.append("kinds: " + ", ".join(f"{k} {n}" for k, n in r.kinds.items()))
    lines += ["", "Participants"]
    lines += [f"  {p['name']}: {p['messages']} messages" for p in r.participants]
    if r.skipped:
        lines += ["", f"Skipped {len(r.skipped)} (not messages, or unreadable):"]
        lines += [f"  {s['position']}: {s['reason']}" for s in r.skipped[:8]]
        if len(r.skipped) > 8:
            lines.append(f"  … and {len(r.skipped) - 8} more")
    return Content("\n".join(lines)).stylize("bold", 0, len(r.title))


def chat_report(ws: Any, chat_id: int) -> Any:
    """An `ImportReport`-shaped summary of a chat already in the store."""
    from convsim.core.store.records import ImportReport

    info = ws.store.chat(chat_id)
    people = [{"name": p.name, "messages": p.messages} for p in ws.store.participants(chat_id)]
    return ImportReport(
        chat_id, info.format, info.title, info.messages, 0, people, info.first, info.last, {}
    )


def estimate_seconds(tokens: int, epochs: float, rate: float) -> float:
    return tokens * epochs / max(rate, 1e-6)


def rough_duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {minutes / 60:.1f} h"
