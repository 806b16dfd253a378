"""The input limits shared by every channel (CLI, Python, HTTP), in a module light enough for
the CLI to read its defaults without importing the decoders."""

from __future__ import annotations

import os

ENV_MAX_PIXELS = "MLCLS_MAX_PIXELS"
ENV_MAX_FILE_BYTES = "MLCLS_MAX_FILE_BYTES"
DEFAULT_MAX_PIXELS = 100_000_000  # 300 MB as RGB
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024


def env_number(name: str, default: float) -> float:
    """A positive number from the environment, or ``default`` when unset or not usable."""
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def max_pixels() -> int:
    """The largest image (or PDF/TIFF page) accepted, in pixels (``MLCLS_MAX_PIXELS``)."""
    return int(env_number(ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS))


def max_file_bytes() -> int:
    """The largest file read as an input (``MLCLS_MAX_FILE_BYTES``)."""
    return int(env_number(ENV_MAX_FILE_BYTES, DEFAULT_MAX_FILE_BYTES))


def printable(text: str) -> str:
    """``text`` with control characters (and a file name's undecodable bytes) escaped, so
    that a name echoed in a message cannot start a new line or move the cursor."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else
                   ascii(ch)[1:-1] for ch in text)
