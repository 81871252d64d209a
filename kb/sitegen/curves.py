"""Regime curves as inline SVG: a technique's gain over hard labels (accuracy points, with its
95% interval) against the labelled fraction or the student's size, log x axis, one colour per
technique. Drawn from the store like the forest plot, so a technique page shows its own curve
and the "When does distillation help?" page all of them."""

from __future__ import annotations

import math
from html import escape

from .model import RegimeCurve

PALETTE = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f")
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 420, 250, 50, 12, 24, 52
AXIS_TITLES = {"labelled fraction": "labelled fraction of the training set (%)",
               "student size": "student parameters"}


def _x_value(point, axis: str) -> float:
    return point.fraction * 100 if axis == "labelled fraction" else float(point.parameters)


def _tick(value: float, axis: str) -> str:
    if axis == "labelled fraction":
        return f"{value:g}%"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:g}"


def curve_svg(curves: list[RegimeCurve], axis: str, labels: dict[str, str]) -> str:
    """SVG markup of the curves on one axis; empty when none has points there."""
    series = [(c, c.on(axis)) for c in curves]
    series = [(c, pts) for c, pts in series if pts]
    if not series:
        return ""
    xs = sorted({_x_value(p, axis) for _, pts in series for p in pts})
    ys = [v * 100 for _, pts in series for p in pts for v in (p.ci_low, p.ci_high)] + [0.0]
    low, high = min(ys), max(ys)
    pad = max(0.5, (high - low) * 0.08)
    low, high = low - pad, high + pad
    log_lo, log_hi = math.log10(xs[0]), math.log10(xs[-1])
    span = (log_hi - log_lo) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    to_x = lambda v: LEFT + 10 + (math.log10(v) - log_lo) / span * (plot_w - 20)  # noqa: E731
    to_y = lambda v: TOP + (high - v) / (high - low) * plot_h  # noqa: E731  (v in points)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{HEIGHT + 16 * len(series)}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT + 16 * len(series)}" font-family="sans-serif" font-size="11">',
             f"<title>Gain over hard labels (accuracy points, mean and 95% interval over seeds) against the "
             f"{escape(axis)}</title>",
             f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{to_y(0):.1f}" y2="{to_y(0):.1f}" stroke="black"/>',
             f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#999"/>']
    for value in (low + pad, 0.0, high - pad):
        parts.append(f'<text x="{LEFT - 4}" y="{to_y(value) + 4:.1f}" text-anchor="end">{value:+.1f}</text>')
    for value in xs:
        parts.append(f'<text x="{to_x(value):.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">'
                     f'{escape(_tick(value, axis))}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h + 30}" text-anchor="middle">'
                 f'{escape(AXIS_TITLES[axis])}</text>')
    parts.append(f'<text x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">gain (points)</text>')
    for i, (curve, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        name = labels.get(curve.technique, curve.technique.rsplit("/", 1)[-1])
        line = " ".join(f"{to_x(_x_value(p, axis)):.1f},{to_y(p.mean_difference * 100):.1f}" for p in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for p in pts:
            x = to_x(_x_value(p, axis)) + (i - (len(series) - 1) / 2) * 3  # dodge overlapping intervals
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{to_y(p.ci_low * 100):.1f}" y2="{to_y(p.ci_high * 100):.1f}" '
                f'stroke="{colour}"><title>{escape(name)}, {escape(p.student_model)}, {p.fraction * 100:g}% labelled: '
                f'{p.mean_difference * 100:+.2f} points [{p.ci_low * 100:+.2f}, {p.ci_high * 100:+.2f}], '
                f'{p.n_seeds} seeds</title></line>'
                f'<circle cx="{x:.1f}" cy="{to_y(p.mean_difference * 100):.1f}" r="3" fill="{colour}"/>')
        y = HEIGHT + 16 * i
        parts.append(f'<rect x="{LEFT}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{LEFT + 16}" y="{y + 1}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def summary(curve: RegimeCurve) -> list[str]:
    """Sentences read off the points (nothing hard-coded): where the interval lies above or
    below 0, and where the gain is largest."""
    above = [p for p in curve.points if p.ci_low > 0]
    below = [p for p in curve.points if p.ci_high < 0]
    where = lambda ps: ", ".join(f"{p.student_model} at {p.fraction * 100:g}%" for p in ps)  # noqa: E731
    best = max(curve.points, key=lambda p: p.mean_difference)
    lines = [f"largest mean gain {best.mean_difference * 100:+.2f} points ({best.student_model}, "
             f"{best.fraction * 100:g}% labelled)"]
    lines.append(f"helps (interval above 0): {where(above)}" if above else "helps (interval above 0): nowhere")
    lines.append(f"hurts (interval below 0): {where(below)}" if below else "hurts (interval below 0): nowhere")
    return lines
