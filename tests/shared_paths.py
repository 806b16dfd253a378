"""Where the read-only project fixtures live: the `shared/` folder beside the checkout
(reference model and images, PaddleX's outputs, GPU probe captures, the seed document), or
$MLCLS_SHARED_DIR. Tests that need one skip with its path when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLCLS_SHARED_DIR") or REPO.parent / "shared")
REFERENCE = Path(os.environ.get("MLCLS_REFERENCE_DIR") or SHARED / "reference")
GPU_PROBE = REFERENCE / "gpu-probe"
SEED = SHARED / "seed" / "multi_label_image_classification.md"
