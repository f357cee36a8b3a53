"""The Evaluate screen's parts: a chart of one figure (a horizontal bar per variant, with its
interval), and the style table."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.widget import Widget
from textual.widgets import Static

VARIANT_LABELS = {
    "base": "base",
    "in_context": "prompted",
    "tuned": "tuned",
    "best_of_n": "best-of-N",
}
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, top: float, width: int) -> str:
    """`value` of `top` as a bar of `width` cells, in eighths of a cell."""
    eighths = round(max(0.0, min(value / top, 1.0)) * width * 8) if top > 0 else 0
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(width)


class FigureBars(Widget):
    """`title` over one bar per variant: the value, its 95% interval, and a goal mark (│) when
    the figure has a goal. `top` fixes the scale (None: the largest value)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "figure-bars--title",
        "figure-bars--label",
        "figure-bars--goal",
        *(f"figure-bars--{v}" for v in VARIANT_LABELS),
    }
    DEFAULT_CSS = "FigureBars { height: auto; }"  # its colours: convsim.tcss

    def __init__(
        self,
        title: str,
        figure: str,
        *,
        goal: float | None = None,
        top: float | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title, self.figure, self.goal, self.top = title, figure, goal, top
        self.report: dict[str, Any] = {}

    def show(self, report: dict[str, Any]) -> None:
        self.report = report
        self.refresh(layout=True)

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return 1 + sum(isinstance(self.report.get(v), dict) for v in VARIANT_LABELS)

    def render(self) -> Text:
        text = Text(self.title + "\n", style=self.get_component_rich_style("figure-bars--title"))
        rows = [
            (v, self.report[v].get(self.figure), self.report[v].get("intervals", {}))
            for v in VARIANT_LABELS
            if isinstance(self.report.get(v), dict)
        ]
        values = [value for _, value, _ in rows if isinstance(value, (int, float))]
        top = self.top or max([*values, self.goal or 0.0, 1e-9])
        label = self.get_component_rich_style("figure-bars--label")
        width = max(8, self.size.width - 34)
        goal_at = round(self.goal / top * width) if self.goal is not None else None
        for i, (variant, value, intervals) in enumerate(rows):
            text.append(f"{VARIANT_LABELS[variant]:>10} ", style=label)
            if not isinstance(value, (int, float)):
                text.append("n/a")
            else:
                cells = bar(value, top, width)
                if goal_at is not None and 0 <= goal_at < width:
                    text.append(cells[:goal_at], style=self.get_component_rich_style(
                        f"figure-bars--{variant}"))  # fmt: skip
                    text.append("│", style=self.get_component_rich_style("figure-bars--goal"))
                    cells = cells[goal_at + 1 :]
                text.append(cells, style=self.get_component_rich_style(f"figure-bars--{variant}"))
                ci = intervals.get(self.figure) or []
                spread = f" ({ci[0]:.2f}–{ci[1]:.2f})" if len(ci) == 2 and None not in ci else ""
                text.append(f" {value:.2f}{spread}", style=label)
            if i < len(rows) - 1:
                text.append("\n")
        return text


SHORT_FEATURES = {"messages_per_turn": "msgs/turn"}  # for the narrow layout


class StyleTable(Static):
    """Style KS per feature for each variant, with its 95% interval (`show`): green where the
    KS is within the 0.10 goal, then the sentences on the persona against the prompted base.
    The intervals shrink to fit the width (0.12 (.07-.27)), and go where even that does not."""

    FEATURE = 18  # the feature's column, "messages_per_turn" and a space

    def __init__(self, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.report: dict[str, Any] | None = None

    def show(self, report: dict[str, Any] | None) -> None:
        self.report = report
        self.update(style_table(report, self.content_region.width) if report else "")

    def on_resize(self, event: events.Resize) -> None:
        if self.report is not None:
            self.show(self.report)


def style_table(report: dict[str, Any], width: int) -> str:
    """The `StyleTable` of `report` for `width` cells (0: unknown, as wide as it needs)."""
    from convsim.core.evaluation import style_interval, versus_in_context

    variants = [v for v in VARIANT_LABELS if isinstance(report.get(v), dict)]
    features = list(report[variants[0]]["style_ks"]) if variants else []
    spans = any(style_interval(report[v], f) for v in variants for f in features)
    # A cell as 0.12 (0.07-0.27), else as 0.12 (.07-.27) beside shorter feature names, else as
    # 0.12 alone: the first that fits.
    layouts = [(StyleTable.FEATURE, 18, False), (12, 15, True)] if spans else []
    name_width, column, short = next(
        (c for c in layouts if not width or c[0] + len(variants) * c[1] <= width),
        (StyleTable.FEATURE, 11, False),
    )
    shown = column > 11
    names = SHORT_FEATURES if short else {}

    def interval(x: float) -> str:
        return f"{x:.2f}"[1:] if short and 0 <= x < 1 else f"{x:.2f}"

    lines = ["[b]Style[/b]: KS distance to their real messages (0 = same; goal ≤ 0.10)"]
    heads = "".join(f"{VARIANT_LABELS[v]:>{column}}" for v in variants)
    lines.append(" " * name_width + heads)
    for feature in features:
        cells = ""
        for v in variants:
            ks, ci = report[v]["style_ks"].get(feature), style_interval(report[v], feature)
            cell = "n/a" if ks is None else f"{ks:.2f}"
            if shown and ks is not None and ci and None not in ci:
                cell += f" ({interval(ci[0])}-{interval(ci[1])})"
            good = ks is not None and ks <= 0.10
            cells += f"[green]{cell:>{column}}[/green]" if good else f"{cell:>{column}}"
        lines.append(f"{names.get(feature, feature):>{name_width - 1}} {cells}")
    if spans and not shown:
        lines.append("(95% intervals: in a wider window, and in the report)")
    lines += versus_in_context(report)
    return "\n".join(lines)
