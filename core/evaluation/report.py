"""The suite's report as files a user can open or share: `eval.json` and `report.html`.

The HTML page is self-contained (inline CSS and SVG charts, no script, nothing fetched): one
grouped bar chart per question, with the bootstrap intervals as whiskers and the issue's goals
as dashed lines, then every figure in a table. It holds no chat text, only numbers.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convsim.core.files import write_json, write_text

__all__ = [
    "CHARTS",
    "LABELS",
    "chance_side",
    "forever_sentence",
    "render",
    "replies_of",
    "save",
    "temperature_of",
    "versus_in_context",
]

LABELS = {
    "base": "base model",
    "in_context": "base + their messages as a prompt",
    "tuned": "tuned persona",
    "best_of_n": "tuned, best of N",
}
COLOURS = {"base": "#9aa5b1", "in_context": "#e0a458", "tuned": "#3d7dca", "best_of_n": "#2a9d8f"}

# (title, [(figure, label)], goal line or None, axis maximum or None = from the data)
CHARTS: list[tuple[str, list[tuple[str, str]], float | None, float | None]] = [
    ("Picks their real reply out of 20 (Hits@1, higher is better)",
     [("hits_at_1_others", "vs other people"),
      ("hits_at_1_same_person", "vs their other moments")], None, 1.0),
    ("Reads like them (authorship: 0 = others, 1 = them)", [("authorship", "authorship")],
     0.5, None),
    ("Told apart from the real thing (detector accuracy, 0.5 = can't)",
     [("detector_accuracy", "accuracy")], 0.65, 1.0),
    ("Surprise at their real replies (perplexity, lower is better)", [("perplexity", "perplexity")],
     None, None),
]  # fmt: skip


# Reports from before the suite recorded its temperature were sampled at the default then.
OLD_DEFAULT_TEMPERATURE = 0.8


def temperature_of(report: dict[str, Any]) -> float:
    """The sampling temperature of the report's generated replies."""
    return float(report.get("temperature", OLD_DEFAULT_TEMPERATURE))


def replies_of(report: dict[str, Any]) -> str:
    """How many replies each variant generated per moment, in words ("3 replies per moment");
    reports saved before the suite had the choice generated one."""
    n = int(report.get("replies_per_moment", 1))
    return f"{n} {'reply' if n == 1 else 'replies'} per moment"


def style_interval(figures: dict[str, Any], feature: str) -> list[Any]:
    """A variant's 95% interval of a style feature's KS, `[low, high]`; [] when its report has
    none (saved before style had intervals)."""
    return list(figures.get("intervals", {}).get("style_ks", {}).get(feature, []))


def chance_side(span: Sequence[Any] | None) -> int | None:
    """Where a difference's 95% interval `[low, high]` lies: -1 wholly below 0, 1 wholly above
    it, 0 across it (within chance); None when there is none."""
    if not span or None in span:
        return None
    low, high = span
    return -1 if high < 0 else 1 if low > 0 else 0


def versus_in_context(report: dict[str, Any]) -> list[str]:
    """One sentence for the tuned persona and one for best-of-N: on how many style features it
    is closer to the person than the prompted base, and which differences are beyond chance
    (`style_ks_vs_in_context` and its paired interval, `chance_side`); none for a variant
    the report has no such figures for."""
    return [
        _versus(report[v], v)
        for v in ("tuned", "best_of_n")
        if isinstance(report.get(v), dict) and report[v].get("style_ks_vs_in_context")
    ]


def _versus(figures: dict[str, Any], variant: str) -> str:
    spans = figures.get("intervals", {}).get("style_ks_vs_in_context", {})
    known = {f: d for f, d in figures["style_ks_vs_in_context"].items() if d is not None}
    closer = [f for f, d in known.items() if d < 0]
    farther = [f for f, d in known.items() if d >= 0]

    def sure(names: list[str], side: int) -> str:
        chance = [f for f in names if chance_side(spans.get(f)) == side]
        return f"beyond chance on {_listed(chance)}" if chance else "none beyond chance"

    label = LABELS[variant][:1].upper() + LABELS[variant][1:]
    text = (
        f"{label} against {LABELS['in_context']}: closer to them on {len(closer)} of "
        f"{len(known)} style features ({sure(closer, -1)})"
    )
    if farther:
        text += f"; not closer on {_listed(farther)} ({sure(farther, 1)})"
    return text + "."


