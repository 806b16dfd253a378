"""Results: PaddleX's keys and file names, plus the device that produced them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from .visualize import draw_result

log = logging.getLogger(__name__)

_MAX_NAME_BYTES = 255  # NAME_MAX on Linux and macOS file systems
_IMAGE_EXTS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP",
               ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def _new_file_mode(path: Path) -> int:
    """The mode ``path`` keeps (if it exists) or gets (as a plain ``open`` would create it)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once, at import: os.umask has no read-only form


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write through a temporary file and rename, so a reader never sees half a file and an
    existing file is only replaced by a complete one. The result has the permissions a plain
    write would give it (the temporary file starts private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name stays short: the target's may already be as long as names can be.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            write(fh)
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_dir(scratch: Path, target: Path) -> None:
    """Move the complete folder ``scratch`` to ``target``, replacing any folder there, so a
    reader finds the old folder or the new one, never a mix. ``scratch`` must sit beside
    ``target`` (same file system) for the renames to be atomic."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        scratch.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        scratch.rename(target)


def _source_name(input_path: str | None) -> str | None:
    if not input_path:
        return None
    if input_path.startswith(("http://", "https://")):
        return PurePosixPath(urlparse(input_path).path).name or None
    return Path(input_path).name or None


def _auto_name() -> str:
    """A name for an input that has none (array, PIL image, bytes): PaddleX's
    ``<timestamp>_<random>``, with enough randomness that two calls never share it."""
    return f"{int(time.time())}_{secrets.token_hex(4)}"


def safe_file_name(name: str) -> str:
    """``name`` made fit to write: bytes that are not UTF-8 (kept by Python as surrogates)
    become %XX, and a name too long for the file system is shortened, keeping its end
    distinct with a hash of the whole."""
    if any("\udc80" <= ch <= "\udcff" for ch in name):
        raw = os.fsencode(name)
        name = "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in raw) \
            if not _is_utf8(raw) else raw.decode("utf-8")
    encoded = name.encode("utf-8", "backslashreplace")
    if len(encoded) <= _MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    digest = hashlib.sha256(encoded).hexdigest()[:10]
    room = _MAX_NAME_BYTES - len(ext.encode()) - len(digest) - 3
    short = stem.encode("utf-8", "backslashreplace")[:room].decode("utf-8", "ignore")
    return f"{short}~{digest}" + (f".{ext}" if ext else "")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def json_text(data: Any, indent: int | None = 4, ensure_ascii: bool = False) -> str:
    """JSON that any UTF-8 stream takes: a path's undecodable bytes (surrogates) are written
    as JSON escapes instead of failing the write."""
    text = json.dumps(data, indent=indent, ensure_ascii=ensure_ascii, default=_plain)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class BaseResult(dict):
    """Shared by successful and failed results: printing and JSON, as PaddleX 3.7.2 and the
    pipeline's documentation (``format_json``) both spell them."""

    index: int = 0
    subdir: str = ""
    _auto: str | None = None

    @property
    def ok(self) -> bool:
        return True

    @property
    def file_name(self) -> str:
        """The source's file name that saved files are named after (PaddleX's rule): the
        input's name, or ``<timestamp>_<random>`` for an input without one."""
        name = _source_name(self.get("input_path"))
        if name is None:
            if self._auto is None:
                self._auto = _auto_name()
            name = self._auto
        return name

    @property
    def stem(self) -> str:
        stem = Path(self.file_name).stem
        page = self.get("page_index")
        return stem if page is None else f"{stem}_{page}"

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    @property
    def json(self) -> dict[str, Any]:
        return {"res": self.to_dict()}

    @property
    def str(self) -> dict[str, Any]:
        """PaddleX's ``str`` attribute: the result under the key ``res``."""
        return {"res": self.to_dict()}

    def to_str(self, json_format: bool = False, indent: int = 4,
               ensure_ascii: bool = False) -> str:
        if json_format:
            return json_text(self.json, indent=indent, ensure_ascii=ensure_ascii)
        return repr(self.json).encode("utf-8", "backslashreplace").decode("utf-8")

    def __str__(self) -> str:
        return self.to_str(json_format=True)

    def print(self, format_json: bool | None = None, indent: int = 4,
              ensure_ascii: bool = False, *, json_format: bool | None = None) -> None:
        """Print the result: indented JSON by default (the pipeline documentation's
        ``format_json=True``); ``json_format`` is PaddleX 3.7.2's name for the same switch."""
        if format_json is not None and json_format is not None and format_json != json_format:
            raise TypeError("print(): format_json and json_format disagree; pass one")
        as_json = True if format_json is None and json_format is None else \
            bool(format_json if format_json is not None else json_format)
        print(self.to_str(json_format=as_json, indent=indent, ensure_ascii=ensure_ascii))

    def _target(self, save_path: str | os.PathLike, suffix: str) -> Path:
        """``save_path`` itself when it names a file with this suffix, else
        ``save_path/<sub-folder>/<stem>_res<suffix>``, the sub-folder being where the input
        sat below the directory given as input."""
        path = Path(save_path)
        if path.suffix.lower() == suffix or (suffix != ".json" and path.suffix.lower()
                                             in _IMAGE_EXTS):
            return path
        folder = path / self.subdir if self.subdir else path
        return folder / safe_file_name(f"{self.stem}_res{suffix}")


class MultiLabelClsResult(BaseResult):
    """One image's labels: ``input_path``, ``page_index``, ``class_ids``, ``scores``,
    ``label_names`` as in PaddleX, and ``device``, the device that computed them."""

    def __init__(self, data: dict[str, Any], image: np.ndarray | None = None, index: int = 0,
                 subdir: str = ""):
        super().__init__(data)
        self._image = image
        self.index = index
        self.subdir = subdir

    @property
    def img(self) -> dict[str, Image.Image]:
        if self._image is None:
            raise ValueError(f"{self.stem}: the image was not kept, nothing to draw")
        return {"res": draw_result(self._image, self["class_ids"], self["scores"],
                                   self["label_names"])}

    def save_to_json(self, save_path: str | os.PathLike, indent: int = 4,
                     ensure_ascii: bool = False) -> Path:
        target = self._target(save_path, ".json")
        text = json_text(self.to_dict(), indent=indent, ensure_ascii=ensure_ascii)
        atomic_write(target, lambda fh: fh.write(text), mode="w")
        return target

    def save_to_img(self, save_path: str | os.PathLike) -> Path:
        # PaddleX's rule: the input's own image type, else PNG (a PDF's pages, arrays).
        source_ext = Path(self.file_name).suffix.lower()
        ext = source_ext if source_ext in _IMAGE_EXTS else ".png"
        target = self._target(save_path, ext)
        fmt = _IMAGE_EXTS.get(target.suffix.lower(), "PNG")
        picture = self.img["res"]
        options = {"quality": 95} if fmt == "JPEG" else {}
        atomic_write(target, lambda fh: picture.save(fh, format=fmt, **options))
        return target

    def save_all(self, save_path: str | os.PathLike) -> list[Path]:
        return [self.save_to_json(save_path), self.save_to_img(save_path)]


class FailedResult(BaseResult):
    """An input that could not be classified: ``input_path`` and ``error``. It takes the
    failed input's place in the output order; saving it writes nothing."""

    def __init__(self, input_path: str | None, error: str, index: int = 0):
        super().__init__({"input_path": input_path, "error": error})
        self.index = index

    @property
    def ok(self) -> bool:
        return False

    def _skip(self, *args: Any, **kwargs: Any) -> None:
        log.warning("not saving %s: %s", self.get("input_path") or self.stem, self["error"])

    save_to_json = save_to_img = save_all = _skip
