"""mlcls against PaddleX 3.7.2's own outputs on the reference model and 50 images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcls import create_pipeline


@pytest.fixture(scope="module")
def reference_scores(reference_dir):
    order = (reference_dir / "expected" / "raw_scores_order.txt").read_text().split()
    return order, np.load(reference_dir / "expected" / "raw_scores.npy")


@pytest.mark.parametrize("batch_size", [1, 8])
def test_scores_and_labels_match_paddlex(reference_dir, reference_scores, batch_size):
    order, raw = reference_scores
    model_dir = reference_dir / "model" / "PP-LCNet_x1_0_ML"
    pipeline = create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=model_dir, batch_size=batch_size)
    paths = [str(reference_dir / "images" / name) for name in order]
    # every raw score: threshold 0 keeps all 80 classes
    got = np.zeros_like(raw)
    for i, res in enumerate(pipeline.predict(paths, threshold=0.0)):
        assert res.ok, res
        got[i, res["class_ids"]] = res["scores"]
    assert np.abs(got - raw).max() < 1e-4
    # the labels at the model's threshold equal PaddleX's saved JSON
    for name, res in zip(order, pipeline.predict(paths)):
        stem = name.rsplit(".", 1)[0]
        expected = json.loads((reference_dir / "expected" / f"{stem}_res.json").read_text())
        assert res["class_ids"] == expected["class_ids"], name
        assert res["label_names"] == expected["label_names"], name
        assert np.allclose(res["scores"], expected["scores"], atol=2e-5), name
        assert res["device"] == "cpu"
    pipeline.close()
