"""PNG charts drawn with Pillow (no plotting library): a grouped bar chart for class
histograms and line charts for training curves."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from ..results import atomic_write
from ..visualize import class_colour, font

_INK = (30, 30, 30)
_GRID = (225, 225, 225)


def _save(img: Image.Image, path: Path) -> Path:
    atomic_write(Path(path), lambda fh: img.save(fh, format="PNG"))
    return Path(path)


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(value))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= value)


def bar_chart(path: Path, categories: list[str], series: dict[str, list[float]],
              title: str) -> Path:
    """One group of bars per category, one bar per series (e.g. train and val)."""
    n = max(1, len(categories))
    group = max(24, 12 * len(series) + 10)
    left, right, top, bottom = 60, 20, 50, 110
    width = left + right + group * n
    height = 420
    img = Image.new("RGB", (max(width, 360), height), "white")
    draw = ImageDraw.Draw(img)
    plot_h = height - top - bottom
    vmax = _nice_max(max((max(v) for v in series.values() if v), default=1))
    small, big = font(11), font(15)
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        draw.line([left, y, left + group * n, y], fill=_GRID)
        draw.text((left - 6, y), f"{vmax * i / 4:g}", fill=_INK, font=small, anchor="rm")
    bar_w = (group - 10) / max(1, len(series))
    for s, (name, values) in enumerate(series.items()):
        colour = class_colour(s)
        for c, value in enumerate(values):
            x0 = left + c * group + 5 + s * bar_w
            y0 = top + plot_h - plot_h * value / vmax
            draw.rectangle([x0, y0, x0 + bar_w - 1, top + plot_h], fill=colour)
        draw.rectangle([left + 120 * s, 28, left + 120 * s + 10, 38], fill=colour)
        draw.text((left + 120 * s + 14, 33), name, fill=_INK, font=small, anchor="lm")
    for c, label in enumerate(categories):
        x = left + c * group + group / 2
        text = Image.new("RGBA", (100, 14), (255, 255, 255, 0))
        ImageDraw.Draw(text).text((100, 7), label[:16], fill=_INK, font=small, anchor="rm")
        rotated = text.rotate(60, expand=True)
        img.paste(rotated, (int(x - rotated.width + 4), top + plot_h + 4), rotated)
    draw.text((left, 8), title, fill=_INK, font=big)
    return _save(img, path)


def line_charts(path: Path, panels: list[tuple[str, dict[str, list[float]]]],
                x_label: str = "epoch") -> Path:
    """Side-by-side panels, each with one or more curves over the same x (1, 2, ...)."""
    pw, ph, margin = 420, 300, 50
    img = Image.new("RGB", (pw * len(panels), ph), "white")
    draw = ImageDraw.Draw(img)
    small, big = font(11), font(14)
    for p, (title, series) in enumerate(panels):
        x_off = p * pw
        values = [v for vals in series.values() for v in vals if v == v]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
        n = max((len(v) for v in series.values()), default=1)
        # the plot starts below the legend, however many curves it lists
        x0, x1, y0, y1 = x_off + margin, x_off + pw - 15, max(40, 10 + 13 * len(series)), ph - 40

        def xy(i: int, v: float, x0=x0, x1=x1, y0=y0, y1=y1, lo=lo, hi=hi, n=n):
            x = x0 + (x1 - x0) * (i / max(1, n - 1))
            return x, y1 - (y1 - y0) * (v - lo) / (hi - lo)

        for k in range(5):
            v = lo + (hi - lo) * k / 4
            y = xy(0, v)[1]
            draw.line([x0, y, x1, y], fill=_GRID)
            draw.text((x0 - 4, y), f"{v:.3g}", fill=_INK, font=small, anchor="rm")
        draw.rectangle([x0, y0, x1, y1], outline=(160, 160, 160))
        draw.text((x0, 12), title, fill=_INK, font=big)
        draw.text(((x0 + x1) / 2, ph - 14), f"{x_label} (1-{n})", fill=_INK, font=small,
                  anchor="mm")
        for s, (name, vals) in enumerate(series.items()):
            colour = class_colour(s)
            pts = [xy(i, v) for i, v in enumerate(vals) if v == v]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            for x, y in pts[-1:]:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
            # legend above the plot, right-aligned, so that it never covers a curve
            draw.text((x1, 4 + 13 * s), name, fill=colour, font=small, anchor="ra")
    return _save(img, path)
