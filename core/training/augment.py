"""Training-time augmentations on RGB uint8 images that are already at the model's input
size.

Chosen for multi-label data: nothing may remove an object a label says is there, so there is
no cropping. By default colour jitter and a small random erasing do the regularising; the
geometric part (a mild random zoom, shift and rotation) is off unless asked for
(``--affine``): it moves objects near the edges out of the frame, and from scratch it slowed
learning most (docs/fine-tuning.md, section 5). The area it uncovers is filled with the
image's mean border colour, never a reflection, which would add mirrored copies of the
objects at the edges. The flip is off unless asked for too: whether mirroring keeps an
image's meaning depends on the content, not the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class AugmentConfig:
    # off by default: a mirrored digit, letter or arrow is another thing; photos of scenes
    # and objects mirror safely (--hflip 0.5)
    hflip: float = 0.0  # probability of a horizontal flip
    # the geometric part, off by default; AFFINE holds the values --affine turns on
    scale: float = 0.0  # zoom in [1 - scale, 1 + scale]
    shift: float = 0.0  # shift up to this fraction of the size, each axis
    rotate: float = 0.0  # degrees, either way
    jitter: float = 0.3  # brightness / contrast / saturation strength
    erase: float = 0.25  # probability of erasing one small rectangle

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def with_affine(cls, **kw) -> AugmentConfig:
        return cls(**{**AFFINE, **kw})


AFFINE = {"scale": 0.15, "shift": 0.1, "rotate": 10.0}


def augment(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    if cfg.scale or cfg.shift or cfg.rotate:
        zoom = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
        angle = rng.uniform(-cfg.rotate, cfg.rotate)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
        m[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
        edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).mean(axis=0)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT,
                             borderValue=tuple(float(v) for v in edge))
    if cfg.hflip and rng.random() < cfg.hflip:
        img = img[:, ::-1]
    x = img.astype(np.float32)
    if cfg.jitter:
        x *= 1.0 + rng.uniform(-cfg.jitter, cfg.jitter)  # brightness
        mean = x.mean()
        x = (x - mean) * (1.0 + rng.uniform(-cfg.jitter, cfg.jitter)) + mean  # contrast
        grey = x.mean(axis=2, keepdims=True)
        x = (x - grey) * (1.0 + rng.uniform(-cfg.jitter, cfg.jitter)) + grey  # saturation
    if cfg.erase and rng.random() < cfg.erase:
        area = rng.uniform(0.02, 0.08) * h * w
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        eh = int(min(h, np.sqrt(area * aspect)))
        ew = int(min(w, np.sqrt(area / aspect)))
        y0, x0 = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
        x[y0:y0 + eh, x0:x0 + ew] = rng.uniform(0, 255, 3)
    return np.clip(x, 0, 255).astype(np.uint8)
