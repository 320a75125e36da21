"""A line chart of a few series over days, laid out for an inline SVG: plain values in,
coordinates out (no I/O, no markup), so that the page's template only draws what this says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

WIDTH = 720
HEIGHT = 240
LEFT = 56  # room for the y-axis labels
RIGHT = 12
TOP = 12
BOTTOM = 28  # room for the x-axis labels


@dataclass(frozen=True)
class Series:
    """One line: its name (also its CSS class) and a value per day."""

    name: str
    label: str
    values: Sequence[int]


@dataclass(frozen=True)
class Line:
    name: str
    label: str
    points: str  # "x,y x,y ..." for <polyline points>


@dataclass(frozen=True)
class Tick:
    at: float  # the coordinate along its axis
    label: str
    anchor: str = "middle"  # SVG text-anchor: the last x label ends at the plot's edge


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    lines: tuple[Line, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]


def _nice_top(highest: int) -> int:
    """The y-axis top: 1, 2 or 5 times a power of ten, at or above `highest` (at least 4)."""
    top = max(highest, 4)
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor * 4 >= top:
                return step * factor * 4
        step *= 10


def draw_days(days: Sequence[date], series: Sequence[Series], label_every: int = 7) -> Chart:
    """Lay out `series` (each with one value per day of `days`) as lines on a shared y-axis
    from zero; the x-axis names every `label_every`th day, counted back from the last."""
    plot_right = WIDTH - RIGHT
    plot_bottom = HEIGHT - BOTTOM
    span_x = plot_right - LEFT
    span_y = plot_bottom - TOP
    top = _nice_top(max((v for s in series for v in s.values), default=0))

    def x(index: int) -> float:
        return LEFT + (span_x * index / (len(days) - 1) if len(days) > 1 else span_x / 2)

    def y(value: float) -> float:
        return plot_bottom - span_y * value / top

    lines = tuple(
        Line(
            s.name,
            s.label,
            " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values)),
        )
        for s in series
    )
    y_ticks = tuple(Tick(y(top * k / 4), f"{top * k // 4:,}") for k in range(5))
    last = len(days) - 1
    x_ticks = tuple(
        Tick(x(i), days[i].strftime("%b %d"), "end" if i == last else "middle")
        for i in range(last, -1, -label_every)
    )[::-1]
    return Chart(WIDTH, HEIGHT, LEFT, plot_right, TOP, plot_bottom, lines, y_ticks, x_ticks)
