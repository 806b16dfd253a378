from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelgen import export_tiny_model
from shared_paths import REFERENCE


@pytest.fixture(scope="session", autouse=True)
def private_mlcls_home(tmp_path_factory):
    """What the tests make in mlcls's cache (ONNX conversions, tuning records) goes to a
    folder of the session, never the user's ~/.cache/mlcls; subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLCLS_HOME", str(tmp_path_factory.mktemp("mlcls-home")))
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 5-class random-weight model with a 32x32 input (session-wide, read-only)."""
    return export_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """A few real image files of different formats and sizes."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (name, size) in enumerate([("a.jpg", (64, 48)), ("b.png", (40, 40)),
                                      ("c.bmp", (30, 50)), ("d.webp", (100, 20))]):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        arr[:, : size[0] // 2] = (i * 60) % 256
        Image.fromarray(arr).save(root / name)
    return root


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "model").is_dir():
        pytest.skip(f"parity fixture not found at {REFERENCE} (set MLCLS_REFERENCE_DIR)")
    return REFERENCE
