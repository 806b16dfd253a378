"""Documents with pages: PDF (rendered with pdfium) and TIFF (every frame), as PaddleX 3.7.2
reads them.

PaddleX renders a PDF page with pypdfium2 at scale 2 (``PADDLE_PDX_PDF_RENDER_SCALE``), forms
drawn, on white, and reduces the scale (not below 0.1) when the page would exceed its pixel
limit; the bitmap is BGR. A TIFF is read with Pillow, each frame converted to RGB (no EXIF
orientation, unlike OpenCV's decoding of other files). Both give ``page_index`` 0..n-1, a
single-page TIFF included. Here the pixel limit is mlcls's own (``MLCLS_MAX_PIXELS``).

pdfium is not thread-safe: every call into it holds one lock.
"""

from __future__ import annotations

import io
import math
import os
import threading
import warnings

import numpy as np
from PIL import Image

from .errors import InputError

PDF_MAGIC = b"%PDF-"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
ENV_RENDER_SCALE = "PADDLE_PDX_PDF_RENDER_SCALE"  # PaddleX's name, honoured the same way
DEFAULT_RENDER_SCALE = 2.0
MIN_RENDER_SCALE = 0.1
_PDFIUM_LOCK = threading.RLock()


def kind(head: bytes) -> str | None:
    """``"pdf"``, ``"tiff"`` or None (a single image) from a file's first bytes."""
    if head.startswith(PDF_MAGIC):
        return "pdf"
    if head[:4] in TIFF_MAGICS:
        return "tiff"
    return None


def render_scale() -> float:
    try:
        value = float(os.environ.get(ENV_RENDER_SCALE) or DEFAULT_RENDER_SCALE)
    except ValueError:
        return DEFAULT_RENDER_SCALE
    return value if value > 0 and math.isfinite(value) else DEFAULT_RENDER_SCALE


def _pdfium():
    try:
        import pypdfium2
    except ImportError as exc:  # a dependency, but say what is missing if it was removed
        raise InputError("PDF", f"reading PDF files needs pypdfium2 ({exc})") from None
    return pypdfium2


def _open_pdf(data: bytes, source: str):
    pdfium = _pdfium()
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise InputError(source, f"not a readable PDF ({exc})") from None


def count_pages(data: bytes, what: str, source: str) -> int:
    """How many pages ``data`` (a PDF or TIFF) holds."""
    if what == "pdf":
        with _PDFIUM_LOCK:
            doc = _open_pdf(data, source)
            try:
                count = len(doc)
            finally:
                doc.close()
        if count < 1:
            raise InputError(source, "a PDF without pages")
        return count
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return max(1, int(getattr(img, "n_frames", 1)))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(source, f"not a readable TIFF file ({exc})") from None


def _pdf_scale(width_pt: float, height_pt: float, max_pixels: int, source: str) -> float:
    """PaddleX's choice: the requested scale, or the largest scale (found by bisection, as
    PaddleX does) whose rendering fits ``max_pixels``, not below the minimum scale."""
    if not (width_pt > 0 and height_pt > 0):
        raise InputError(source, f"the page has no size ({width_pt}x{height_pt} points)")

    def pixels(scale: float) -> int:
        return math.ceil(width_pt * scale) * math.ceil(height_pt * scale)

    wanted = render_scale()
    if pixels(wanted) <= max_pixels:
        return wanted
    if pixels(MIN_RENDER_SCALE) > max_pixels:
        raise InputError(source, f"the page ({width_pt:.0f}x{height_pt:.0f} points) is over "
                         f"the limit of {max_pixels} pixels even at scale {MIN_RENDER_SCALE} "
                         "(MLCLS_MAX_PIXELS)")
    low, high = MIN_RENDER_SCALE, min(wanted, math.sqrt(max_pixels / (width_pt * height_pt)))
    for _ in range(32):
        mid = (low + high) / 2
        if pixels(mid) <= max_pixels:
            low = mid
        else:
            high = mid
    return low


def render_pdf_page(data: bytes, index: int, max_pixels: int, source: str) -> np.ndarray:
    """Page ``index`` of a PDF as RGB uint8, rendered as PaddleX renders it."""
    pdfium = _pdfium()
    with _PDFIUM_LOCK:
        doc = _open_pdf(data, source)
        try:
            doc.init_forms()
            page = doc[index]
            try:
                scale = _pdf_scale(*page.get_size(), max_pixels, source)
                bitmap = page.render(scale=scale, rotation=0)
                bgr = bitmap.to_numpy()
                rgb = np.ascontiguousarray(bgr[:, :, 2::-1]) if bgr.ndim == 3 else \
                    np.repeat(bgr[:, :, None], 3, axis=2)
                bitmap.close()
            finally:
                page.close()
        except pdfium.PdfiumError as exc:
            raise InputError(source, f"cannot render this PDF page ({exc})") from None
        finally:
            doc.close()
    return rgb


def tiff_page(data: bytes, index: int, max_pixels: int, source: str) -> np.ndarray:
    """Frame ``index`` of a TIFF as RGB uint8, converted by Pillow as PaddleX does (16-bit
    grey keeps its high byte instead of being clipped: see ``inputs.pil_to_rgb``)."""
    from .inputs import check_pixels, pil_to_rgb

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.seek(index)
                check_pixels(img.size[0], img.size[1], max_pixels, source)
                img.load()
                return pil_to_rgb(img)
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise InputError(source, f"truncated or corrupt TIFF file ({exc})") from None
