"""Time charts as inline SVG: lines (or stacked areas) over a shared time axis, with event
markers. Pure string building; the page's CSS colours the classes.

    axis = TimeAxis(start_epoch, end_epoch)
    svg = time_chart("latency", axis, [Line("v2 p99", "#1f77b4", points)], markers,
                     y_label="latency (ms)", log_y=True)

Every chart carries ``data-chart``; every drawn series a path with ``data-series`` and
``data-points`` (how many values it joins), so a browser test can tell a drawn chart from
an empty one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

WIDTH, HEIGHT = 1000, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 34, 42
TIME_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                43200, 86400, 172800, 604800)  # fmt: skip
CHAR_W = 6.3  # px per character of the 11 px labels, for laying labels out without a browser


@dataclass(frozen=True)
class Line:
    """One series: (epoch seconds, value or None) points; a None breaks the line."""

    name: str
    color: str
    points: Sequence[tuple[float, float | None]]
    dash: str | None = None
    width: float = 2.0
    tips: Sequence[str] = field(default_factory=tuple)  # one tooltip per point, optional
    key: str = ""  # what the legend toggles (a version: "v2")
    max_gap: float | None = None  # seconds: points further apart are not joined


@dataclass(frozen=True)
class Marker:
    """A moment from the audit log: ``kind`` is rollback, promote, canary, hold or shadow."""

    t: float
    kind: str
    label: str
    title: str = ""


@dataclass(frozen=True)
class Guide:
    """A horizontal reference line (an SLO, a threshold)."""

    value: float
    label: str


@dataclass(frozen=True)
class TimeAxis:
    start: float
    end: float

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1.0)

    def x(self, t: float) -> float:
        return LEFT + (t - self.start) / self.span * (WIDTH - LEFT - RIGHT)


def time_chart(
    chart_id: str,
    axis: TimeAxis,
    lines: Sequence[Line],
    markers: Sequence[Marker] = (),
    *,
    y_label: str,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    log_y: bool = False,
    y_max: float | None = None,
    guides: Sequence[Guide] = (),
    stacked: bool = False,
    empty: str = "no data in this period",
) -> str:
    """The whole ``<svg>``. ``stacked``: the lines are stacked areas (values add up)."""
    values = [v for line in lines for _, v in line.points if v is not None]
    if stacked:
        lines = _stack(lines)
        values = [v for line in lines for _, v in line.points if v is not None]
    top = y_max if y_max is not None else _top([*values, *(g.value for g in guides)], log_y)
    scale = _LogScale(top, values) if log_y else _LinearScale(top)
    parts = [
        f'<svg class="chart" data-chart="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(y_label)} over time">',
        _grid(scale, y_format, y_label),
        _time_axis(axis),
    ]
    parts += [_guide(scale, g) for g in guides]
    parts += [_marker_line(axis, m) for m in markers]
    parts.append(_rollback_labels(axis, markers))
    if not values:
        x, y = (LEFT + WIDTH - RIGHT) / 2, (TOP + HEIGHT - BOTTOM) / 2
        parts.append(f'<text class="empty" x="{x:.0f}" y="{y:.0f}">{escape(empty)}</text>')
    for i, line in enumerate(lines):
        if stacked:
            below = lines[i - 1].points if i else [(t, 0.0) for t, _ in line.points]
            parts.append(_area(axis, scale, line, below))
        else:
            parts.append(_path(axis, scale, line))
    parts.append("</svg>")
    return "\n".join(p for p in parts if p)


def event_lane(axis: TimeAxis, markers: Sequence[Marker]) -> str:
    """The markers' labels in rows above the charts, none overlapping, on the same time axis."""
    ordered = sorted(markers, key=lambda m: m.t)
    placed = layout_labels([(axis.x(m.t), m.label) for m in ordered])
    height = 10 + 16 * (max((row for _, _, row in placed), default=0) + 1)
    parts = [
        f'<svg class="lane" data-chart="events" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="deployment events">'
    ]
    for m, (tx, anchor, row) in zip(ordered, placed, strict=True):
        x, y = axis.x(m.t), 16 * row + 18
        title = f"<title>{escape(m.title or m.label)}</title>"
        parts.append(
            f'<g class="ev {escape(m.kind)}" data-event="{escape(m.kind)}">{title}'
            f'<line x1="{x:.1f}" y1="{y - 11}" x2="{x:.1f}" y2="{height}"/>'
            f'<text x="{tx:.1f}" y="{y}" text-anchor="{anchor}">{escape(m.label)}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def layout_labels(
    items: Sequence[tuple[float, str]], char_w: float = CHAR_W, right: float = WIDTH - RIGHT
) -> list[tuple[float, str, int]]:
    """(text x, text-anchor, row) per (x, label), in order: a label starts just right of its
    x, or ends just left of it when it would run past ``right``, in the first row where it
    overlaps no other label."""
    rows: list[list[tuple[float, float]]] = []
    out = []
    for x, text in items:
        width = len(text) * char_w
        if x + 3 + width > right:
            tx, anchor, span = x - 3, "end", (x - 3 - width - 4, x)
        else:
            tx, anchor, span = x + 3, "start", (x, x + 3 + width + 4)
        row = next(
            (i for i, spans in enumerate(rows)
             if all(span[1] <= lo or span[0] >= hi for lo, hi in spans)),
            None,
        )  # fmt: skip
        if row is None:
            rows.append([])
            row = len(rows) - 1
        rows[row].append(span)
        out.append((tx, anchor, row))
    return out


