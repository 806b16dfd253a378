"""Turning what a user passes to ``predict`` into decoded RGB images.

Accepted: a file path, a directory (recursive, sorted), an http(s) URL, a numpy array (BGR, as
PaddleX takes it), a PIL image, raw bytes, a dict ``{"img": ...}``, and lists of these.
Decoding follows PaddleX: OpenCV ``imdecode`` with ``IMREAD_COLOR`` (EXIF orientation applied,
grey and 16-bit promoted to 8-bit colour, alpha dropped), then BGR -> RGB. Formats OpenCV cannot
read (GIF) go through Pillow, first frame.
"""

from __future__ import annotations

import io
import os
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
DEFAULT_URL_TIMEOUT = 30.0
DEFAULT_URL_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class Sample:
    """One image to classify: where it came from, and how to get its pixels (RGB uint8 HWC)."""

    input_path: str | None
    load: Callable[[], np.ndarray]
    index: int = 0  # position in the input order

    @property
    def label(self) -> str:
        return self.input_path or f"input #{self.index}"


def decode_bytes(data: bytes, source: str) -> np.ndarray:
    """Decode an encoded image (any format OpenCV or Pillow reads) to RGB uint8 HWC."""
    if not data:
        raise InputError(source, "empty file (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is not None:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)
            return pil_to_rgb(ImageOps.exif_transpose(img) or img)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        head = data[:16]
        raise InputError(source, f"not a readable image ({len(data)} bytes starting "
                         f"{head!r}): {exc}") from None


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        grey = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.stack([grey] * 3, axis=-1)
    return np.asarray(img.convert("RGB"))


def array_to_rgb(arr: np.ndarray, source: str) -> np.ndarray:
    """A user's numpy image (BGR or grey, as PaddleX takes it) to RGB uint8."""
    if arr.size == 0:
        raise InputError(source, f"empty array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
        elif np.issubdtype(arr.dtype, np.floating) and np.nanmax(arr) <= 1.0:
            arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise InputError(source, f"unsupported array dtype {arr.dtype}; pass uint8 BGR")
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_BGR2RGB)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_BGRA2RGB)
    raise InputError(source, f"array of shape {arr.shape} is not an image "
                     "(expected HxW, HxWx3 BGR or HxWx4 BGRA)")


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def fetch_url(url: str, timeout: float | None = None, max_bytes: int | None = None,
              opener: urllib.request.OpenerDirector | None = None) -> bytes:
    """Download ``url`` with a timeout and a size limit; errors name the URL. ``opener``
    replaces urllib's default one (the server passes one that vets addresses)."""
    timeout = timeout or _env_number(ENV_URL_TIMEOUT, DEFAULT_URL_TIMEOUT)
    max_bytes = int(max_bytes or _env_number(ENV_URL_MAX_BYTES, DEFAULT_URL_MAX_BYTES))
    request = urllib.request.Request(url, headers={"User-Agent": "mlcls"})
    try:
        open_url = opener.open if opener is not None else urllib.request.urlopen
        with open_url(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise InputError(url, f"the server announces {int(length)} bytes, over the "
                                 f"limit of {max_bytes} ({ENV_URL_MAX_BYTES})")
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise InputError(url, f"the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise InputError(url, f"cannot reach it ({exc.reason})") from None
    except TimeoutError:
        raise InputError(url, f"no answer within {timeout:g} s ({ENV_URL_TIMEOUT})") from None
    except OSError as exc:
        raise InputError(url, f"download failed ({exc})") from None
    if len(data) > max_bytes:
        raise InputError(url, f"more than {max_bytes} bytes, over the limit "
                         f"({ENV_URL_MAX_BYTES})")
    return data


def read_file(path: str) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except OSError as exc:
        raise InputError(path, f"cannot read it ({exc.strerror})") from None
    return decode_bytes(data, path)


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _walk_dir(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def _expand(x: Any, where: str) -> Iterator[Sample | InputError]:
    if isinstance(x, (Sample, InputError)):  # already expanded (the CLI counts first)
        yield x
        return
    if isinstance(x, Path):
        x = str(x)
    if isinstance(x, str):
        if is_url(x):
            yield Sample(x, lambda u=x: decode_bytes(fetch_url(u), u))
        elif os.path.isdir(x):
            files = _walk_dir(Path(x))
            if not files:
                yield InputError(x, "directory holds no image files (looked for "
                                 + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
            for f in files:
                yield Sample(f, lambda p=f: read_file(p))
        elif os.path.exists(x):
            yield Sample(x, lambda p=x: read_file(p))
        else:
            yield InputError(x, "no such file, directory or URL")
    elif isinstance(x, np.ndarray):
        yield Sample(None, lambda a=x, w=where: array_to_rgb(a, w))
    elif isinstance(x, Image.Image):
        yield Sample(None, lambda im=x: pil_to_rgb(ImageOps.exif_transpose(im) or im))
    elif isinstance(x, (bytes, bytearray, memoryview)):
        data = bytes(x)
        yield Sample(None, lambda d=data, w=where: decode_bytes(d, w))
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
