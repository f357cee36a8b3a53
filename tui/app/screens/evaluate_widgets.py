"""The Evaluate screen's chart: one figure, a horizontal bar per variant, with its interval."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.widget import Widget

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
