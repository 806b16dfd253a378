"""The paddle engine on the CPU: when oneDNN refuses a program at predictor creation (a known
Paddle 3.3 failure for some programs), the engine runs it on native kernels and says so."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mlcls import create_pipeline
from mlcls.errors import ModelError


@pytest.fixture
def onednn_refuses(monkeypatch):
    """Paddle's creation fails whenever oneDNN is on (the one stand-in: the programs that
    trigger it are not ours to ship); everything else is the real Paddle Inference."""
    from mlcls.paddle_engine import import_paddle_inference

    paddle_infer = import_paddle_inference()
    real = paddle_infer.create_predictor

    def create(config):
        if config.mkldnn_enabled():
            raise RuntimeError("(PreconditionNotMet) oneDNN pass failed on op 'fused_conv2d'")
        return real(config)

    monkeypatch.setattr(paddle_infer, "create_predictor", create)


def test_onednn_failure_falls_back_to_native_kernels(tiny_model, image_dir, onednn_refuses,
                                                     caplog):
    with caplog.at_level(logging.WARNING):
        with create_pipeline("multi_label_image_classification", device="cpu",
                             engine="paddle", model_dir=tiny_model) as pipe:
            placement = pipe.placements[0]
            results = list(pipe.predict(str(image_dir), threshold=0.0))
    assert placement.device == "cpu" and placement.engine == "paddle"
    assert placement.detail.startswith("native kernels")
    assert "WARNING: oneDNN failed at predictor creation" in placement.detail
    assert "fused_conv2d" in placement.detail
    assert any("oneDNN failed" in r.getMessage() for r in caplog.records)
    assert results and all(r.ok for r in results)
    # the same scores as native kernels asked for directly
    with create_pipeline("multi_label_image_classification", device="cpu", engine="paddle",
                         model_dir=tiny_model, device_options={"mkldnn": False}) as plain:
        expected = list(plain.predict(str(image_dir), threshold=0.0))
    for a, b in zip(results, expected):
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-6)


def test_a_broken_model_still_fails_as_itself(tiny_model, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "inference.pdiparams").write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match=f"{broken}: Paddle Inference could not load"):
        create_pipeline("multi_label_image_classification", device="cpu", engine="paddle",
                        model_dir=broken)
