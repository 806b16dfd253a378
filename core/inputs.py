"""Turning what a user passes to ``predict`` into decoded RGB images.

Accepted: a file path, a directory (recursive, sorted), an http(s) URL, a numpy array (BGR, as
PaddleX takes it), a PIL image, raw bytes, a dict ``{"img": ...}``, and lists of these. A PDF
or a TIFF gives one image per page (``mlcls.pages``).

Encoded images (files, URLs, bytes) are decoded as PaddleX 3.7.2 decodes them: OpenCV
``imdecode`` with ``IMREAD_COLOR``, then BGR -> RGB. That call applies EXIF orientation (JPEG,
PNG; not WebP), promotes grey to three channels, scales 16-bit down by dropping the low
byte and drops alpha without compositing. The type is told from the content, never from a
suffix or a Content-Type. Departures, where PaddleX fails:

- formats OpenCV cannot read (GIF in OpenCV 4.10, animated WebP, ...) are decoded by Pillow,
  first frame only, palette expanded to RGB (a transparent colour shows as its palette colour);
- a JPEG cut short is an error, where OpenCV would return it with a grey bottom;
- an image over the pixel limit (``MLCLS_MAX_PIXELS``, default 100 million) is refused from
  its header, before any decoder allocates its pixels; a file over ``MLCLS_MAX_FILE_BYTES``
  (default 256 MiB) is refused before it is read, and so is anything that is not a regular
  file (a FIFO, a device).

A PIL image is taken as its pixels with EXIF orientation applied, converted to RGB by Pillow
(16-bit grey drops its low byte, as OpenCV does for files).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import pages
from .errors import InputError
from .fetch import FetchError, Guard, stream
from .limits import (
    DEFAULT_MAX_PIXELS,
    ENV_MAX_FILE_BYTES,
    ENV_MAX_PIXELS,
    env_number,
    max_file_bytes,
    max_pixels,
)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif",
                            ".jpe", ".jfif", ".dib", ".pbm", ".pgm", ".ppm", ".pdf"})
PAGED_SUFFIXES = frozenset({".pdf", ".tif", ".tiff"})
ENV_URL_TIMEOUT = "MLCLS_URL_TIMEOUT"
ENV_URL_MAX_BYTES = "MLCLS_URL_MAX_BYTES"
DEFAULT_URL_TIMEOUT = 30.0  # seconds for the whole download, headers included
DEFAULT_URL_MAX_BYTES = 64 * 1024 * 1024
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# OpenCV's own decoder limit (read once, at its first decode) backs up the header check for
# formats whose header Pillow cannot read; a user's own setting is left alone.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))


@dataclass
class Sample:
    """One image to classify: where it came from, and how to get its pixels (RGB uint8 HWC).
    ``source`` names an input that has no path (``input[2]`` for the third of a list);
    ``page_index`` is the page of a PDF or TIFF; ``subdir`` the folder below the directory
    the user gave (results are saved under the same sub-folder)."""

    input_path: str | None
    load: Callable[[], np.ndarray]
    index: int = 0  # position in the input order
    source: str | None = None
    page_index: int | None = None
    subdir: str = ""

    @property
    def label(self) -> str:
        name = self.input_path or self.source or f"input #{self.index}"
        return name if self.page_index is None else f"{name} (page {self.page_index})"


# -- limits -----------------------------------------------------------------------------------

def check_pixels(width: int, height: int, limit: int | None, source: str) -> None:
    """The one message for an image over the pixel limit, whatever the channel."""
    limit = max_pixels() if limit is None else limit
    if width * height > limit:
        raise InputError(source, f"{width}x{height} is {width * height} pixels, over the "
                         f"limit of {limit} ({ENV_MAX_PIXELS}, or --max_pixels when serving)")


def header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from an encoded image's header, without decoding any pixels; None
    when the header cannot be read this way (the decoder then reports the problem)."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        # Read directly: Pillow would refuse a PNG whose text chunks it finds too large, one
        # that OpenCV (PaddleX's decoder) reads fine.
        return struct.unpack(">II", data[16:24])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError:
        return _size_beyond_pillows_limit(data)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error):
        return None


def _size_beyond_pillows_limit(data: bytes) -> tuple[int, int] | None:
    """The declared size of an image so large that ``Image.open`` refuses it: asked of the
    format's own reader, which reads the header without Pillow's size check."""
    Image.init()
    for factory, accept in Image.OPEN.values():
        if accept is not None and not accept(data[:16]):
            continue
        try:
            with factory(io.BytesIO(data), "") as img:
                return img.size
        except Exception:  # noqa: BLE001 - any reader that does not fit is simply skipped
            continue
    return None


# -- decoding ---------------------------------------------------------------------------------

def decode_bytes(data: bytes, source: str, limit: int | None = None) -> np.ndarray:
    """Decode an encoded image to RGB uint8 HWC, as PaddleX does (see the module docstring).
    A TIFF gives its first page here (``expand`` gives every page)."""
    if not data:
        raise InputError(source, "empty file (0 bytes)")
    limit = max_pixels() if limit is None else limit
    what = pages.kind(data[:8])
    if what == "tiff":
        return pages.tiff_page(data, 0, limit, source)
    if what == "pdf":
        return pages.render_pdf_page(data, 0, limit, source)
    size = header_size(data)
    if size is not None:
        check_pixels(size[0], size[1], limit, source)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own size limit, or a decoder's assertion
        detail = str(exc).strip().splitlines()[-1][:200]
        if "pixels" in detail.lower() or "size" in detail.lower():
            raise InputError(source, f"over the limit of {limit} pixels ({ENV_MAX_PIXELS})"
                             ) from None
        raise InputError(source, f"not a readable image ({detail})") from None
    if bgr is None:
        return _decode_with_pillow(data, source, limit)
    check_pixels(bgr.shape[1], bgr.shape[0], limit, source)  # in case the header lied
    if data.startswith(_JPEG_START) and not data[-64:].rstrip(b"\x00\r\n ").endswith(_JPEG_END):
        # OpenCV returns a cut JPEG with its missing rows grey; a full decode by Pillow tells
        # a cut file from one that merely carries bytes after its end marker.
        _check_complete(data, source)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _describe(data: bytes) -> str:
    return f"{len(data)} bytes starting {data[:12]!r}"


def _check_complete(data: bytes, source: str) -> None:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(source, f"truncated or corrupt JPEG file ({exc})") from None


def _decode_with_pillow(data: bytes, source: str, limit: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputError(source, f"not a readable image: no known image format "
                         f"({_describe(data)})") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(source, f"not a readable image ({_describe(data)}): {exc}") from None
    fmt = img.format or "image"
    try:
        with img:
            img.seek(0)
            check_pixels(img.size[0], img.size[1], limit, source)
            img.load()
            return pil_to_rgb(ImageOps.exif_transpose(img) or img)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise InputError(source, f"truncated or corrupt {fmt} file ({exc})") from None


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """A PIL image's pixels as RGB uint8; 16-bit grey keeps its high byte, as OpenCV does."""
    if img.mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.uint16)
        return _grey_to_rgb((arr >> 8).astype(np.uint8))
    if img.mode == "I":
        arr = np.asarray(img, dtype=np.int64)
        # 32-bit integer images are nearly always 16-bit data widened by Pillow.
        if arr.max(initial=0) > 255:
            arr = np.clip(arr, 0, 65535) >> 8
        return _grey_to_rgb(np.clip(arr, 0, 255).astype(np.uint8))
    return np.asarray(img.convert("RGB"))


