"""The core's own hook implementations: numpy pre/postprocessing for every device.

Registered ``trylast`` so that a backend's implementation, when it returns one, wins.
"""

from __future__ import annotations

from .errors import ModelError
from .hookspecs import hookimpl
from .postprocess import ThresholdPostprocessor
from .preprocess import NumpyPreprocessor


@hookimpl(trylast=True)
def create_preprocessor(device, model):
    try:
        return NumpyPreprocessor(model.transform_ops)
    except ModelError as exc:
        raise ModelError(f"{model.model_dir / 'inference.yml'}: {exc}") from exc


@hookimpl(trylast=True)
def create_postprocessor(device, model):
    return ThresholdPostprocessor(model.threshold, model.label_list)
