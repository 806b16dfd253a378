"""Drawing a result: the image with a legend of its labels and scores beside it.

The legend sits in a panel to the right of the image, so it never hides the picture and
stays readable whatever the image size (small images are scaled up first). The font ships
inside the package (DejaVu Sans), so nothing is downloaded.
"""

from __future__ import annotations

import colorsys
import functools
from importlib import resources

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_HEIGHT = 320  # smaller images are scaled up to this height before drawing
MAX_SIDE = 4096  # larger images are scaled down to this longest side before drawing
MAX_LINES = 40  # labels beyond this are summarised in one line
MAX_LABEL_CHARS = 60  # longer label names are cut (a model's label_list is not trusted)


@functools.lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont:
    with resources.as_file(resources.files("mlcls") / "assets" / "DejaVuSans.ttf") as path:
        return ImageFont.truetype(str(path), size)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct colour per class id (golden-ratio hue steps)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _fit(img: Image.Image) -> Image.Image:
    """Scale small images up to ``MIN_HEIGHT`` and large ones down to ``MAX_SIDE``, never
    letting either side pass ``MAX_SIDE``: the canvas stays bounded whatever the aspect ratio
    (a 10000x1 strip would otherwise become 3,200,000x320)."""
    w, h = img.size
    scale = max(1.0, MIN_HEIGHT / h)
    scale = min(scale, MAX_SIDE / max(w, h) if max(w, h) * scale > MAX_SIDE else scale)
    if scale == 1.0:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, Image.BILINEAR)


def _cut(name: str) -> str:
    return name if len(name) <= MAX_LABEL_CHARS else name[:MAX_LABEL_CHARS - 1] + "\u2026"


def draw_result(image: np.ndarray | Image.Image, class_ids: list[int], scores: list[float],
                label_names: list[str]) -> Image.Image:
    """Return a new RGB image: ``image`` with a legend panel of labels and scores."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    img = _fit(img.convert("RGB"))
    size = int(np.clip(img.height / 24, 14, 40))
    fnt = font(size)
    pad = size // 2
    lines = [(cid, f"{_cut(str(name))}  {score:.2f}") for cid, name, score in
             zip(class_ids, label_names, scores)]
    if len(lines) > MAX_LINES:
        rest = len(lines) - (MAX_LINES - 1)
        lines = lines[:MAX_LINES - 1] + [(-1, f"... and {rest} more")]
    if not lines:
        lines = [(-1, "no label above the threshold")]
    line_h = size + pad
    swatch = size
    text_w = max(int(fnt.getlength(text)) for _, text in lines)
    panel_w = pad * 3 + swatch + text_w
    canvas_h = max(img.height, pad * 2 + line_h * len(lines))
    canvas = Image.new("RGB", (img.width + panel_w, canvas_h), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x0 = img.width + pad
    for row, (cid, text) in enumerate(lines):
        y = pad + row * line_h
        if cid >= 0:
            draw.rectangle([x0, y, x0 + swatch, y + swatch], fill=class_colour(cid))
        draw.text((x0 + swatch + pad, y + swatch / 2), text, fill=(20, 20, 20), font=fnt,
                  anchor="lm")
    return canvas
