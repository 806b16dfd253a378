"""The three parts of a pipeline run: predictor, preprocessor, postprocessor.

They are defined in ``mlcls.plugin`` (the one module a plugin imports); this module keeps the
older import path working.
"""

from __future__ import annotations

from .plugin import Placement, Postprocessor, Prediction, Predictor, Preprocessor

__all__ = ["Placement", "Postprocessor", "Prediction", "Predictor", "Preprocessor"]
