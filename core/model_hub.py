"""Official model names and the local model cache.

A name such as ``PP-LCNet_x1_0_ML`` resolves to ``$MLCLS_HOME/models/<name>`` (default
``~/.cache/mlcls``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelError

OFFICIAL_MODELS = (
    "PP-LCNet_x1_0_ML",
    "PP-HGNetV2-B0_ML",
    "PP-HGNetV2-B4_ML",
    "PP-HGNetV2-B6_ML",
    "ResNet50_ML",
    "CLIP_vit_base_patch16_448_ML",
)
ENV_HOME = "MLCLS_HOME"


def cache_root() -> Path:
    home = os.environ.get(ENV_HOME)
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "mlcls"
    return base / "models"


def ensure_model(name: str) -> Path:
    """The directory of an official model, from the cache."""
    if name not in OFFICIAL_MODELS:
        raise ModelError(f"unknown model '{name}': not a model directory and not an official "
                         f"name ({', '.join(OFFICIAL_MODELS)}); pass --model_dir DIR")
    target = cache_root() / name
    if target.is_dir():
        return target
    raise ModelError(f"model '{name}' is not in the cache ({target}); pass --model_dir DIR "
                     "with a PaddleX inference-model directory")
