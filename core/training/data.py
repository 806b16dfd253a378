"""Feeding a dataset split to the training loop.

Images stream from disk: nothing decoded is kept between epochs, so memory does not grow with
the dataset. Worker threads decode, resize (exactly as inference resizes), augment and collate
whole batches a few steps ahead of the one being trained on; OpenCV, Pillow and numpy release
the interpreter lock for the heavy parts, so the threads overlap with Paddle's step. Every
image's random draws come from a seed fixed before its batch is handed out, so a run is
reproducible whatever order the threads finish in.

An image that cannot be read is left out of its batch and reported once, by the trainer; the
rest of the run goes on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
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


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Batch:
    x: np.ndarray  # NCHW float32, normalised
    y: np.ndarray  # [N, classes] float32
    index: np.ndarray  # rows of the split these are
    bad: list[str] = field(default_factory=list)  # "train.txt:LINE: PATH: why"


class SplitData:
    """A split's image paths and labels, read batch by batch on worker threads."""

    def __init__(self, split: Split, image_size: int, workers: int | None = None,
                 prefetch: int | None = None):
        self.split = split
        self.pre = NumpyPreprocessor(preprocess_ops(image_size))
        self.image_size = image_size
        self.labels = split.labels.astype(np.float32)
        self.paths = split.paths
        self.workers = workers or default_workers()
        self.prefetch = prefetch or 2 * self.workers

    def __len__(self) -> int:
        return len(self.labels)

    def _load(self, i: int) -> np.ndarray:
        path = self.paths[i]
        return self.pre.prepare(decode_bytes(path.read_bytes(), str(path)))

    def _make(self, idx: np.ndarray, seeds: np.ndarray | None,
              aug: AugmentConfig | None) -> Batch:
        images, kept, bad = [], [], []
        for j, i in enumerate(idx):
            try:
                img = self._load(int(i))
            except (InputError, OSError, ValueError) as exc:
                bad.append(f"{self.split.name}.txt:{self.split.lines[i]}: {self.paths[i]}: "
                           f"{exc}")
                continue
            if aug is not None and seeds is not None:
                img = augment(img, aug, np.random.default_rng(seeds[j]))
            images.append(img)
            kept.append(i)
        kept_idx = np.asarray(kept, dtype=np.int64)
        x = (self.pre.collate(images) if images else
             np.zeros((0, 3, self.image_size, self.image_size), np.float32))
        return Batch(x, self.labels[kept_idx], kept_idx, bad)

    def batches(self, batch_size: int, rng: np.random.Generator | None = None,
                aug: AugmentConfig | None = None, drop_last: bool = False) -> Iterator[Batch]:
        """Shuffled and augmented when ``rng`` is given, else in order and untouched."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        jobs = []
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            seeds = rng.integers(0, 2**63 - 1, len(idx)) if rng is not None else None
            jobs.append((idx, seeds, aug if rng is not None else None))
        with ThreadPoolExecutor(self.workers, thread_name_prefix="mlcls-data") as pool:
            pending: deque = deque()
            todo = iter(jobs)
            try:
                for job in todo:
                    pending.append(pool.submit(self._make, *job))
                    if len(pending) >= self.prefetch:
                        break
                while pending:
                    batch = pending.popleft().result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.append(pool.submit(self._make, *nxt))
                    yield batch
            finally:
                for fut in pending:  # a consumer that stops early leaves no work behind
                    fut.cancel()

    def steps(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)
