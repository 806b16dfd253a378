"""Drawing a result: the image with a legend of its labels and scores beside it.

The legend sits in a panel to the right of the image, so it never hides the picture and
stays readable whatever the image size (small images are scaled up first). The fonts ship
inside the package, so nothing is downloaded: DejaVu Sans (Latin, Greek, Cyrillic and more)
and a subset of Droid Sans Fallback for Chinese, Japanese and Korean labels. Each label is
drawn in the first font that has all its characters: ``MLCLS_FONT`` (a TrueType/OpenType
file of your choice) if set, then PaddleX's ``PADDLE_PDX_LOCAL_FONT_FILE_PATH``, then the
two shipped ones.
"""

from __future__ import annotations

import colorsys
import functools
import logging
import os
from importlib import resources

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_HEIGHT = 320  # smaller images are scaled up to this height before drawing
MAX_SIDE = 4096  # larger images are scaled down to this longest side before drawing
MAX_LINES = 40  # labels beyond this are summarised in one line
MAX_LABEL_CHARS = 60  # longer label names are cut (a model's label_list is not trusted)


ENV_FONT = "MLCLS_FONT"
ENV_PADDLEX_FONT = "PADDLE_PDX_LOCAL_FONT_FILE_PATH"
SHIPPED_FONTS = ("DejaVuSans.ttf", "DroidSansFallback-subset.ttf")
log = logging.getLogger(__name__)


def _shipped(name: str) -> str:
    return str(resources.files("mlcls") / "assets" / name)


def font_paths() -> list[str]:
    """The fonts a label may be drawn in, in order of preference."""
    chosen = [os.environ.get(ENV_FONT), os.environ.get(ENV_PADDLEX_FONT)]
    return [p for p in chosen if p and os.path.isfile(p)] + [_shipped(n) for n in SHIPPED_FONTS]


@functools.lru_cache(maxsize=32)
def _font_at(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def font(size: int, path: str | None = None) -> ImageFont.FreeTypeFont:
    return _font_at(path or _shipped(SHIPPED_FONTS[0]), size)


def _ink(path: str, text: str) -> bytes:
    img = Image.new("L", (48, 48))
    ImageDraw.Draw(img).text((4, 4), text, fill=255, font=_font_at(path, 32))
    return img.tobytes()


@functools.lru_cache(maxsize=8192)
def has_glyph(path: str, char: str) -> bool:
    """Whether the font draws ``char`` itself, not its "missing" box (FreeType draws glyph 0
    for a character the font lacks, the same box as for a private-use code point)."""
    if char.isspace() or not char.isprintable():
        return True
    return _ink(path, char) != _ink(path, "\U0010fffd")


def runs(text: str) -> list[tuple[str, str]]:
    """``text`` cut into (font path, piece) runs, each character in the first font that has
    it (a label mixing scripts, "猫 cat", takes two fonts); a character no font has stays
    with its neighbours."""
    paths = font_paths()
    out: list[tuple[str, str]] = []
    for ch in text:
        path = next((p for p in paths if _readable(p) and has_glyph(p, ch)),
                    out[-1][0] if out else paths[-1])
        if out and out[-1][0] == path:
            out[-1] = (path, out[-1][1] + ch)
        else:
            out.append((path, ch))
    return out


@functools.lru_cache(maxsize=16)
def _readable(path: str) -> bool:
    try:
        _font_at(path, 12)
    except OSError:
        log.warning("cannot read the font %s (%s); using the shipped fonts", path, ENV_FONT)
        return False
    return True


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
    pieces = [[(font(size, path), piece) for path, piece in runs(text)] for _, text in lines]
    text_w = max(int(sum(f.getlength(piece) for f, piece in line)) for line in pieces)
    panel_w = pad * 3 + swatch + text_w
    canvas_h = max(img.height, pad * 2 + line_h * len(lines))
    canvas = Image.new("RGB", (img.width + panel_w, canvas_h), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x0 = img.width + pad
    for row, ((cid, _), line) in enumerate(zip(lines, pieces)):
        y = pad + row * line_h
        if cid >= 0:
            draw.rectangle([x0, y, x0 + swatch, y + swatch], fill=class_colour(cid))
        x = x0 + swatch + pad
        for fnt, piece in line:
            draw.text((x, y + swatch / 2), piece, fill=(20, 20, 20), font=fnt, anchor="lm")
            x += fnt.getlength(piece)
    return canvas
