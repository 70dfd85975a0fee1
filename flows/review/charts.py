"""Charts for the review dashboard as self-contained SVG strings (no scripts, no external
files), to put straight into a page. Every piece of text is XML-escaped here."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

# Space around the plot for the title, the tick labels and the axis names.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 44, 12, 26, 38
TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
# A bucket this wide in pixels or more shows its count above its bar; narrower ones only in
# the tooltip (the 0.99-1.0 bucket is a few pixels wide).
MIN_COUNT_LABEL_WIDTH = 16


def _unit(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


def _number(value: float) -> str:
    return f"{float(value):g}"


def reliability_svg(
    rows: Sequence[tuple[float, float, int, int]],
    *,
    width: int = 360,
    height: int = 240,
    title: str,
) -> str:
    """A reliability diagram: for each confidence bucket (low, high, count, correct) a bar
    spanning [low, high) on the x axis up to the share of its answers that were right, against
    the diagonal a perfectly calibrated model would follow. A bar below the diagonal is a bucket
    whose answers are right less often than their confidence says. Buckets with no answers are
    not drawn; with none at all the chart says so. Each bar's <title> (a tooltip) gives its
    bucket, accuracy and counts."""
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    if plot_w <= 0 or plot_h <= 0:
        raise ValueError(f"a {width}x{height} chart leaves no room for the plot")

    def x(value: float) -> float:
        return MARGIN_LEFT + _unit(value) * plot_w

    def y(value: float) -> float:
        return MARGIN_TOP + (1.0 - _unit(value)) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(title)}'
        ' font-family="sans-serif" font-size="10">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{width / 2:.1f}" y="16" text-anchor="middle"'
        f' font-size="12">{escape(title)}</text>',
        f'<rect class="plot" x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}"'
        f' height="{plot_h}" fill="none" stroke="#bbb"/>',
    ]
    for tick in TICKS:
        label = _number(tick)
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{y(0):.1f}" x2="{x(tick):.1f}" y2="{y(0) + 4:.1f}"'
            ' stroke="#555"/>'
            f'<text x="{x(tick):.1f}" y="{y(0) + 14:.1f}" text-anchor="middle">{label}</text>'
            f'<line x1="{x(0) - 4:.1f}" y1="{y(tick):.1f}" x2="{x(0):.1f}" y2="{y(tick):.1f}"'
            ' stroke="#555"/>'
            f'<text x="{x(0) - 6:.1f}" y="{y(tick) + 3:.1f}" text-anchor="end">{label}</text>'
        )
    parts.append(
        f'<text x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        "confidence</text>"
        f'<text x="12" y="{MARGIN_TOP + plot_h / 2:.1f}" text-anchor="middle"'
        f' transform="rotate(-90 12 {MARGIN_TOP + plot_h / 2:.1f})">accuracy</text>'
    )

    drawn = 0
    for low, high, count, correct in sorted(rows, key=lambda row: row[0]):
        if count <= 0:
            continue
        accuracy = _unit(correct / count)
        left, right = x(low), x(high)
        top = y(accuracy)
        tooltip = escape(
            f"confidence {_number(low)}–{_number(high)}: {accuracy:.0%} right"
            f" ({correct} of {count})"
        )
        parts.append(
            f'<rect class="bar" x="{left:.1f}" y="{top:.1f}" width="{max(right - left, 1.0):.1f}"'
            f' height="{y(0) - top:.1f}" fill="#4a7ab5" fill-opacity="0.75" stroke="#fff"'
            f' stroke-width="0.5"><title>{tooltip}</title></rect>'
        )
        if right - left >= MIN_COUNT_LABEL_WIDTH:
            parts.append(
                f'<text class="count" x="{(left + right) / 2:.1f}" y="{max(top - 3, 9):.1f}"'
                f' text-anchor="middle" font-size="8" fill="#333">{count}</text>'
            )
        drawn += 1

    parts.append(
        f'<line class="calibrated" x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}"'
        f' y2="{y(1):.1f}" stroke="#c44" stroke-dasharray="4 3">'
        "<title>perfectly calibrated</title></line>"
    )
    if not drawn:
        parts.append(
            f'<text class="empty" x="{MARGIN_LEFT + plot_w / 2:.1f}"'
            f' y="{MARGIN_TOP + plot_h / 2:.1f}" text-anchor="middle" fill="#777">'
            "no reviewed answers yet</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["reliability_svg"]
