"""Fine-tuning: datasets in PaddleX's multi-label format, models (PaddleClas' backbones with
the ML-Decoder head, laid out as PaddleClas lays them out), pretrained weights from
checkpoints and inference models, the streaming loader, the training loop, metrics,
calibration and export to an inference-model directory.

Paddle (dygraph) is imported only by the modules that need it, so that ``mlcls dataset`` and
the metrics stay light.
"""