def version_color(version: int) -> str:
    """A colour per version, the same on every chart (red is kept for rollbacks)."""
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#bcbd22", "#7f7f7f", "#393b79")  # fmt: skip
    return palette[(version - 1) % len(palette)]


def time_ticks(axis: TimeAxis, most: int = 8) -> list[tuple[float, str]]:
    """Round times inside the axis, at most ``most``, labelled in UTC."""
    step = next((s for s in TIME_STEPS_S if axis.span / s <= most), TIME_STEPS_S[-1])
    fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    if axis.span > 86400:
        fmt = "%m-%d %H:%M"
    first = math.ceil(axis.start / step)
    last = math.floor(axis.end / step + 1e-9)
    return [
        (float(i * step), datetime.fromtimestamp(i * step, UTC).strftime(fmt))
        for i in range(first, last + 1)
    ]


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and round values up to ``top``."""
    if top <= 0:
        return [0.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(top / step + 1e-9) + 1)]


# -- scales ------------------------------------------------------------------------------------
class _LinearScale:
    def __init__(self, top: float) -> None:
        self.top = top if top > 0 else 1.0

    def y(self, v: float) -> float:
        return HEIGHT - BOTTOM - max(0.0, min(v, self.top)) / self.top * (HEIGHT - TOP - BOTTOM)

    def ticks(self) -> list[float]:
        return nice_ticks(self.top)


class _LogScale:
    def __init__(self, top: float, values: Sequence[float]) -> None:
        positive = [v for v in values if v > 0]
        low = min(positive, default=top / 100)
        self.lo = 10 ** math.floor(math.log10(low))
        self.hi = 10 ** math.ceil(math.log10(max(top, self.lo * 10)))

    def y(self, v: float) -> float:
        v = min(max(v, self.lo), self.hi)
        frac = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return HEIGHT - BOTTOM - frac * (HEIGHT - TOP - BOTTOM)

    def ticks(self) -> list[float]:
        out, decade = [], self.lo
        decades = math.log10(self.hi / self.lo)
        steps = (1, 2, 5) if decades <= 3 else (1,)
        while decade <= self.hi * 1.0001:
            out += [decade * s for s in steps if decade * s <= self.hi * 1.0001]
            decade *= 10
        return out


def _top(values: Sequence[float], log_y: bool) -> float:
    top = max(values, default=1.0)
    if log_y:
        return top
    ticks = nice_ticks(top * 1.08)
    return ticks[-1] if ticks[-1] >= top * 1.08 else ticks[-1] + (ticks[1] if len(ticks) > 1 else 1)


# -- pieces ------------------------------------------------------------------------------------
def _grid(scale: _LinearScale | _LogScale, fmt: Callable[[float], str], label: str) -> str:
    parts = ['<g class="grid">']
    for v in scale.ticks():
        y = scale.y(v)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
            f'<text class="ytick" x="{LEFT - 6}" y="{y + 4:.1f}">{escape(fmt(v))}</text>'
        )
    mid = (TOP + HEIGHT - BOTTOM) / 2
    parts.append(
        f'<text class="ylabel" transform="translate(14 {mid:.0f}) rotate(-90)">'
        f"{escape(label)}</text></g>"
    )
    return "".join(parts)


def _time_axis(axis: TimeAxis) -> str:
    base = HEIGHT - BOTTOM
    parts = [f'<g class="xaxis"><line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"/>']
    for t, label in time_ticks(axis):
        x = axis.x(t)
        parts.append(
            f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 5}"/>'
            f'<text class="xtick" x="{x:.1f}" y="{base + 18}">{label}</text>'
        )
    parts.append(
        f'<text class="xlabel" x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 4}">'
        "time (UTC)</text></g>"
    )
    return "".join(parts)


def _guide(scale: _LinearScale | _LogScale, guide: Guide) -> str:
    y = scale.y(guide.value)
    return (
        f'<g class="guide"><line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
        f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4:.1f}">{escape(guide.label)}</text></g>'
    )


def _marker_line(axis: TimeAxis, m: Marker) -> str:
    x = axis.x(m.t)
    return (
        f'<line class="mark {escape(m.kind)}" data-event="{escape(m.kind)}" x1="{x:.1f}" '
        f'y1="{TOP - 4}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}"><title>{escape(m.title or m.label)}'
        "</title></line>"
    )


def _rollback_labels(axis: TimeAxis, markers: Sequence[Marker]) -> str:
    """Rollbacks are labelled on every chart, above its plot, staggered when close."""
    rollbacks = sorted((m for m in markers if m.kind == "rollback"), key=lambda m: m.t)
    texts = [f"⟲ {m.label}" for m in rollbacks]
    placed = layout_labels([(axis.x(m.t), t) for m, t in zip(rollbacks, texts, strict=True)],
                           char_w=CHAR_W + 0.6)  # fmt: skip
    return "".join(
        f'<text class="marklabel rollback" x="{tx:.1f}" y="{11 + 11 * min(row, 1)}" '
        f'text-anchor="{anchor}">{escape(text)}</text>'
        for text, (tx, anchor, row) in zip(texts, placed, strict=True)
    )


def _path(axis: TimeAxis, scale: _LinearScale | _LogScale, line: Line) -> str:
    """The line, broken at None values and at gaps wider than ``line.max_gap``; a point with
    no neighbour to join is drawn as a dot."""
    segments: list[list[tuple[float, float]]] = []
    dots, previous = [], None
    for i, (t, v) in enumerate(line.points):
        if v is None:
            previous = None
            continue
        x, y = axis.x(t), scale.y(v)
        joined = previous is not None and (line.max_gap is None or t - previous <= line.max_gap)
        if joined:
            segments[-1].append((x, y))
        else:
            segments.append([(x, y)])
        previous = t
        tip = line.tips[i] if i < len(line.tips) else f"{line.name}: {v:g}"
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(tip)}</title></circle>'
        )
    if not segments:
        return ""
    # A lone point draws no line: a short stroke (round caps) and a dot keep it visible.
    path = " ".join(
        "M" + " L".join(f"{x:.1f} {y:.1f}" for x, y in seg) + (" h0.1" if len(seg) == 1 else "")
        for seg in segments
    )
    lone = "".join(
        f'<circle class="lone" cx="{seg[0][0]:.1f}" cy="{seg[0][1]:.1f}" r="3.5"/>'
        for seg in segments
        if len(seg) == 1
    )
    dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
    drawn = sum(len(seg) for seg in segments)
    return (
        f'<g class="series" data-series="{escape(line.name)}" data-key="{escape(line.key)}">'
        f'<path d="{path}" data-points="{drawn}" fill="none" stroke="{line.color}" '
        f'stroke-width="{line.width}"{dash} stroke-linejoin="round" stroke-linecap="round"/>'
        f'<g fill="{line.color}">{lone}</g>'
        f'<g class="dots" fill="{line.color}">{"".join(dots)}</g></g>'
    )


def _stack(lines: Sequence[Line]) -> list[Line]:
    """Cumulative values over the union of the lines' times (a missing value is 0)."""
    times = sorted({t for line in lines for t, _ in line.points})
    running = dict.fromkeys(times, 0.0)
    out = []
    for line in lines:
        own = {t: (v or 0.0) for t, v in line.points}
        for t in times:
            running[t] += own.get(t, 0.0)
        tips = dict(zip((t for t, _ in line.points), line.tips, strict=False))
        out.append(
            Line(
                line.name,
                line.color,
                [(t, running[t]) for t in times],
                tips=[tips.get(t, f"{line.name}: 0") for t in times],
                key=line.key,
                max_gap=line.max_gap,
            )
        )
    return out


