"""Turning what a user passes to ``predict`` into decoded RGB images.

Accepted: a file path, a directory (recursive, sorted), an http(s) URL, a numpy array (BGR, as
PaddleX takes it), a PIL image, raw bytes, a dict ``{"img": ...}``, and lists of these.

Encoded images (files, URLs, bytes) are decoded as PaddleX 3.7.2 decodes them: OpenCV
``imdecode`` with ``IMREAD_COLOR``, then BGR -> RGB. That call applies EXIF orientation (JPEG,
PNG, TIFF; not WebP), promotes grey to three channels, scales 16-bit down by dropping the low
byte, drops alpha without compositing and converts CMYK. The type is told from the content,
never from a suffix or a Content-Type. Two departures, both where PaddleX fails:

- formats OpenCV cannot read (GIF in OpenCV 4.10, animated WebP, ...) are decoded by Pillow,
  first frame only, palette expanded to RGB (a transparent colour shows as its palette colour);
- a JPEG cut short is an error, where OpenCV would return it with a grey bottom.

A PIL image is taken as its pixels with EXIF orientation applied, converted to RGB by Pillow
(16-bit grey drops its low byte, as OpenCV does for files).
"""

from __future__ import annotations

import http.client
import io
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif",
                            ".jpe", ".jfif", ".dib", ".pbm", ".pgm", ".ppm"})
ENV_URL_TIMEOUT = "MLCLS_URL_TIMEOUT"
ENV_URL_MAX_BYTES = "MLCLS_URL_MAX_BYTES"
DEFAULT_URL_TIMEOUT = 30.0  # seconds for the whole download, and for any one stall
DEFAULT_URL_MAX_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 64 * 1024
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


@dataclass
class Sample:
    """One image to classify: where it came from, and how to get its pixels (RGB uint8 HWC).
    ``source`` names an input that has no path (``input[2]`` for the third of a list)."""

    input_path: str | None
    load: Callable[[], np.ndarray]
    index: int = 0  # position in the input order
    source: str | None = None

    @property
    def label(self) -> str:
        return self.input_path or self.source or f"input #{self.index}"


# -- decoding ---------------------------------------------------------------------------------

def decode_bytes(data: bytes, source: str) -> np.ndarray:
    """Decode an encoded image to RGB uint8 HWC, as PaddleX does (see the module docstring)."""
    if not data:
        raise InputError(source, "empty file (0 bytes)")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return _decode_with_pillow(data, source)
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


def _decode_with_pillow(data: bytes, source: str) -> np.ndarray:
    try:
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


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(grey), cv2.COLOR_GRAY2RGB)


def array_to_rgb(arr: np.ndarray, source: str) -> np.ndarray:
    """A user's numpy image (BGR or grey, as PaddleX takes it) to RGB uint8."""
    if arr.size == 0:
        raise InputError(source, f"empty array of shape {arr.shape}")
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

def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def fetch_url(url: str, timeout: float | None = None, max_bytes: int | None = None,
              opener: urllib.request.OpenerDirector | None = None) -> bytes:
    """Download ``url``: at most ``max_bytes``, all of it within ``timeout`` seconds (a server
    that trickles is cut off too); errors name the URL. ``opener`` replaces urllib's default
    one (the server passes one that vets addresses)."""
    timeout = timeout or _env_number(ENV_URL_TIMEOUT, DEFAULT_URL_TIMEOUT)
    max_bytes = int(max_bytes or _env_number(ENV_URL_MAX_BYTES, DEFAULT_URL_MAX_BYTES))
    deadline = time.monotonic() + timeout
    slow = f"no complete answer within {timeout:g} s ({ENV_URL_TIMEOUT})"
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "mlcls"})
        open_url = opener.open if opener is not None else urllib.request.urlopen
        with open_url(request, timeout=timeout) as response:
            header = response.headers.get("Content-Length")
            announced = int(header) if header and header.isdigit() else None
            if announced is not None and announced > max_bytes:
                raise InputError(url, f"the server announces {announced} bytes, over the "
                                 f"limit of {max_bytes} ({ENV_URL_MAX_BYTES})")
            read = getattr(response, "read1", response.read)
            chunks: list[bytes] = []
            received = 0
            while chunk := read(_READ_CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise InputError(url, f"more than {max_bytes} bytes, over the limit "
                                     f"({ENV_URL_MAX_BYTES})")
                if time.monotonic() > deadline:
                    raise InputError(url, f"{slow}; {received} bytes had arrived")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise InputError(url, f"the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise InputError(url, slow) from None
        raise InputError(url, f"cannot reach it ({exc.reason})") from None
    except TimeoutError:
        raise InputError(url, slow) from None
    except http.client.IncompleteRead as exc:
        raise InputError(url, f"the connection closed after {len(exc.partial)} of the "
                         "announced bytes") from None
    except (OSError, http.client.HTTPException) as exc:
        raise InputError(url, f"download failed ({exc})") from None
    except ValueError as exc:  # urllib's verdict on a malformed URL (bad host, bad port...)
        raise InputError(url, f"not a valid URL ({exc})") from None
    if announced is not None and received < announced:
        raise InputError(url, f"the connection closed after {received} of the {announced} "
                         "announced bytes")
    return b"".join(chunks)


# -- files and directories --------------------------------------------------------------------

def read_file(path: str) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except OSError as exc:
        raise InputError(path, f"cannot read it ({exc.strerror or exc})") from None
    return decode_bytes(data, path)


def _walk_dir(root: str) -> Iterator[Sample | InputError]:
    """Every image file under ``root`` in sorted path order (PaddleX's order), with folders
    that cannot be listed reported in place."""
    found: list[tuple[str, Sample | InputError]] = []
    skipped = 0

    def unreadable(exc: OSError) -> None:
        where = exc.filename or root
        found.append((where, InputError(where, f"cannot list this directory "
                                               f"({exc.strerror or exc})")))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames.sort()
        for name in filenames:
            path = os.path.join(dirpath, name)
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((path, Sample(path, lambda p=path: read_file(p))))
            else:
                skipped += 1
    if not found:
        other = f"{skipped} other file(s) skipped; " if skipped else ""
        found.append((root, InputError(root, f"directory holds no image files ({other}looked "
                                             "for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")))
    for _, item in sorted(found, key=lambda pair: pair[0]):
        yield item


def _expand_str(x: str) -> Iterator[Sample | InputError]:
    if not x.strip():
        yield InputError(repr(x), "an empty string is not a path or URL")
    elif is_url(x):
        yield Sample(x, lambda u=x: decode_bytes(fetch_url(u), u))
    elif os.path.isdir(x):
        yield from _walk_dir(x)
    elif os.path.isfile(x):
        yield Sample(x, lambda p=x: read_file(p))
    elif os.path.exists(x):
        yield InputError(x, "not a regular file (a device, pipe or socket)")
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
        yield Sample(None, lambda im=x: pil_to_rgb(ImageOps.exif_transpose(im) or im),
                     source=where)
    elif isinstance(x, (bytes, bytearray, memoryview)):
        data = bytes(x)
        yield Sample(None, lambda d=data, w=where: decode_bytes(d, w), source=where)
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