def _pil_input(img: Image.Image, source: str) -> np.ndarray:
    check_pixels(img.size[0], img.size[1], None, source)
    return pil_to_rgb(ImageOps.exif_transpose(img) or img)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(grey), cv2.COLOR_GRAY2RGB)


def array_to_rgb(arr: np.ndarray, source: str) -> np.ndarray:
    """A user's numpy image (BGR or grey, as PaddleX takes it) to RGB uint8."""
    if arr.size == 0:
        raise InputError(source, f"empty array of shape {arr.shape}")
    if arr.ndim in (2, 3):
        check_pixels(arr.shape[1], arr.shape[0], None, source)
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
        elif np.issubdtype(arr.dtype, np.floating) and np.nanmin(arr) >= 0 \
                and np.nanmax(arr) <= 1.0:
            arr = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise InputError(source, f"unsupported array dtype {arr.dtype}; pass uint8 BGR "
                             "(or uint16, or float in [0, 1])")
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 2:
        return _grey_to_rgb(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return _grey_to_rgb(arr[:, :, 0])
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    raise InputError(source, f"array of shape {arr.shape} is not an image "
                     "(expected HxW, HxWx3 BGR or HxWx4 BGRA)")


# -- URLs -------------------------------------------------------------------------------------

def is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def fetch_url(url: str, timeout: float | None = None, max_bytes: int | None = None,
              guard: Guard | None = None) -> bytes:
    """Download ``url``: at most ``max_bytes``, all of it within ``timeout`` seconds however
    the server trickles; errors name the URL. ``guard`` vets each address connected to (the
    server refuses addresses that are not public with it)."""
    timeout = timeout or env_number(ENV_URL_TIMEOUT, DEFAULT_URL_TIMEOUT)
    max_bytes = int(max_bytes or env_number(ENV_URL_MAX_BYTES, DEFAULT_URL_MAX_BYTES))
    chunks: list[bytes] = []
    try:
        stream(url, chunks.append, deadline=timeout, max_bytes=max_bytes, guard=guard)
    except FetchError as exc:
        reason = exc.reason
        if "limit" in reason:
            reason += f" ({ENV_URL_MAX_BYTES})"
        reason = reason.replace(f"within {timeout:g} s", f"within {timeout:g} s "
                                                         f"({ENV_URL_TIMEOUT})")
        raise InputError(url, reason) from None
    return b"".join(chunks)


# -- files and directories --------------------------------------------------------------------

_KIND_NAMES = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket",
               stat.S_IFDIR: "a directory"}


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file: {_KIND_NAMES.get(stat.S_IFMT(mode), 'a special file')}"


