"""Fine-tuning: datasets in PaddleX's multi-label format, models (backbone + ML-Decoder head),
the training loop, metrics, calibration and export to an inference-model directory.

Paddle (dygraph) is imported only by the modules that need it, so that ``mlcls dataset`` and
the metrics stay light.
"""
