"""The three parts a backend may provide: predictor, preprocessor, postprocessor."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Placement:
    """Where an engine really runs, as read back from the engine after creation."""

    device: str  # e.g. "cpu", "gpu:0"
    detail: str = ""  # engine-specific facts (kernel library, precision...)


class Predictor(ABC):
    """Runs the network: a float32 NCHW batch in, one row of per-class scores per image out."""

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Return scores of shape ``[N, num_classes]`` for a batch of shape ``[N, C, H, W]``."""

    @abstractmethod
    def placement(self) -> Placement:
        """Where this predictor runs, read from the engine (not from what was asked)."""

    def close(self) -> None:  # noqa: B027 - optional for engines that hold nothing
        """Release engine resources."""


class Preprocessor(ABC):
    """Turns decoded RGB uint8 HWC images into the network's input batch, in two stages so
    the pipeline can overlap them with inference: ``prepare`` runs per image on worker
    threads, ``collate`` per batch just before the predictor."""

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Per-image work (resize, crop). Default: none."""
        return image

    @abstractmethod
    def collate(self, images: list[np.ndarray]) -> np.ndarray:
        """Return the float32 ``[N, C, H, W]`` batch for prepared images."""

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        return self.collate([self.prepare(img) for img in images])


@dataclass
class Prediction:
    """The labels kept for one image, best score first."""

    class_ids: list[int]
    scores: list[float]
    label_names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


class Postprocessor(ABC):
    """Turns score rows into kept labels."""

    @abstractmethod
    def __call__(self, scores: np.ndarray, threshold: Any = None) -> list[Prediction]:
        """One ``Prediction`` per row of ``scores``; ``threshold`` overrides the model's."""