def read_file_bytes(path: str, head: int | None = None) -> bytes:
    """The bytes of a regular file (the first ``head`` of them when given), never more than
    ``MLCLS_MAX_FILE_BYTES``. Opening does not block (a FIFO would), and the type is checked
    on the file actually opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except OSError as exc:
        raise InputError(path, f"cannot read it ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        why = _not_regular(info.st_mode)
        if why:
            raise InputError(path, why)
        cap = max_file_bytes()
        if info.st_size > cap and head is None:
            raise InputError(path, f"{info.st_size} bytes, over the limit of {cap} "
                             f"({ENV_MAX_FILE_BYTES})")
        try:
            data = fh.read(head if head is not None else cap + 1)
        except OSError as exc:
            raise InputError(path, f"cannot read it ({exc.strerror or exc})") from None
    if head is None and len(data) > cap:  # it grew while being read
        raise InputError(path, f"more than {cap} bytes ({ENV_MAX_FILE_BYTES})")
    return data


def read_file(path: str) -> np.ndarray:
    return decode_bytes(read_file_bytes(path), path)


def _page_loader(read: Callable[[], bytes], what: str, index: int, source: str
                 ) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        if what == "pdf":
            return pages.render_pdf_page(read(), index, max_pixels(), source)
        return pages.tiff_page(read(), index, max_pixels(), source)
    return load


def _paged(path: str | None, source: str, read: Callable[[], bytes], what: str, data: bytes,
           subdir: str = "") -> Iterator[Sample | InputError]:
    try:
        count = pages.count_pages(data, what, source)
    except InputError as exc:
        yield exc
        return
    for index in range(count):
        yield Sample(path, _page_loader(read, what, index, source), source=source,
                     page_index=index, subdir=subdir)


def _file_samples(path: str, subdir: str = "") -> Iterator[Sample | InputError]:
    """A file: one sample, or one per page of a PDF or TIFF (told by content)."""
    try:
        head = read_file_bytes(path, head=8)
    except InputError as exc:
        yield exc
        return
    what = pages.kind(head)
    if what is None:
        yield Sample(path, lambda p=path: read_file(p), subdir=subdir)
        return
    try:
        data = read_file_bytes(path)
    except InputError as exc:
        yield exc
        return
    yield from _paged(path, path, lambda p=path: read_file_bytes(p), what, data, subdir)


def _walk_dir(root: str) -> Iterator[Sample | InputError]:
    """Every image file under ``root`` in sorted path order (PaddleX's order), with folders
    that cannot be listed and entries that are not regular files reported in place."""
    found: list[tuple[str, str | InputError]] = []
    skipped = 0

    def unreadable(exc: OSError) -> None:
        where = exc.filename or root
        found.append((where, InputError(where, f"cannot list this directory "
                                               f"({exc.strerror or exc})")))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames.sort()
        for name in filenames:
            path = os.path.join(dirpath, name)
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                skipped += 1
                continue
            try:
                why = _not_regular(os.stat(path).st_mode)  # follows links, as reading would
            except OSError as exc:
                why = f"cannot read it ({exc.strerror or exc})"
            found.append((path, InputError(path, f"skipped, {why}") if why else path))
    if not found:
        other = f"{skipped} other file(s) skipped; " if skipped else ""
        found.append((root, InputError(root, f"directory holds no image files ({other}looked "
                                             "for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")))
    for path, item in sorted(found, key=lambda pair: pair[0]):
        if isinstance(item, InputError):
            yield item
            continue
        subdir = os.path.relpath(os.path.dirname(path), root)
        yield from _file_samples(path, "" if subdir == "." else subdir)


def _url_samples(url: str) -> Iterator[Sample | InputError]:
    suffix = Path(url.split("?", 1)[0].split("#", 1)[0]).suffix.lower()
    if suffix not in PAGED_SUFFIXES:
        yield Sample(url, lambda u=url: decode_bytes(fetch_url(u), u))
        return
    # A document's pages must be counted before they can be queued: fetch it now, once.
    try:
        data = fetch_url(url)
    except InputError as exc:
        yield exc
        return
    what = pages.kind(data[:8])
    if what is None:
        yield Sample(url, lambda d=data, u=url: decode_bytes(d, u))
    else:
        yield from _paged(url, url, lambda d=data: d, what, data)


def _bytes_samples(data: bytes, where: str) -> Iterator[Sample | InputError]:
    what = pages.kind(data[:8])
    if what is None:
        yield Sample(None, lambda d=data, w=where: decode_bytes(d, w), source=where)
        return
    yield from _paged(None, where, lambda d=data: d, what, data)


def _expand_str(x: str) -> Iterator[Sample | InputError]:
    if not x.strip():
        yield InputError(repr(x), "an empty string is not a path or URL")
    elif is_url(x):
        yield from _url_samples(x)
    elif os.path.isdir(x):
        yield from _walk_dir(x)
    elif os.path.isfile(x):
        yield from _file_samples(x)
    elif os.path.exists(x):
        try:
            why = _not_regular(os.stat(x).st_mode)
        except OSError as exc:
            why = f"cannot read it ({exc.strerror or exc})"
        yield InputError(x, why or "cannot read it")
    else:
        yield InputError(x, "no such file, directory or URL")


def _expand(x: Any, where: str) -> Iterator[Sample | InputError]:
    if isinstance(x, (Sample, InputError)):  # already expanded (the CLI counts first)
        yield x
    elif isinstance(x, (str, os.PathLike)):
        yield from _expand_str(os.fspath(x) if not isinstance(x, str) else x)
    elif isinstance(x, np.ndarray):
        yield Sample(None, lambda a=x, w=where: array_to_rgb(a, w), source=where)
    elif isinstance(x, Image.Image):
        yield Sample(None, lambda im=x, w=where: _pil_input(im, w), source=where)
    elif isinstance(x, (bytes, bytearray, memoryview)):
        yield from _bytes_samples(bytes(x), where)
    elif isinstance(x, dict):
        if "img" not in x:
            yield InputError(where, f"a dict input needs the key 'img', got keys {sorted(x)}")
        else:
            yield from _expand(x["img"], where)
    elif isinstance(x, (list, tuple)):
        for i, item in enumerate(x):
            yield from _expand(item, f"{where}[{i}]")
    else:
        yield InputError(where, f"unsupported input type {type(x).__name__}; pass a path, "
                         "URL, directory, numpy array, PIL image, bytes, {'img': ...} or a list")


def expand_inputs(x: Any) -> Iterator[Sample | InputError]:
    """Every image in ``x``, in order; unusable inputs come out as ``InputError``s in place."""
    for index, item in enumerate(_expand(x, "input")):
        if isinstance(item, Sample):
            item.index = index
        yield item
