"""Feeding a dataset split to the training loop: decode once, resize to the model's input
size exactly as inference does, keep the pixels in memory, and serve shuffled augmented
batches as normalised NCHW float32."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import InputError, UsageError
from ..inputs import decode_bytes
from ..preprocess import NumpyPreprocessor
from .augment import AugmentConfig, augment
from .dataset import Split


def preprocess_ops(image_size: int) -> list[dict]:
    """The ``PreProcess.transform_ops`` written to inference.yml, also used in training so
    that the model sees at inference what it saw when learning."""
    return [
        {"ResizeImage": {"size": image_size, "interpolation": "bilinear", "backend": "pil"}},
        {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                            "scale": 1 / 255, "order": "", "channel_num": 3}},
        {"ToCHWImage": None},
    ]


class SplitData:
    """A split's images at input size (uint8, in memory) and labels."""

    def __init__(self, split: Split, image_size: int):
        self.pre = NumpyPreprocessor(preprocess_ops(image_size))
        self.labels = split.labels.astype(np.float32)
        self.paths = split.paths
        images, bad = [], []
        for path, line in zip(split.paths, split.lines):
            try:
                images.append(self.pre.prepare(decode_bytes(path.read_bytes(), str(path))))
            except (InputError, OSError, ValueError) as exc:
                bad.append(f"{split.name}.txt:{line}: {path}: {exc}")
        if bad:
            raise UsageError(f"{len(bad)} image(s) of the {split.name} split cannot be read "
                             "(run `mlcls dataset check`):\n  " + "\n  ".join(bad[:20]))
        self.images = np.stack(images) if images else np.zeros((0, image_size, image_size, 3),
                                                              np.uint8)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, rng: np.random.Generator | None = None,
                aug: AugmentConfig | None = None, drop_last: bool = False
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Shuffled and augmented when ``rng`` is given, else in order and untouched."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            imgs = [augment(self.images[i], aug, rng) if aug is not None and rng is not None
                    else self.images[i] for i in idx]
            yield self.pre.collate(imgs), self.labels[idx]

    def steps(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)
