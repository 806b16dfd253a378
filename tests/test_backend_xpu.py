"""The xpu backend (device nodes after the mask) and the paddle engine on xpu: its probe against a
faked XPU build and against the real CPU build, the exact Config calls, and the real CPU build's
refusal of enable_xpu."""

from __future__ import annotations

import numpy as np
import paddle.inference
import pytest

from backend_fakes import (
    Calls,
    fake_nodes,
    fake_paddle,
    paddle_predictor,
    recording_config,
    use_framework,
)
from mlcls.backends import framework_probe, xpu
from mlcls.backends.paddle_engine import probe_xpu
from mlcls.devices import Device, resolve_device
from mlcls.errors import DeviceError
from mlcls.model import load_model_dir


@pytest.fixture(autouse=True)
def _no_cached_facts():
    framework_probe.clear_cache()
    yield
    framework_probe.clear_cache()


def test_probe_on_an_xpu_build(monkeypatch):
    fake = fake_paddle(xpu=True, xpu_count=2)
    use_framework(monkeypatch, fake)
    report = probe_xpu()
    assert report.available and report.count == 2
    assert report.versions == {"paddlepaddle": "3.3.1", "xpu_runtime": "5.0.21"}
    assert ("xpu.device_count", ()) in fake.calls


def test_probe_names_the_mask(monkeypatch):
    use_framework(monkeypatch, fake_paddle(xpu=True, xpu_count=0))
    monkeypatch.setenv("XPU_VISIBLE_DEVICES", "")
    report = probe_xpu()
    assert not report.available and "XPU_VISIBLE_DEVICES=''" in report.reason


def test_probe_on_the_real_cpu_build_says_what_to_install():
    report = probe_xpu()
    assert not report.available
    assert report.reason == f"paddlepaddle {paddle.__version__} is not an XPU build"
    assert "paddlepaddle-xpu" in report.fix


def test_create_predictor_calls_and_read_back(tiny_model, monkeypatch):
    calls = Calls()
    monkeypatch.setattr(paddle.inference, "Config", recording_config(calls))
    model = load_model_dir(tiny_model)
    pred = paddle_predictor(Device("xpu", (1,)), 1, model, {})
    assert calls == [("enable_xpu", ()), ("set_xpu_device_id", (1,))]
    assert pred.placement().device == "xpu:1"
    batch = np.random.default_rng(2).random((3, 3, 32, 32), dtype=np.float32)
    ref = paddle_predictor(Device("cpu"), None, model, {"threads": 1, "mkldnn": False})
    np.testing.assert_allclose(pred.run(batch), ref.run(batch), atol=1e-5)


def test_real_cpu_build_refuses_enable_xpu_with_a_clear_error(tiny_model):
    model = load_model_dir(tiny_model)
    with pytest.raises(DeviceError, match=r"xpu:0.*cannot run on an XPU.*paddlepaddle-xpu"):
        paddle_predictor(Device("xpu", (0,)), 0, model, {})


def test_hardware_probe_counts_nodes_after_the_mask(monkeypatch):
    report = xpu.XpuBackend().probe()
    assert not report.available and "no Kunlunxin XPU device found" in report.reason
    fake_nodes(monkeypatch, "xpu", 3)
    monkeypatch.setenv("XPU_VISIBLE_DEVICES", "2,1")
    report = xpu.XpuBackend().probe()
    assert report.available and report.count == 2
    monkeypatch.setenv("XPU_VISIBLE_DEVICES", "")
    assert "XPU_VISIBLE_DEVICES=''" in xpu.XpuBackend().probe().reason


def test_strict_and_fallback(monkeypatch):
    monkeypatch.delenv("MLCLS_FALLBACK", raising=False)
    monkeypatch.delenv("XPU_VISIBLE_DEVICES", raising=False)
    fake_nodes(monkeypatch, "xpu", 1)  # the card is there; this Paddle build cannot use it
    with pytest.raises(DeviceError, match="no engine can run on 'xpu' here: paddle: .*not an "
                                          "XPU build"):
        resolve_device("kunlun:0")
    res = resolve_device("xpu:0", fallback=True)
    assert res.device == Device("cpu") and "not an XPU build" in res.fallback_reason
