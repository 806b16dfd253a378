"""Scores of a list of image files from an exported model, through the pipeline's own
device layer, preprocessing and predictor (so evaluation measures what inference does)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..inputs import decode_bytes


def score_files(pipeline, paths: list[Path], batch_size: int = 32) -> np.ndarray:
    """One row of raw scores (all classes, no threshold) per path, in order."""
    rows = []
    predictor = pipeline.predictors[0]
    for start in range(0, len(paths), batch_size):
        prepared = [pipeline.preprocessor.prepare(decode_bytes(p.read_bytes(), str(p)))
                    for p in paths[start:start + batch_size]]
        rows.append(predictor.run(pipeline.preprocessor.collate(prepared)))
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
