"""The trainable model names and how each is built (no Paddle import, so that
``mlcls train --help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

LOSSES = ("asl", "bce")


@dataclass(frozen=True)
class ModelInfo:
    """How to build one of the trainable model names."""

    name: str
    backbone: str
    scale: float
    head_dim: int  # ML-Decoder embedding width
    head_ffn: int  # ML-Decoder feed-forward width


MODELS: dict[str, ModelInfo] = {m.name: m for m in (
    ModelInfo("PP-LCNet_x0_25_ML", "pplcnet", 0.25, 128, 256),
    ModelInfo("PP-LCNet_x0_5_ML", "pplcnet", 0.5, 256, 512),
    ModelInfo("PP-LCNet_x1_0_ML", "pplcnet", 1.0, 768, 2048),
    ModelInfo("ResNet50_ML", "resnet50", 1.0, 768, 2048),
)}


def model_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise UsageError(f"unknown model '{name}' for training; trainable models: "
                         f"{', '.join(MODELS)}")
    return MODELS[name]
