"""Multi-label metrics on a score matrix and a 0/1 label matrix (rows: images, columns:
classes).

``mean_average_precision`` is PaddleClas' integral mAP: per class, the area under the
precision-recall step curve (tied scores form one step, as scikit-learn's
``average_precision_score``), averaged over the classes that have at least one positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score, from the highest score down."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.float64)
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    predicted = last_of_tie + 1.0
    return tp / predicted, tp / y.sum()


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class (NaN when it has no positive)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if labels.sum() == 0:
        return float("nan")
    precision, recall = _curve(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precision_11point(scores: np.ndarray, labels: np.ndarray) -> float:
    """VOC-2007 AP: the mean, over recall levels 0, 0.1 ... 1, of the best precision reached
    at that recall or beyond (NaN when the class has no positive)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if labels.sum() == 0:
        return float("nan")
    precision, recall = _curve(scores, labels)
    points = [precision[recall >= level - 1e-12].max(initial=0.0)
              for level in np.linspace(0.0, 1.0, 11)]
    return float(np.mean(points))


@dataclass
class Report:
    """Everything ``mlcls eval`` prints."""

    mAP: float
    mAP_11point: float
    per_class_ap: list[float | None]  # None for a class without positives
    threshold: list[float]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    positives: list[int]
    micro: dict[str, float] = field(default_factory=dict)
    macro: dict[str, float] = field(default_factory=dict)
    images: int = 0


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def evaluate(scores: np.ndarray, labels: np.ndarray, threshold: np.ndarray | float = 0.5
             ) -> Report:
    """mAP, 11-point mAP, per-class AP, and precision/recall/F1 with ``score > threshold``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be "
                         "[images, classes]")
    n_cls = scores.shape[1]
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (n_cls,))
    ap = np.array([average_precision(scores[:, c], labels[:, c]) for c in range(n_cls)])
    ap11 = np.array([average_precision_11point(scores[:, c], labels[:, c])
                     for c in range(n_cls)])
    pred = scores > thr
    tp = (pred & (labels == 1)).sum(0).astype(np.float64)
    n_pred = pred.sum(0).astype(np.float64)
    n_pos = labels.sum(0).astype(np.float64)
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_pos)
    f1 = _ratio(2 * precision * recall, precision + recall)
    has_pos = n_pos > 0
    micro_p = tp.sum() / n_pred.sum() if n_pred.sum() else 0.0
    micro_r = tp.sum() / n_pos.sum() if n_pos.sum() else 0.0
    micro_f1 = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0

    def mean(values: np.ndarray) -> float:
        return float(values[has_pos].mean()) if has_pos.any() else float("nan")

    return Report(
        mAP=mean(ap), mAP_11point=mean(ap11),
        per_class_ap=[None if np.isnan(v) else float(v) for v in ap],
        threshold=[float(t) for t in thr], precision=precision.tolist(),
        recall=recall.tolist(), f1=f1.tolist(), positives=[int(v) for v in n_pos],
        micro={"precision": float(micro_p), "recall": float(micro_r), "f1": float(micro_f1)},
        macro={"precision": mean(precision), "recall": mean(recall), "f1": mean(f1)},
        images=int(scores.shape[0]))


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    return evaluate(scores, labels).mAP
