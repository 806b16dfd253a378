"""Turning the request's ``image`` field (an http(s) URL or base64, with or without a data-URI
prefix) into RGB pixels, refusing what is too big before it is decoded."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from .. import pages
from ..errors import InputError
from ..fetch import Guard
from ..inputs import check_pixels, decode_bytes, fetch_url, header_size, is_url
from ..limits import ENV_MAX_PIXELS, printable
from .errors import ServingError, bad_request


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    max_aspect_ratio: float
    url_timeout: float
    url_max_bytes: int
    guard: Guard | None = None
    max_pages: int = 10


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


def check_size(width: int, height: int, limits: ImageLimits, source: str = "image") -> None:
    try:
        check_pixels(width, height, limits.max_pixels, source)
    except InputError as exc:
        raise ServingError(413, str(exc).replace(f"({ENV_MAX_PIXELS}, or --max_pixels when "
                                                 "serving)", "(--max_pixels)")) from None
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > limits.max_aspect_ratio:
        raise ServingError(413, f"{source}: {width}x{height} has an aspect ratio of "
                                f"{ratio:.0f}:1, over the limit of "
                                f"{limits.max_aspect_ratio:g}:1 (--max_aspect_ratio)")


def _decode_page(data: bytes, what: str | None, index: int, source: str,
                 limits: ImageLimits) -> np.ndarray:
    try:
        if what == "pdf":
            pixels = pages.render_pdf_page(data, index, limits.max_pixels, source)
        elif what == "tiff":
            pixels = pages.tiff_page(data, index, limits.max_pixels, source)
        else:
            pixels = decode_bytes(data, source, limits.max_pixels)
    except InputError as exc:
        if "over the limit" in exc.reason:
            raise ServingError(413, f"{source}: " + exc.reason.replace(
                f"({ENV_MAX_PIXELS}, or --max_pixels when serving)", "(--max_pixels)")
                               ) from None
        raise bad_request(f"{source}: {exc.reason}") from None
    check_size(pixels.shape[1], pixels.shape[0], limits, source)
    return pixels


def request_bytes(image: str, limits: ImageLimits) -> tuple[bytes, str]:
    """The encoded bytes of the request's ``image`` (fetched, or base64-decoded) and a short
    name for it. Blocking: call it off the event loop."""
    if is_url(image):
        source = f"image URL {_short(printable(image))}"
        try:
            return fetch_url(image, timeout=limits.url_timeout,
                             max_bytes=limits.url_max_bytes, guard=limits.guard), source
        except InputError as exc:
            raise bad_request(f"{source}: {exc.reason}") from None
    if "://" in image[:16]:
        raise bad_request(f"image: '{_short(printable(image))}' is a URL the server does not "
                          "fetch; only http:// and https:// URLs are accepted")
    return decode_base64(image), "image"


def load_request_image(image: str, limits: ImageLimits) -> tuple[list[np.ndarray], str, bool]:
    """The RGB pixels of every page of the request's ``image`` (one for a plain image; at
    most ``max_pages`` of a PDF or TIFF), a short name for it, and whether it is a document
    with pages. Blocking: call it off the event loop."""
    data, source = request_bytes(image, limits)
    return decode_request(data, source, limits)


def decode_request(data: bytes, source: str, limits: ImageLimits
                   ) -> tuple[list[np.ndarray], str, bool]:
    """``load_request_image`` after the bytes are in hand."""
    if not data:
        raise bad_request(f"{source}: empty (0 bytes)")
    what = pages.kind(data[:8])
    if what is None:
        size = header_size(data)
        if size is not None:  # else the decoder reports it (under OpenCV's limit, set to ours)
            check_size(size[0], size[1], limits, source)
        return [_decode_page(data, None, 0, source, limits)], source, False
    try:
        count = min(pages.count_pages(data, what, source), limits.max_pages)
    except InputError as exc:
        raise bad_request(f"{source}: {exc.reason}") from None
    decoded: list[np.ndarray] = []
    total = 0
    for index in range(count):
        page = _decode_page(data, what, index, source, limits)
        total += page.shape[0] * page.shape[1]
        if total > limits.max_pixels:  # one request holds all its pages at once
            raise ServingError(413, f"{source}: pages 0 to {index} together are {total} "
                                    f"pixels, over the limit of {limits.max_pixels} "
                                    "(--max_pixels; --max_pages takes fewer pages)")
        decoded.append(page)
    return decoded, source, True

