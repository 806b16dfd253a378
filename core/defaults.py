"""The core's own preprocessing and postprocessing (numpy), used on every device unless the
engine returns its own from ``Engine.create_preprocessor`` / ``create_postprocessor``."""

from __future__ import annotations

from .errors import ModelError
from .postprocess import ThresholdPostprocessor
from .preprocess import NumpyPreprocessor


def default_preprocessor(model):
    try:
        return NumpyPreprocessor(model.transform_ops)
    except ModelError as exc:
        raise ModelError(f"{model.model_dir / 'inference.yml'}: {exc}") from exc


def default_postprocessor(model):
    return ThresholdPostprocessor(model.threshold, model.label_list)
