"""Results: PaddleX's keys and file names, plus the device that produced them."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from .visualize import draw_result

log = logging.getLogger(__name__)

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            write(fh)
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _source_name(input_path: str | None, index: int) -> str:
    if not input_path:
        return f"image_{index}"
    if input_path.startswith(("http://", "https://")):
        name = PurePosixPath(urlparse(input_path).path).name
        return name or f"image_{index}"
    return Path(input_path).name


class BaseResult(dict):
    """Shared by successful and failed results: printing and JSON."""

    index: int = 0

    @property
    def ok(self) -> bool:
        return True

    @property
    def stem(self) -> str:
        return Path(_source_name(self.get("input_path"), self.index)).stem

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    @property
    def json(self) -> dict[str, Any]:
        return {"res": self.to_dict()}

    def __str__(self) -> str:
        return json.dumps(self.json, indent=4, ensure_ascii=False)

    def print(self, format_json: bool = True, indent: int = 4,
              ensure_ascii: bool = False) -> None:
        if format_json:
            print(json.dumps(self.json, indent=indent, ensure_ascii=ensure_ascii))
        else:
            print(self.json)

    def _target(self, save_path: str | os.PathLike, suffix: str) -> Path:
        """``save_path`` itself when it names a file with this suffix, else
        ``save_path/<stem>_res<suffix>``."""
        path = Path(save_path)
        if path.suffix.lower() == suffix or (suffix != ".json" and path.suffix.lower()
                                             in _IMAGE_EXTS):
            return path
        return path / f"{self.stem}_res{suffix}"


class MultiLabelClsResult(BaseResult):
    """One image's labels: ``input_path``, ``page_index``, ``class_ids``, ``scores``,
    ``label_names`` as in PaddleX, and ``device``, the device that computed them."""

    def __init__(self, data: dict[str, Any], image: np.ndarray | None = None, index: int = 0):
        super().__init__(data)
        self._image = image
        self.index = index

    @property
    def img(self) -> dict[str, Image.Image]:
        if self._image is None:
            raise ValueError(f"{self.stem}: the image was not kept, nothing to draw")
        return {"res": draw_result(self._image, self["class_ids"], self["scores"],
                                   self["label_names"])}

    def save_to_json(self, save_path: str | os.PathLike, indent: int = 4,
                     ensure_ascii: bool = False) -> Path:
        target = self._target(save_path, ".json")
        text = json.dumps(self.to_dict(), indent=indent, ensure_ascii=ensure_ascii)
        atomic_write(target, lambda fh: fh.write(text), mode="w")
        return target

    def save_to_img(self, save_path: str | os.PathLike) -> Path:
        source_ext = Path(_source_name(self.get("input_path"), self.index)).suffix.lower()
        ext = source_ext if source_ext in _IMAGE_EXTS else (".png" if source_ext else ".jpg")
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
