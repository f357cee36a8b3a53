"""What the learn screen and the feedback view show, as plain functions of core's records:
table rows, the forgetting table, the verdict and the counts of new feedback.

Every cell that holds the user's text (replies, edits, reasons) is a `rich.text.Text`, which a
DataTable draws as it is, never as markup. The forgetting table reads `LearnOutcome.to_json()`,
the shape `convsim learn --json` prints, so the app and the CLI show the same figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.content import Content
from textual.widgets import DataTable

from convsim.tui.app.widgets import clip

# Kinds as the user reads them: a mark and a short name for the table, words for counts.
KIND_LABELS = {
    "good": ("👍", "good", "good"),
    "bad": ("👎", "bad", "bad"),
    "better": ("✎", "edit", "edits"),
    "regenerate": ("↻", "regenerate", "regenerations"),
    "taken": ("✓", "suggestion", "suggestions taken"),
    "dismissed": ("✗", "suggestion", "suggestions dismissed"),
    "edited": ("✎", "suggestion", "suggestions edited"),
}
# The counts of `LearnOutcome.counts`, as the user reads them.
LEARNT_WORDS = {
    "feedback": "feedback items",
    "pairs": "preference pairs",
    "unpaired": "thumbs",
    "judged": "pairs the judge made",
    "new_messages": "new messages",
    "new_held_out": "new messages held out",
    "replay_pool": "earlier examples to replay",
}
FEEDBACK_COLUMNS = ("kind", "from", "message → better", "when", "learnt")
FORGETTING_COLUMNS = ("slice", "items", "perplexity", "Hits@1", "ok")
VERSION_COLUMNS = ("", "version", "created", "status", "kept", "note")
SHORT = 32  # characters of a message shown in a table cell (the rest: below the table)


def fill(
    table: DataTable[Any], labels: Sequence[str], rows: Sequence[tuple[str, Sequence[Any]]]
) -> None:
    """Replace `table`'s columns and rows (`(key, cells)`); a column is as wide as its widest
    cell (a header drawn before DataTable's idle resize would keep old widths otherwise)."""
    table.clear(columns=True)
    for i, label in enumerate(labels):
        widths = [cell_len(label)] + [_width(cells[i]) for _, cells in rows]
        table.add_column(label, width=max(widths))
    for key, cells in rows:
        table.add_row(*(c if isinstance(c, Text) else Text(str(c)) for c in cells), key=key)


def _width(cell: Any) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


def short(text: str, limit: int = SHORT) -> str:
    """One line of at most `limit` characters."""
    return clip(" ⏎ ".join(text.split("\n")), limit)


def when(timestamp: str, year: bool = True) -> str:
    """An ISO time as a day and minute (without the year: "11-28 10:31")."""
    return timestamp[0 if year else 5 : 16].replace("T", " ")


# -- feedback ---------------------------------------------------------------------------------


def feedback_rows(items: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    """Rows of the feedback view, one per `FeedbackItem`, keyed by the item's id."""
    rows = []
    for item in items:
        message = short(item.reply, SHORT // 2 if item.better else SHORT)
        if item.better:
            message += " → " + short(item.better, SHORT // 2)
        learnt = f"in v{item.used_in}" if item.used_in is not None else "new"
        mark, name, _ = KIND_LABELS.get(item.kind, ("", item.kind, item.kind))
        label = f"{mark} {name}".strip()
        cells = [label, f"v{item.version}", Text(message), when(item.created, False), learnt]
        rows.append((str(item.id), cells))
    return rows


def counts_line(unused: Sequence[Any]) -> str:
    """What the next update will learn from: the feedback no update has learnt yet, by kind."""
    if not unused:
        return "No new feedback since the last update (new messages of the chat still count)."
    counts = Counter(item.kind for item in unused)
    kinds = ", ".join(f"{counts[k]} {KIND_LABELS[k][2]}" for k in KIND_LABELS if counts[k])
    noun = "item" if len(unused) == 1 else "items"
    return f"New since the last update: {len(unused)} feedback {noun} ({kinds})."


def item_detail(item: Any, turns: int = 3) -> Text:
    """The selected item in full: the last `turns` of its transcript, then its message."""
    text = Text()
    if len(item.transcript) > turns:
        text.append(f"… {len(item.transcript) - turns} earlier turns\n", style="dim")
    for speaker, said in item.transcript[-turns:]:
        text.append(f"{speaker}  ", style="bold")
        text.append(said + "\n")
    text.append(f"{item.speaker}  ", style="bold")
    text.append(item.reply, style="strike" if item.better else "")
    if item.better:
        text.append("\n→ ", style="bold")
        text.append(item.better)
    if item.candidates:
        text.append(f"\n({len(item.candidates)} best-of-N candidates kept)", style="dim")
    return text


# -- an update's outcome ----------------------------------------------------------------------


def forgetting_rows(table: Sequence[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Rows of the forgetting table from `LearnOutcome.to_json()["forgetting"]`: perplexity
    before → after with its relative change, Hits@1 before → after with its change in points."""
    rows = []
    for row in table:
        ppl = (f"{row['perplexity_before']:.2f} → {row['perplexity_after']:.2f} "
               f"({row['perplexity_change'] * 100:+.1f}%)")  # fmt: skip
        hits = (f"{row['hits_at_1_before']:.2f} → {row['hits_at_1_after']:.2f} "
                f"({row['hits_at_1_change'] * 100:+.1f} pts)")  # fmt: skip
        ok = Text("✓", style="green") if row["ok"] else Text("✗", style="bold red")
        rows.append((row["slice"], [Text(row["slice"]), str(row["items"]), ppl, hits, ok]))
    return rows


def verdict(outcome: dict[str, Any]) -> Content:
    """One line: whether the new version is in use now, and why."""
    if outcome["status"] != "done":
        return Content.from_markup(
            "Stopped: version $v can resume; the chat keeps version $c.",
            v=str(outcome["version"]), c=str(outcome["current"]),
        )  # fmt: skip
    if outcome["promoted"]:
        return Content.from_markup(
            "[b]Promoted[/b]: version $v is now in use. $why",
            v=str(outcome["version"]), why=outcome["reason"],
        )  # fmt: skip
    return Content.from_markup(
        "[b]Not promoted[/b]: $why. The chat keeps version $c; Keep anyway uses version $v.",
        why=outcome["reason"].rstrip("."), c=str(outcome["current"]), v=str(outcome["version"]),
    )  # fmt: skip


def learnt_line(outcome: dict[str, Any]) -> str:
    """What the update learnt from (its counts), in a few words."""
    counts = {k: v for k, v in (outcome.get("counts") or {}).items() if v}
    if not counts:
        return ""
    words = [f"{v} {LEARNT_WORDS.get(k, k.replace('_', ' '))}" for k, v in counts.items()]
    return "Learnt from: " + ", ".join(words)


def version_rows(versions: Sequence[Any], current: int) -> list[tuple[str, list[Any]]]:
    """Rows of the versions table, newest first; ▶ marks the one the chat uses."""
    rows = []
    for v in reversed(versions):
        note = v.record.get("reason", "") if v.status == "done" else ""
        cells = ["▶" if v.version == current else "", str(v.version), when(v.created),
                 v.status, "yes" if v.kept else "no", Text(short(str(note), 40))]  # fmt: skip
        rows.append((str(v.version), cells))
    return rows


def stage_line(event: Any) -> str:
    """The status line for a `LearnEvent`."""
    stage = event.stage.capitalize()
    if event.train is not None and getattr(event.train, "kind", "step") == "step":
        t = event.train
        eta = f", about {t.eta_s:.0f} s left" if t.eta_s else ""
        return f"{stage}: step {t.step} of {t.total_steps}, loss {t.loss:.3f}{eta}"
    if event.total:
        return f"{stage}: {event.message or ''} {event.done} of {event.total}".replace("  ", " ")
    return f"{stage}: {event.message}" if event.message else f"{stage}…"
