"""A forest plot of benchmark results as inline SVG: one row per claim, its difference with
the 95% interval, the ±SESOI band behind it, coloured by verdict. Drawn from the store (no
plotting library), so that every category page can show the claims of its own techniques."""

from __future__ import annotations

from html import escape

from .model import Result

COLOURS = {"held": "#2e7d32", "contradicted": "#c62828", "no practical effect": "#1565c0",
           "inconclusive": "#757575"}
ROW, LABEL, PLOT, PAD, RIGHT = 22, 330, 360, 10, 60


def forest_svg(results: list[Result], labels: dict[str, str]) -> str:
    """SVG markup; `labels` maps technique IRIs to their names."""
    if not results:
        return ""
    points = [v * 100 for r in results for v in (r.ci_low, r.ci_high, r.sesoi or 0.01, -(r.sesoi or 0.01))]
    span = max(2.0, *(abs(p) for p in points)) * 1.1
    x = lambda value: LABEL + PLOT / 2 + value * 100 / span * (PLOT / 2)  # noqa: E731  (value is a fraction)
    height = ROW * len(results) + 2 * PAD + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{LABEL + PLOT + RIGHT}" height="{height}" '
             f'viewBox="0 0 {LABEL + PLOT + RIGHT} {height}" font-family="sans-serif" font-size="11">',
             "<title>Forest plot: each claim's difference (claimed − reference, accuracy points) with its 95% "
             "interval; the shaded band is ±SESOI; colour is the verdict</title>"]
    for i, r in enumerate(results):
        y = PAD + i * ROW + ROW / 2
        sesoi = r.sesoi or 0.01
        colour = COLOURS.get(r.verdict, "#757575")
        technique = labels.get(r.technique, r.technique.rsplit("/", 1)[-1])
        technique = technique if len(technique) <= 30 else technique[:29] + "…"
        name = f"{technique}: {r.experiment}"
        parts += [
            f'<rect x="{x(-sesoi):.1f}" y="{y - ROW / 2 + 2:.1f}" width="{x(sesoi) - x(-sesoi):.1f}" '
            f'height="{ROW - 4}" fill="#e3ecf5"/>',
            f'<text x="{LABEL - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(name)}</text>',
            f'<line x1="{x(r.ci_low):.1f}" x2="{x(r.ci_high):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-width="2.5"><title>{escape(r.verdict)}: {r.mean_difference * 100:+.2f} points '
            f'[{r.ci_low * 100:+.2f}, {r.ci_high * 100:+.2f}]</title></line>',
            f'<circle cx="{x(r.mean_difference):.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>',
        ]
    bottom = PAD + ROW * len(results)
    parts.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{PAD}" y2="{bottom}" stroke="black" stroke-width="1"/>')
    for tick in (-span, -span / 2, 0, span / 2, span):
        parts.append(f'<text x="{x(tick / 100):.1f}" y="{bottom + 14}" text-anchor="middle">{tick:+.1f}</text>')
    legend_x = LABEL - 120
    for verdict, colour in COLOURS.items():
        parts.append(f'<circle cx="{legend_x + 5}" cy="{bottom + 27}" r="4" fill="{colour}"/>'
                     f'<text x="{legend_x + 12}" y="{bottom + 31}">{verdict}</text>')
        legend_x += 12 + 7 * len(verdict) + 14
    parts.append("</svg>")
    return "".join(parts)
