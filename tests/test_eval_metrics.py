"""mAP and friends against hand-computed cases and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mlcls.training.calibrate import best_f1_threshold, calibrate
from mlcls.training.metrics import (
    average_precision,
    average_precision_11point,
    evaluate,
    mean_average_precision,
)


def test_ap_by_hand():
    # ranked: pos, neg, pos, neg -> precision 1/1 at the first positive, 2/3 at the second
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    assert average_precision([0.1, 0.2, 0.3], [0, 0, 1]) == pytest.approx(1.0)
    assert average_precision([0.3, 0.2, 0.1], [0, 0, 1]) == pytest.approx(1 / 3)


def test_tied_scores_form_one_step():
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert average_precision([0.9, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == pytest.approx(0.5)


def test_11_point_by_hand():
    # recall 0.5 with precision 1, then recall 1 with precision 2/3
    expected = (6 * 1.0 + 5 * (2 / 3)) / 11
    assert average_precision_11point([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == \
        pytest.approx(expected)


def test_classes_without_positives_are_left_out():
    scores = np.array([[0.9, 0.1, 0.4], [0.2, 0.8, 0.3], [0.7, 0.6, 0.2]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]])
    report = evaluate(scores, labels)
    assert report.per_class_ap[2] is None
    assert report.mAP == pytest.approx((1.0 + 1.0) / 2)
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))


@pytest.mark.parametrize("seed", range(5))
def test_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (60, 7))
    labels[:, 3] = 0  # a class with no positive
    # coarse scores make ties, where definitions usually part ways
    scores = np.round(rng.random((60, 7)) * 8) / 8 + labels * rng.random((60, 7)) * 0.3
    per_class = [average_precision_score(labels[:, c], scores[:, c])
                 for c in range(7) if labels[:, c].any()]
    assert mean_average_precision(scores, labels) == pytest.approx(np.mean(per_class),
                                                                   abs=1e-12)
    for c in range(7):
        if labels[:, c].any():
            assert average_precision(scores[:, c], labels[:, c]) == pytest.approx(
                average_precision_score(labels[:, c], scores[:, c]), abs=1e-12)


def test_precision_recall_f1_by_hand():
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.3, 0.4]])
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    r = evaluate(scores, labels, 0.5)
    assert r.precision == pytest.approx([0.5, 1.0])
    assert r.recall == pytest.approx([0.5, 0.5])
    assert r.f1 == pytest.approx([0.5, 2 / 3])
    assert r.micro["precision"] == pytest.approx(2 / 3)
    assert r.micro["recall"] == pytest.approx(0.5)
    assert r.micro["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    # the threshold is exclusive, as in the pipeline: a score equal to it is not kept
    assert evaluate(np.array([[0.5]]), np.array([[1]]), 0.5).recall == [0.0]


def test_calibrated_threshold_maximises_f1():
    assert best_f1_threshold([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0]) == pytest.approx(0.55)
    # keeping the top three (two positives) beats keeping only the top one
    t = best_f1_threshold([0.9, 0.6, 0.5, 0.1], [1, 0, 1, 0])
    assert 0.1 < t < 0.5
    assert best_f1_threshold([0.3, 0.2], [0, 0], default=0.42) == 0.42
    scores = np.array([[0.9, 0.05], [0.4, 0.3], [0.35, 0.2]])
    labels = np.array([[1, 0], [1, 1], [0, 0]])
    thresholds = calibrate(scores, labels)
    r = evaluate(scores, labels, thresholds)
    assert r.f1 == pytest.approx([1.0, 1.0])
