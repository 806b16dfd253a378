"""The core's numpy preprocessing, built from inference.yml's ``PreProcess.transform_ops``.

Matches PaddleX: resize with PIL (or OpenCV when the op says ``backend: cv2``), optional centre
crop, then ``x * (scale / std) - mean / std`` in float32 and HWC -> CHW.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .errors import ModelError
from .interfaces import Preprocessor

_PIL_INTERP = {
    "nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "linear": Image.BILINEAR,
    "bicubic": Image.BICUBIC, "cubic": Image.BICUBIC, "lanczos": Image.LANCZOS,
    "box": Image.BOX, "area": Image.BOX, "hamming": Image.HAMMING,
}
_CV2_INTERP = {
    "nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "linear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4,
    "area": cv2.INTER_AREA,
}

ImageOp = Callable[[np.ndarray], np.ndarray]


def _size_pair(value: Any, where: str) -> tuple[int, int]:
    """(width, height) from an int or a [width, height] list."""
    if isinstance(value, bool):
        raise ModelError(f"{where}: size must be an integer or [width, height]")
    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = (int(value[0]), int(value[1]))
    else:
        raise ModelError(f"{where}: size must be an integer or [width, height], got {value!r}")
    if min(pair) <= 0:
        raise ModelError(f"{where}: size must be positive, got {value!r}")
    return pair


def _resize_op(args: dict[str, Any]) -> ImageOp:
    where = "inference.yml ResizeImage"
    backend = str(args.get("backend", "cv2")).lower()
    interp_name = str(args.get("interpolation") or "bilinear").lower()
    table = _PIL_INTERP if backend == "pil" else _CV2_INTERP
    if backend not in ("pil", "cv2"):
        raise ModelError(f"{where}: backend must be 'pil' or 'cv2', got {backend!r}")
    if interp_name not in table:
        raise ModelError(f"{where}: unknown interpolation {interp_name!r} for backend "
                         f"{backend}; known: {', '.join(table)}")
    interp = table[interp_name]
    if args.get("size") is not None:
        fixed = _size_pair(args["size"], where)

        def target(w: int, h: int) -> tuple[int, int]:
            return fixed
    elif args.get("resize_short") is not None:
        short = int(args["resize_short"])
        if short <= 0:
            raise ModelError(f"{where}: resize_short must be positive, got {short}")

        def target(w: int, h: int) -> tuple[int, int]:
            scale = short / min(w, h)
            return max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    else:
        raise ModelError(f"{where}: needs 'size' or 'resize_short'")

    def resize(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        size = target(w, h)
        if size == (w, h):
            return img
        if backend == "pil":
            return np.asarray(Image.fromarray(img).resize(size, interp))
        return cv2.resize(img, size, interpolation=interp)

    return resize


def _crop_op(args: dict[str, Any]) -> ImageOp:
    cw, ch = _size_pair(args.get("size"), "inference.yml CropImage")

    def crop(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        if w < cw or h < ch:
            raise ValueError(f"image of {w}x{h} is smaller than the crop {cw}x{ch}")
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        return img[y0:y0 + ch, x0:x0 + cw]

    return crop


def _parse_scale(value: Any) -> float:
    if isinstance(value, str):  # PaddleClas writes "1.0/255.0"
        num, _, den = value.partition("/")
        try:
            return float(num) / float(den) if den else float(num)
        except ValueError as exc:
            raise ModelError(f"inference.yml NormalizeImage: bad scale {value!r}") from exc
    return float(value)


class NumpyPreprocessor(Preprocessor):
    """Per-image ops (resize, crop) then a fused normalise + layout into the batch array."""

    def __init__(self, transform_ops: list[dict[str, Any]]):
        self.image_ops: list[ImageOp] = []
        self.alpha: np.ndarray | None = None
        self.beta: np.ndarray | None = None
        self._table: np.ndarray | None = None
        self.chw = False
        for entry in transform_ops:
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ModelError(f"inference.yml transform_ops: bad entry {entry!r}")
            (name, args), = entry.items()
            args = args or {}
            if name == "ResizeImage":
                self.image_ops.append(_resize_op(args))
            elif name == "CropImage":
                self.image_ops.append(_crop_op(args))
            elif name == "NormalizeImage":
                self._set_normalize(args)
            elif name == "ToCHWImage":
                self.chw = True
            elif name == "DecodeImage":
                continue  # decoding happens when the input is read
            else:
                raise ModelError(f"inference.yml transform_ops: unsupported op '{name}' "
                                 "(supported: ResizeImage, CropImage, NormalizeImage, "
                                 "ToCHWImage)")

    def _set_normalize(self, args: dict[str, Any]) -> None:
        scale = _parse_scale(args.get("scale", 1 / 255))
        mean = np.asarray(args.get("mean", [0.485, 0.456, 0.406]), dtype=np.float64)
        std = np.asarray(args.get("std", [0.229, 0.224, 0.225]), dtype=np.float64)
        if mean.shape != (3,) or std.shape != (3,) or np.any(std == 0):
            raise ModelError("inference.yml NormalizeImage: mean and std need 3 values, "
                             "std non-zero")
        order = str(args.get("order") or "hwc").lower()
        if order not in ("hwc", "chw"):
            raise ModelError(f"inference.yml NormalizeImage: order must be hwc or chw, "
                             f"got {order!r}")
        # Same float32 constants as PaddleX, so the tensors are bit-identical.
        self.alpha = (scale / std).astype(np.float32)
        self.beta = (-mean / std).astype(np.float32)
        # A uint8 channel has 256 values, so ``x * alpha + beta`` (float32, rounded after the
        # multiply and after the add, as numpy does it) can be looked up instead of computed:
        # the same bits, ten times faster than the arithmetic over a 448x448 image.
        values = np.arange(256, dtype=np.float32)[:, None]
        self._table = values * self.alpha + self.beta  # [256, 3]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The per-image part: resize/crop an RGB uint8 HWC image."""
        for op in self.image_ops:
            image = op(image)
        return image

    def to_tensor(self, image: np.ndarray, out: np.ndarray) -> None:
        """Normalise one prepared image into ``out`` (one slot of the batch), bit-identical
        to ``image.astype(float32) * alpha + beta``."""
        if self.alpha is not None and image.dtype == np.uint8 and image.ndim == 3 \
                and image.shape[2] == 3:
            self._lookup(image, out)
            return
        x = image.astype(np.float32)
        if self.alpha is not None:
            x *= self.alpha
            x += self.beta
        out[...] = x.transpose(2, 0, 1) if self.chw else x

    def _lookup(self, image: np.ndarray, out: np.ndarray) -> None:
        """The normalisation by table look-up, one channel at a time straight into its
        plane of ``out`` when the layout is CHW (so the transpose costs nothing)."""
        image = np.ascontiguousarray(image)
        if not self.chw:
            out[...] = cv2.LUT(image, self._table.reshape(256, 1, 3))
            return
        for c, channel in enumerate(cv2.split(image)):
            plane = out[c]
            written = cv2.LUT(channel, np.ascontiguousarray(self._table[:, c]), dst=plane)
            if not np.shares_memory(written, plane):  # OpenCV chose a new buffer
                plane[...] = written

    def collate(self, images: list[np.ndarray]) -> np.ndarray:
        shapes = {img.shape for img in images}
        if len(shapes) != 1:
            raise ValueError(f"images of different sizes after preprocessing: {sorted(shapes)}")
        h, w, c = images[0].shape
        batch = np.empty((len(images), c, h, w) if self.chw else (len(images), h, w, c),
                         dtype=np.float32)
        for i, img in enumerate(images):
            self.to_tensor(img, batch[i])
        return batch
