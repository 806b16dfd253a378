"""What the ONNX engines' tests share: a private model cache for the session, and the parity
check against PaddleX's scores on the reference fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlcls.defaults import default_postprocessor, default_preprocessor
from mlcls.inputs import read_file
from mlcls.model import ModelSpec


def private_home(tmp_path_factory) -> Path:
    """One MLCLS_HOME for every engine test module of the session: the reference model is
    converted once, not once per module, and never into the user's own cache."""
    return tmp_path_factory.getbasetemp() / "engine-tests-home"


_PREPARED: dict[str, list[np.ndarray]] = {}


def reference_batches(reference_dir: Path, model: ModelSpec, batch_size: int):
    """(names, float32 NCHW batch) over the 50 reference images, in raw_scores order. The
    decoded and resized images are kept for the session (decoding is most of the time)."""
    order = (reference_dir / "expected" / "raw_scores_order.txt").read_text().split()
    pre = default_preprocessor(model)
    prepared = _PREPARED.get(str(reference_dir))
    if prepared is None:
        prepared = [pre.prepare(read_file(str(reference_dir / "images" / n))) for n in order]
        _PREPARED[str(reference_dir)] = prepared
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size], pre.collate(prepared[start:start + batch_size])


def assert_paddlex_parity(predictor, reference_dir: Path, model: ModelSpec,
                          batch_size: int) -> float:
    """Every score within 1e-4 of PaddleX's and the same labels at the model's threshold;
    returns the largest difference seen."""
    order = (reference_dir / "expected" / "raw_scores_order.txt").read_text().split()
    raw = np.load(reference_dir / "expected" / "raw_scores.npy")
    post = default_postprocessor(model)
    got = np.concatenate([predictor.run(batch) for _, batch in
                          reference_batches(reference_dir, model, batch_size)])
    assert got.shape == raw.shape
    worst = float(np.abs(got - raw).max())
    assert worst < 1e-4, f"batch {batch_size}: scores differ from PaddleX's by {worst:.2e}"
    for name, pred in zip(order, post(got)):
        stem = name.rsplit(".", 1)[0]
        expected = json.loads((reference_dir / "expected" / f"{stem}_res.json").read_text())
        assert pred.class_ids == expected["class_ids"], name
        assert pred.label_names == expected["label_names"], name
    return worst
