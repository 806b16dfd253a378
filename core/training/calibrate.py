"""Per-class thresholds: for each class, the cut that maximises F1 on a labelled split.

The pipeline keeps a class when ``score > threshold``, so each threshold is placed halfway
between the lowest kept score and the next lower one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ..errors import UsageError
from .export import write_inference_yml


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray, default: float = 0.5) -> float:
    """The F1-maximising threshold of one class (``default`` when it has no positive)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    positives = labels.sum()
    if positives == 0:
        return default
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # keeping s[0..end]
    tp = np.cumsum(y)[ends]
    f1 = 2 * tp / (ends + 1 + positives)
    best = int(np.argmax(f1))
    kept_low = s[ends[best]]
    below = s[ends[best] + 1] if ends[best] + 1 < len(s) else 0.0
    return float(np.clip((kept_low + below) / 2, 0.0, 1.0))


def calibrate(scores: np.ndarray, labels: np.ndarray, default: float = 0.5) -> list[float]:
    return [round(best_f1_threshold(scores[:, c], labels[:, c], default), 6)
            for c in range(scores.shape[1])]


def write_thresholds(model_dir: str | Path, thresholds: list[float],
                     default: float = 0.5) -> Path:
    """Store per-class thresholds in ``inference.yml`` as ``{default: .., <id>: ..}``, the
    dict form PaddleX reads."""
    path = Path(model_dir) / "inference.yml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        out = cfg["PostProcess"]["MultiLabelThreshOutput"]
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{path}: no PostProcess.MultiLabelThreshOutput to write to") from exc
    out["threshold"] = {"default": default, **{i: t for i, t in enumerate(thresholds)}}
    write_inference_yml(path, cfg)
    return path
