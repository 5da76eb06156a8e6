"""Inline SVG charts for the report: no plotting library, no image files to lose.

Every chart has time (seconds since the campaign started) on x and shades the fault
windows; `scatter` and `lines` differ in how the series are drawn.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WIDTH_PX = 960
PLOT_HEIGHT_PX = 260
MARGIN_LEFT_PX = 64
MARGIN_RIGHT_PX = 16
MARGIN_TOP_PX = 24
MARGIN_BOTTOM_PX = 36
TIMELINE_ROW_PX = 12
FAULT_COLOURS = {
    "kill": "#d62728",
    "crash": "#8c564b",
    "pause": "#9467bd",
    "partition": "#ff7f0e",
    "clock-bump": "#2ca02c",
    "clock-strobe": "#17becf",
}
OUTCOME_COLOURS = {"ok": "#1f77b4", "fail": "#d62728", "info": "#ff7f0e"}


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Axes:
    x_max: float
    y_min: float
    y_max: float
    log_y: bool
    height_px: int = PLOT_HEIGHT_PX

    def x(self, value: float) -> float:
        span = WIDTH_PX - MARGIN_LEFT_PX - MARGIN_RIGHT_PX
        return MARGIN_LEFT_PX + span * value / max(self.x_max, 1e-9)

    def y(self, value: float) -> float:
        low, high, value = self.y_min, self.y_max, max(value, self.y_min)
        if self.log_y:
            low, high, value = math.log10(low), math.log10(high), math.log10(value)
        fraction = (value - low) / max(high - low, 1e-9)
        return MARGIN_TOP_PX + self.height_px * (1 - fraction)


def _escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _text(x: float, y: float, content: Any, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" class="tick" text-anchor="{anchor}"{extra}>'
        f"{_escape(content)}</text>"
    )


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    step = 10 ** math.floor(math.log10(max((high - low) / count, 1e-9)))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _frame(axes: Axes, title: str, y_label: str, windows: list[dict[str, Any]]) -> list[str]:
    bottom = MARGIN_TOP_PX + axes.height_px
    parts = [f'<text x="{MARGIN_LEFT_PX}" y="16" class="title">{_escape(title)}</text>']
    for window in windows:
        x0 = axes.x(window["start_ns"] / 1e9)
        x1 = max(axes.x(window["end_ns"] / 1e9), x0 + 1)
        colour = FAULT_COLOURS.get(window["f"], "#7f7f7f")
        parts.append(
            f'<rect x="{x0:.1f}" y="{MARGIN_TOP_PX}" width="{x1 - x0:.1f}" '
            f'height="{axes.height_px}" fill="{colour}" fill-opacity="0.12">'
            f"<title>{_escape(window['f'])} {_escape(window.get('value'))}</title></rect>"
        )
    for tick in _ticks(0, axes.x_max):
        x = axes.x(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" class="axis"/>'
        )
        parts.append(_text(x, bottom + 16, f"{tick:g}", "middle"))
    for tick in _y_ticks(axes):
        y = axes.y(tick)
        parts.append(
            f'<line x1="{MARGIN_LEFT_PX}" x2="{WIDTH_PX - MARGIN_RIGHT_PX}" y1="{y:.1f}" '
            f'y2="{y:.1f}" class="grid"/>'
        )
        parts.append(_text(MARGIN_LEFT_PX - 6, y + 4, f"{tick:g}", "end"))
    parts.append(
        f'<line x1="{MARGIN_LEFT_PX}" x2="{WIDTH_PX - MARGIN_RIGHT_PX}" y1="{bottom}" '
        f'y2="{bottom}" class="axis"/>'
    )
    parts.append(_text(WIDTH_PX / 2, bottom + 32, "time (s)", "middle"))
    middle = MARGIN_TOP_PX + axes.height_px / 2
    parts.append(_text(14, middle, y_label, "middle", f' transform="rotate(-90 14 {middle})"'))
    return parts


def _y_ticks(axes: Axes) -> list[float]:
    if not axes.log_y:
        return _ticks(axes.y_min, axes.y_max)
    low, high = math.floor(math.log10(axes.y_min)), math.ceil(math.log10(axes.y_max))
    return [10.0**power for power in range(low, high + 1)]


def _svg(parts: list[str], height_px: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{height_px}" '
        f'viewBox="0 0 {WIDTH_PX} {height_px}" role="img">' + "".join(parts) + "</svg>"
    )


def _legend(series: Sequence[Series]) -> list[str]:
    parts, x = [], MARGIN_LEFT_PX + 260
    for entry in series:
        parts.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{entry.colour}"/>')
        parts.append(_text(x + 14, 15, entry.label))
        x += 18 + 7 * len(entry.label)
    return parts


def chart(
    title: str,
    y_label: str,
    series: Sequence[Series],
    windows: list[dict[str, Any]],
    duration_s: float,
    *,
    log_y: bool = False,
    lines: bool = False,
) -> str:
    values = [y for entry in series for _, y in entry.points]
    y_min = min((v for v in values if v > 0), default=1.0) if log_y else 0.0
    y_max = max(values, default=1.0)
    axes = Axes(max(duration_s, 1.0), y_min, max(y_max * 1.05, y_min * 10 if log_y else 1.0), log_y)
    parts = _frame(axes, title, y_label, windows)
    for entry in series:
        if lines:
            path = " ".join(f"{axes.x(x):.1f},{axes.y(y):.1f}" for x, y in entry.points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{entry.colour}" '
                'stroke-width="1.5"/>'
            )
        else:
            parts += [
                f'<circle cx="{axes.x(x):.1f}" cy="{axes.y(y):.1f}" r="1.6" '
                f'fill="{entry.colour}" fill-opacity="0.6"/>'
                for x, y in entry.points
            ]
    parts += _legend(series)
    return _svg(parts, MARGIN_TOP_PX + PLOT_HEIGHT_PX + MARGIN_BOTTOM_PX)


@dataclass(frozen=True)
class Bar:
    row: int
    start_s: float
    end_s: float
    colour: str
    label: str


def timeline(
    rows: list[str], bars: list[Bar], windows: list[dict[str, Any]], duration_s: float
) -> str:
    """One row per process, one bar per op from its invocation to its completion."""
    height_px = max(len(rows), 1) * TIMELINE_ROW_PX
    axes = Axes(max(duration_s, 1.0), 0, 1, False, height_px)
    parts = _frame(axes, "ops per process", "", windows)
    for index, name in enumerate(rows):
        y = MARGIN_TOP_PX + index * TIMELINE_ROW_PX
        parts.append(_text(MARGIN_LEFT_PX - 6, y + 9, name, "end"))
    for bar in bars:
        x0 = axes.x(bar.start_s)
        width = max(axes.x(bar.end_s) - x0, 1.0)
        y = MARGIN_TOP_PX + bar.row * TIMELINE_ROW_PX + 1
        parts.append(
            f'<rect x="{x0:.1f}" y="{y}" width="{width:.1f}" height="{TIMELINE_ROW_PX - 2}" '
            f'fill="{bar.colour}"><title>{_escape(bar.label)}</title></rect>'
        )
    return _svg(parts, MARGIN_TOP_PX + height_px + MARGIN_BOTTOM_PX)