def _listed(names: list[str]) -> str:
    return ", ".join(n.replace("_", " ") for n in names)


def save(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write `eval.json` and `report.html` into `folder` (atomically); their paths."""
    json_path, html_path = folder / "eval.json", folder / "report.html"
    write_json(json_path, report)
    write_text(html_path, render(report))
    return json_path, html_path


def forever_sentence(report: dict[str, Any]) -> str:
    """The forever conversation's figures beside the real chat's, as one sentence ("" when the
    report has none). A figure that could not be measured (no word pairs in messages of one
    word each) reads "n/a"."""
    f = report.get("forever") or {}
    if not f.get("seeds"):
        return ""
    figures = [("distinct-2", "distinct_2"), ("exact repeats", "exact_repeats"),
               ("loops", "loop_rate")]  # fmt: skip
    said = ", ".join(
        f"{label} {_two(f.get(key))} ({_two(f.get('real_' + key))})" for label, key in figures
    )
    return (
        f"Forever conversation ({f.get('turns')} turns × {f.get('seeds')}), real chat in "
        f"brackets: {said}"
    )


def _two(x: Any) -> str:
    """A figure to two decimals; "n/a" for one not measured (None or NaN)."""
    return f"{x:.2f}" if isinstance(x, (int, float)) and x == x else "n/a"


def _tick(x: float) -> str:
    """An axis label: 150, 37.5, 0.25 (never 1e+02)."""
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


def _variants(report: dict[str, Any]) -> list[str]:
    return [v for v in LABELS if isinstance(report.get(v), dict)]


def bars(
    groups: Sequence[tuple[str, Sequence[tuple[str, float | None, Sequence[Any]]]]],
    goal: float | None,
    top: float | None,
    width: int = 640,
) -> str:
    """An SVG grouped bar chart: per group (label, [(variant, value, [low, high])])."""
    values = [v for _, series in groups for _, v, _ in series if v is not None]
    highs = [ci[1] for _, series in groups for _, _, ci in series if ci and ci[1] is not None]
    top = top or max([*values, *highs, goal or 0, 1e-9]) * 1.1
    height, left, plot_h = 190, 40, 150
    slot = (width - left - 10) / max(len(groups), 1)
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for k in range(5):
        y = 10 + plot_h * (1 - k / 4)
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" class="tick">{_tick(top * k / 4)}</text>')
    for g, (label, series) in enumerate(groups):
        x0 = left + g * slot + slot * 0.1
        bw = slot * 0.8 / max(len(series), 1)
        for s, (variant, value, ci) in enumerate(series):
            if value is None:
                continue
            h = plot_h * min(value / top, 1.0)
            x = x0 + s * bw
            out.append(
                f'<rect x="{x:.1f}" y="{10 + plot_h - h:.1f}" width="{bw * 0.9:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[variant]}"><title>{LABELS[variant]}: '
                f"{value:.3g}</title></rect>"
            )
            if ci and None not in ci:
                y_lo = 10 + plot_h * (1 - min(ci[0] / top, 1.0))
                y_hi = 10 + plot_h * (1 - min(ci[1] / top, 1.0))
                cx = x + bw * 0.45
                out.append(
                    f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y_lo:.1f}" y2="{y_hi:.1f}" '
                    'class="ci"/>'
                )
        out.append(
            f'<text x="{x0 + slot * 0.4:.1f}" y="{height - 12}" class="label">'
            f"{html.escape(label)}</text>"
        )
    if goal is not None:
        y = 10 + plot_h * (1 - goal / top)
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="goal"/>')
        out.append(f'<text x="{width - 12}" y="{y - 3:.1f}" class="goaltext">goal {goal:g}</text>')
    out.append("</svg>")
    return "".join(out)


def _series(report: dict[str, Any], figure: str) -> list[tuple[str, float | None, Sequence[Any]]]:
    return [
        (v, report[v].get(figure), report[v].get("intervals", {}).get(figure, []))
        for v in _variants(report)
    ]


def render(report: dict[str, Any]) -> str:
    """The report page (see the module docstring)."""
    variants = _variants(report)
    who = html.escape(str(report.get("person", "")))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Is it really {who}? ({html.escape(str(report.get('model_id')))})</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Is it really {who}?</h1>",
        f"<p>Persona <b>{html.escape(str(report.get('model_id')))}</b>, measured on "
        f"{report.get('items')} held-out moments (the chat's latest sessions, never trained on)"
        f"{' in quick mode' if report.get('quick') else ''}, {replies_of(report)} sampled at "
        f"temperature {temperature_of(report)}, in {report.get('seconds')} s. "
        "Whiskers are bootstrap 95% intervals.</p>",
        "<p class='legend'>"
        + " ".join(
            f"<span><i style='background:{COLOURS[v]}'></i>{LABELS[v]}</span>" for v in variants
        )
        + "</p>",
    ]
    for title, figures, goal, top in CHARTS:
        groups = [(label, _series(report, fig)) for fig, label in figures]
        parts.append(f"<h2>{html.escape(title)}</h2>{bars(groups, goal, top)}")
    features = list(report[variants[0]].get("style_ks", {})) if variants else []
    groups = [(f, [(v, report[v]["style_ks"].get(f), style_interval(report[v], f))
                   for v in variants]) for f in features]  # fmt: skip
    parts.append(
        "<h2>Style: KS distance of each feature to their real messages (lower is better)</h2>"
        + bars(groups, 0.10, 1.0, width=max(640, 90 * len(features)))
    )
    parts += [f"<p>{html.escape(line)}</p>" for line in versus_in_context(report)]
    parts.append(_table(report, variants))
    forever = report.get("forever") or {}
    if forever.get("seeds"):
        rows = "".join(
            f"<tr><td>{name.replace('_', ' ')}</td><td>{_fmt(forever.get(name))}</td>"
            f"<td>{_fmt(forever.get('real_' + name))}</td></tr>"
            for name in ("distinct_2", "exact_repeats", "loop_rate")
        )
        parts.append(
            f"<h2>Forever conversation ({forever.get('turns')} turns x {forever.get('seeds')} "
            "seeds)</h2><p>Each figure is a share of the messages (distinct-2: of the word pairs), "
            "measured in blocks of 100 messages and averaged.</p><table><tr><th></th>"
            f"<th>persona</th><th>real chat</th></tr>{rows}</table>"
        )
    parts.append(
        f"<details><summary>Raw figures (eval.json)</summary><pre>"
        f"{html.escape(json.dumps(report, indent=1))}</pre></details></body></html>"
    )
    return "\n".join(parts)


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return f"{x:.3g}" if isinstance(x, float) else html.escape(str(x))


def _table(report: dict[str, Any], variants: list[str]) -> str:
    names = [
        "perplexity", "hits_at_1_others", "hits_at_1_same_person", "mrr_others",
        "mrr_same_person", "authorship", "detector_accuracy", "first_message_s",
    ]  # fmt: skip
    head = "".join(f"<th>{LABELS[v]}</th>" for v in variants)
    rows = []
    for name in names:
        cells = ""
        for v in variants:
            ci = report[v].get("intervals", {}).get(name)
            extra = (
                f" <small>({_fmt(ci[0])}-{_fmt(ci[1])})</small>" if ci and None not in ci else ""
            )
            cells += f"<td>{_fmt(report[v].get(name))}{extra}</td>"
        rows.append(f"<tr><td>{name.replace('_', ' ')}</td>{cells}</tr>")
    return f"<h2>All figures</h2><table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{font-size:1.05rem;margin-top:2rem} svg{display:block;max-width:100%;height:auto}
.grid{stroke:#e3e6ea}.ci{stroke:#222;stroke-width:1.5}.goal{stroke:#c0392b;stroke-dasharray:5 4}
.tick{font-size:10px;text-anchor:end;fill:#666}.label{font-size:11px;text-anchor:middle}
.goaltext{font-size:10px;text-anchor:end;fill:#c0392b}
.legend span{margin-right:1.2rem}.legend i{display:inline-block;width:.8rem;height:.8rem;
margin-right:.3rem;vertical-align:middle}
table{border-collapse:collapse;margin-top:.5rem}td,th{border-bottom:1px solid #e3e6ea;
padding:.25rem .6rem;text-align:right}td:first-child{text-align:left}small{color:#777}
pre{font-size:11px;background:#f6f7f9;padding:.6rem;overflow:auto}
"""
