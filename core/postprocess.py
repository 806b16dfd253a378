"""The core's numpy postprocessing: PaddleX's MultiLabelThreshOutput.

A class is kept when its score is strictly above its threshold. The threshold is a float (all
classes), a dict with ``default`` and per-class ids, or a list with one value per class.
Kept labels are sorted by score, best first; scores are rounded to 5 decimals as PaddleX does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UsageError
from .interfaces import Postprocessor, Prediction


def _as_float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise UsageError(f"threshold {where}: expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"threshold {where}: expected a number, got {value!r}") from exc
    if not 0.0 <= out <= 1.0 or out != out:
        raise UsageError(f"threshold {where}: {out} is outside [0, 1]")
    return out


def threshold_vector(threshold: Any, num_classes: int) -> np.ndarray:
    """One threshold per class from any of the accepted forms."""
    if isinstance(threshold, str):
        try:
            threshold = float(threshold)
        except ValueError as exc:
            raise UsageError(f"threshold: expected a number, got {threshold!r}") from exc
    if isinstance(threshold, dict):
        default = _as_float(threshold.get("default", 0.5), "default")
        vec = np.full(num_classes, default, dtype=np.float64)
        for key, value in threshold.items():
            if key == "default":
                continue
            try:
                cls = int(key)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"threshold: key {key!r} is neither 'default' nor a class "
                                 "id") from exc
            if not 0 <= cls < num_classes:
                raise UsageError(f"threshold: class id {cls} is out of range "
                                 f"(the model has {num_classes} classes)")
            vec[cls] = _as_float(value, f"for class {cls}")
        return vec
    if isinstance(threshold, (list, tuple, np.ndarray)):
        if len(threshold) != num_classes:
            raise UsageError(f"threshold: a per-class list needs {num_classes} values, "
                             f"got {len(threshold)}")
        return np.array([_as_float(v, f"for class {i}") for i, v in enumerate(threshold)])
    return np.full(num_classes, _as_float(threshold, "value"), dtype=np.float64)


class ThresholdPostprocessor(Postprocessor):
    def __init__(self, threshold: Any = 0.5, label_list: list[str] | None = None):
        self.threshold = threshold
        self.label_list = label_list
        self._own: dict[int, np.ndarray] = {}  # the model's thresholds, by class count

    def _vector(self, threshold: Any, num_classes: int) -> np.ndarray:
        if threshold is not None:
            return threshold_vector(threshold, num_classes)
        if num_classes not in self._own:
            self._own[num_classes] = threshold_vector(self.threshold, num_classes)
        return self._own[num_classes]

    def __call__(self, scores: np.ndarray, threshold: Any = None) -> list[Prediction]:
        scores = np.asarray(scores)
        if scores.ndim != 2:
            raise ValueError(f"expected scores of shape [batch, classes], got {scores.shape}")
        num_classes = scores.shape[1]
        if self.label_list is not None and len(self.label_list) != num_classes:
            raise UsageError(f"the model outputs {num_classes} scores but its label_list has "
                             f"{len(self.label_list)} names")
        vec = self._vector(threshold, num_classes)
        out = []
        for row in scores:
            kept = np.flatnonzero(row > vec)
            kept = kept[np.argsort(-row[kept], kind="stable")]
            ids = [int(i) for i in kept]
            names = ([self.label_list[i] for i in ids] if self.label_list is not None
                     else [str(i) for i in ids])
            out.append(Prediction(ids, [round(float(row[i]), 5) for i in ids], names))
        return out
