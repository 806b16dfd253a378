"""Random-weight model directories for the tests (tests never download a model). The
exporter is the conformance kit's; this fixes the defaults the project's tests rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlcls.testing import export_tiny_model as _export


def export_tiny_model(target: Path, num_classes: int = 5, size: int = 32, seed: int = 0,
                      labels: list[str] | None = None, threshold: Any = 0.5,
                      transform_ops: list[dict] | None = None,
                      model_name: str = "TinyNet_ML") -> Path:
    return _export(target, num_classes, size, seed, threshold=threshold,
                   transform_ops=transform_ops, model_name=model_name,
                   labels=labels if labels is not None else
                   [f"class_{i}" for i in range(num_classes)])
