"""The trainable model names and how each is built (no Paddle import, so that
``mlcls train --help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

LOSSES = ("asl", "bce")
# the multi-label head: PaddleX's ML-Decoder, or the backbone's own pool + fc
HEADS = ("mldecoder", "linear")


@dataclass(frozen=True)
class ModelInfo:
    """How to build one of the trainable model names: PaddleClas' backbone ``arch`` with its
    classifier replaced by an ML-Decoder head reading ``head_in`` channels, as PaddleX's
    ``*_ML`` configurations do (``use_ml_decoder: True``)."""

    name: str
    family: str  # pplcnet | pphgnetv2 | resnet
    arch: str  # PaddleClas' backbone name, e.g. PPLCNet_x1_0
    variant: str  # scale for PP-LCNet, B0/B4/B6 for PP-HGNetV2, depth for ResNet
    head_in: int  # channels the ML-Decoder reads
    query_num: int = 80  # PaddleX's MLDecoder.query_num; capped at the class count


MODELS: dict[str, ModelInfo] = {m.name: m for m in (
    ModelInfo("PP-LCNet_x0_25_ML", "pplcnet", "PPLCNet_x0_25", "0.25", 1280),
    ModelInfo("PP-LCNet_x0_5_ML", "pplcnet", "PPLCNet_x0_5", "0.5", 1280),
    ModelInfo("PP-LCNet_x1_0_ML", "pplcnet", "PPLCNet_x1_0", "1.0", 1280),
    ModelInfo("PP-HGNetV2-B0_ML", "pphgnetv2", "PPHGNetV2_B0", "B0", 2048),
    ModelInfo("PP-HGNetV2-B4_ML", "pphgnetv2", "PPHGNetV2_B4", "B4", 2048),
    ModelInfo("PP-HGNetV2-B6_ML", "pphgnetv2", "PPHGNetV2_B6", "B6", 2048),
    ModelInfo("ResNet50_ML", "resnet", "ResNet50", "50", 2048),
)}


def model_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise UsageError(f"unknown model '{name}' for training; trainable models: "
                         f"{', '.join(MODELS)}")
    return MODELS[name]
