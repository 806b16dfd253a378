from __future__ import annotations

import numpy as np
import pytest

from mlcls.errors import UsageError
from mlcls.postprocess import ThresholdPostprocessor, threshold_vector

SCORES = np.array([[0.1, 0.9, 0.5, 0.7, 0.50001],
                   [0.6, 0.2, 0.95, 0.3, 0.4]], dtype=np.float32)
LABELS = ["a", "b", "c", "d", "e"]


def test_keeps_scores_strictly_above_and_sorts_best_first():
    (first, second) = ThresholdPostprocessor(0.5, LABELS)(SCORES)
    assert first.class_ids == [1, 3, 4]  # 0.5 itself is not kept
    assert first.label_names == ["b", "d", "e"]
    assert first.scores == [0.9, 0.7, 0.50001]
    assert second.class_ids == [2, 0]


def test_scores_rounded_to_five_decimals():
    (row,) = ThresholdPostprocessor(0.0)(np.array([[0.123456789]], dtype=np.float32))
    assert row.scores == [0.12346]
    assert row.label_names == ["0"]  # no label_list: the id as name


def test_call_threshold_overrides_model_threshold():
    post = ThresholdPostprocessor(0.5, LABELS)
    assert post(SCORES, 0.8)[0].class_ids == [1]
    assert post(SCORES)[0].class_ids == [1, 3, 4]


def test_dict_threshold_default_and_per_class_ids_any_batch():
    post = ThresholdPostprocessor({"default": 0.65, 3: 0.75, "0": 0.55}, LABELS)
    first, second = post(SCORES)
    assert first.class_ids == [1]  # class 3 needs > 0.75
    assert second.class_ids == [2, 0]  # class 0 needs > 0.55


def test_list_threshold_per_class():
    post = ThresholdPostprocessor([0.0, 0.95, 0.4, 0.9, 0.9], LABELS)
    first, second = post(SCORES)
    assert first.class_ids == [2, 0]
    assert second.class_ids == [2, 0]


@pytest.mark.parametrize("bad, message", [
    (1.5, "outside"), (-0.1, "outside"), ("high", "number"), ({"x": 0.3}, "class id"),
    ({9: 0.3}, "out of range"), ([0.5, 0.5], "needs 5 values"), (True, "number"),
])
def test_bad_thresholds_are_named(bad, message):
    with pytest.raises(UsageError, match=message):
        threshold_vector(bad, 5)


def test_label_list_length_mismatch_is_an_error():
    with pytest.raises(UsageError, match="label_list has 2 names"):
        ThresholdPostprocessor(0.5, ["a", "b"])(SCORES)
