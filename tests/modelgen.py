"""Random-weight model directories for the tests, exported with ``paddle.jit.save`` in
PaddleX's inference layout. Tests never download a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def export_tiny_model(target: Path, num_classes: int = 5, size: int = 32, seed: int = 0,
                      labels: list[str] | None = None, threshold: Any = 0.5,
                      transform_ops: list[dict] | None = None,
                      model_name: str = "TinyNet_ML") -> Path:
    """Export a small conv net with a sigmoid head to ``target`` and write inference.yml."""
    import paddle

    paddle.seed(seed)

    class TinyNet(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 8, 3, stride=2, padding=1)
            self.pool = paddle.nn.AdaptiveAvgPool2D(1)
            self.fc = paddle.nn.Linear(8, num_classes)

        def forward(self, x):
            x = paddle.nn.functional.relu(self.conv(x))
            x = self.pool(x).flatten(1)
            return paddle.nn.functional.sigmoid(self.fc(x) * 4.0)

    net = TinyNet()
    net.eval()
    target.mkdir(parents=True, exist_ok=True)
    spec = [paddle.static.InputSpec([None, 3, size, size], "float32", "x")]
    paddle.jit.save(net, str(target / "inference"), input_spec=spec)
    ops = transform_ops if transform_ops is not None else [
        {"ResizeImage": {"size": size, "interpolation": "bilinear", "backend": "pil"}},
        {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                            "scale": 1 / 255, "order": "", "channel_num": 3}},
        {"ToCHWImage": None},
    ]
    config = {
        "Global": {"model_name": model_name},
        "PreProcess": {"transform_ops": ops},
        "PostProcess": {"MultiLabelThreshOutput": {
            "threshold": threshold,
            "label_list": labels if labels is not None else
            [f"class_{i}" for i in range(num_classes)],
        }},
    }
    (target / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target