def _area(
    axis: TimeAxis,
    scale: _LinearScale | _LogScale,
    line: Line,
    below: Sequence[tuple[float, float | None]],
) -> str:
    """The band between ``line`` and ``below`` (the same times), one polygon per run of
    points no further apart than ``line.max_gap``: where nothing was served, no band."""
    if not line.points:
        return ""
    upper = [(axis.x(t), scale.y(v or 0.0)) for t, v in line.points]
    lower = [(axis.x(t), scale.y(v or 0.0)) for t, v in below]
    runs, start = [], 0
    for i in range(1, len(line.points) + 1):
        gap = (
            line.max_gap is not None
            and i < len(line.points)
            and (line.points[i][0] - line.points[i - 1][0] > line.max_gap)
        )
        if i == len(line.points) or gap:
            runs.append((start, i))
            start = i
    d = " ".join(
        "M" + " L".join(f"{x:.1f} {y:.1f}" for x, y in [*upper[a:b], *lower[a:b][::-1]]) + " Z"
        for a, b in runs
    )
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(tip)}</title></circle>'
        for (x, y), tip in zip(upper, line.tips, strict=False)
    )
    return (
        f'<g class="series" data-series="{escape(line.name)}" data-key="{escape(line.key)}">'
        f'<path d="{d}" data-points="{len(upper)}" fill="{line.color}" fill-opacity="0.55" '
        f'stroke="{line.color}" stroke-width="1"/>'
        f'<g class="dots" fill="{line.color}">{dots}</g></g>'
    )
