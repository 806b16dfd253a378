"""Turning the request's ``image`` field (an http(s) URL or base64, with or without a data-URI
prefix) into RGB pixels, refusing what is too big before it is decoded."""

from __future__ import annotations

import base64
import binascii
import io
import urllib.request
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..inputs import decode_bytes, fetch_url, is_url
from .errors import ServingError, bad_request


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    max_aspect_ratio: float
    url_timeout: float
    url_max_bytes: int
    opener: urllib.request.OpenerDirector | None = None


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not, line breaks allowed; a ``data:`` prefix is
    stripped first."""
    payload = text
    if payload[:5].lower() == "data:":
        header, comma, payload = payload.partition(",")
        if not comma:
            raise bad_request("image: a data URI needs a comma between its header and the data")
        if not header.lower().endswith(";base64"):
            raise bad_request(f"image: the data URI '{_short(header)}' is not base64-encoded "
                              "(';base64' is missing)")
    payload = "".join(payload.split())
    if not payload:
        raise bad_request("image: empty (expected an http(s) URL or base64 image data)")
    altchars = b"-_" if ("-" in payload or "_" in payload) else None
    if len(payload) % 4 == 1:
        raise bad_request(f"image: not an http(s) URL, and not base64 either (its {len(payload)} "
                          "characters cannot be base64 of any length)")
    payload += "=" * (-len(payload) % 4)
    try:
        return base64.b64decode(payload, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"image: not an http(s) URL, and not valid base64 "
                          f"({exc}; it starts {_short(text, 40)!r})") from None


def check_size(width: int, height: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels:
        raise ServingError(413, f"image: {width}x{height} is {width * height} pixels, over the "
                                f"limit of {limits.max_pixels} (--max_pixels)")
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > limits.max_aspect_ratio:
        raise ServingError(413, f"image: {width}x{height} has an aspect ratio of {ratio:.0f}:1, "
                                f"over the limit of {limits.max_aspect_ratio:g}:1 "
                                "(--max_aspect_ratio)")


def header_size(data: bytes, source: str, limits: ImageLimits) -> tuple[int, int]:
    """Width and height from the file header, without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError:
        raise ServingError(413, f"{source}: far more pixels than the limit of "
                                f"{limits.max_pixels} (--max_pixels)") from None
    except UnidentifiedImageError:
        raise bad_request(f"{source}: not an image in a format the server reads ({len(data)} "
                          f"bytes starting {data[:12]!r})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise bad_request(f"{source}: a broken image header ({len(data)} bytes starting "
                          f"{data[:12]!r}: {exc})") from None


def load_request_image(image: str, limits: ImageLimits) -> tuple[np.ndarray, str]:
    """The RGB pixels of the request's ``image`` and a short name for it (for messages).
    Blocking: call it off the event loop."""
    if is_url(image):
        source = f"image URL {_short(image)}"
        try:
            data = fetch_url(image, timeout=limits.url_timeout, max_bytes=limits.url_max_bytes,
                             opener=limits.opener)
        except InputError as exc:
            raise bad_request(f"{source}: {exc.reason}") from None
        except ValueError as exc:  # urllib's parsing: bad IPv6 brackets, IDNA labels...
            raise bad_request(f"{source}: not a valid URL ({exc})") from None
    elif "://" in image[:16]:
        raise bad_request(f"image: '{_short(image)}' is a URL the server does not fetch; only "
                          "http:// and https:// URLs are accepted")
    else:
        source = "image"
        data = decode_base64(image)
    width, height = header_size(data, source, limits)
    check_size(width, height, limits)
    try:
        pixels = decode_bytes(data, source)
    except InputError as exc:
        raise bad_request(f"{source}: {exc.reason}") from None
    check_size(pixels.shape[1], pixels.shape[0], limits)  # in case the header lied
    return pixels, source
