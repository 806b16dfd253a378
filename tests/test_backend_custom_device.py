"""The npu and mlu backends (device nodes after the mask) and the paddle engine on them (Paddle
CustomDevice plugins): plugin detection through real installed metadata, version pairing, the
engine's probe against faked framework answers, the environment set before Paddle loads, the
exact Config calls, and the guard that keeps an unregistered type from aborting the process."""

from __future__ import annotations

import os
import platform

import numpy as np
import paddle
import paddle.inference
import pytest
import yaml

from backend_fakes import (
    Calls,
    fake_nodes,
    fake_paddle,
    install_metadata,
    paddle_predictor,
    recording_config,
    use_framework,
)
from mlcls.backends import framework_probe, mlu, npu
from mlcls.backends.custom_device import CustomDeviceBackend
from mlcls.backends.paddle_engine import PaddleEngine
from mlcls.catalogue import load_catalogue
from mlcls.devices import Device, apply_environment, environment_for, resolve_device
from mlcls.errors import DeviceError
from mlcls.model import load_model_dir

BACKENDS = {"npu": npu, "mlu": mlu}


@pytest.fixture(autouse=True)
def _no_cached_facts():
    framework_probe.clear_cache()
    yield
    framework_probe.clear_cache()


def _no_framework(monkeypatch):
    def refuse():
        raise AssertionError("the framework was asked although no plugin is installed")
    monkeypatch.setattr(framework_probe, "framework_facts", refuse)


@pytest.mark.parametrize("kind", ["npu", "mlu"])
def test_missing_plugin_is_reported_without_asking_the_framework(kind, monkeypatch):
    _no_framework(monkeypatch)
    spec = BACKENDS[kind].SPEC
    report = PaddleEngine().probe(kind)
    assert not report.available
    assert report.reason == f"the {spec.distribution} plugin is not installed"
    assert spec.distribution in report.fix and spec.toolkit in report.fix


@pytest.mark.parametrize("kind", ["npu", "mlu"])
def test_loaded_plugin_counts_devices(kind, tmp_path, monkeypatch):
    spec = BACKENDS[kind].SPEC
    paired = ".".join(paddle.__version__.split(".")[:2]) + ".0"
    install_metadata(tmp_path, monkeypatch, spec.distribution, paired)
    fake = fake_paddle(custom_types=(kind, "other"),
                       custom_devices=(f"{kind}:0", "other:0", f"{kind}:1"))
    use_framework(monkeypatch, fake)
    report = PaddleEngine().probe(kind)
    assert report.available and report.count == 2
    assert report.versions[spec.distribution] == paired
    assert report.notes == []
    assert {"get_all_custom_device_type", "get_available_custom_device"} <= set(
        fake.calls.names())


def test_version_skew_is_the_reason_when_paddle_does_not_load_the_plugin(tmp_path, monkeypatch):
    install_metadata(tmp_path, monkeypatch, "paddle-custom-npu", "2.6.0")
    use_framework(monkeypatch, fake_paddle(custom_types=()))
    report = PaddleEngine().probe("npu")
    assert not report.available
    assert "installed but Paddle did not load it" in report.reason
    assert (f"paddle-custom-npu 2.6.0 is built for paddlepaddle 2.6.x but paddlepaddle "
            f"{paddle.__version__} is installed") in report.reason
    assert report.fix.startswith("install matching releases")


def test_version_skew_is_a_note_when_the_plugin_still_works(tmp_path, monkeypatch):
    install_metadata(tmp_path, monkeypatch, "paddle-custom-mlu", "2.6.0")
    use_framework(monkeypatch, fake_paddle(custom_types=("mlu",), custom_devices=("mlu:0",)))
    report = PaddleEngine().probe("mlu")
    assert report.available and report.count == 1
    assert len(report.notes) == 1 and "built for paddlepaddle 2.6.x" in report.notes[0]


def test_mask_hiding_every_npu(tmp_path, monkeypatch):
    install_metadata(tmp_path, monkeypatch, "paddle-custom-npu", paddle.__version__)
    use_framework(monkeypatch, fake_paddle(custom_types=("npu",), custom_devices=()))
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "")
    report = PaddleEngine().probe("npu")
    assert not report.available and "ASCEND_RT_VISIBLE_DEVICES=''" in report.reason


@pytest.mark.parametrize("kind", ["npu", "mlu"])
def test_environment_sets_devices_yaml_env_and_keeps_the_users(kind, monkeypatch):
    path = load_catalogue().source
    wanted = {str(k): str(v) for k, v in
              (yaml.safe_load(open(path))["types"][kind].get("env") or {}).items()}
    assert wanted, f"devices.yaml gives {kind} no env"
    for key in wanted:
        monkeypatch.delenv(key, raising=False)
    mine = next(iter(wanted))
    monkeypatch.setenv(mine, "set-by-user")
    apply_environment(environment_for(kind, "paddle", {}, {}))
    for key, value in wanted.items():
        assert os.environ[key] == ("set-by-user" if key == mine else value)


def test_unregistered_custom_type_is_an_error_not_an_abort(tiny_model):
    # The real CPU build has no npu plugin; asking Paddle Inference for one would abort.
    model = load_model_dir(tiny_model)
    with pytest.raises(DeviceError, match=r"npu:0.*no CustomDevice plugin registered 'npu'"):
        paddle_predictor(Device("npu", (0,)), 0, model, {})


@pytest.mark.parametrize("readback", [False, True])
def test_create_predictor_calls_and_placement(readback, tiny_model, monkeypatch):
    calls = Calls()
    monkeypatch.setattr(paddle.inference, "Config",
                        recording_config(calls, custom_readback=readback))
    monkeypatch.setattr(paddle.device, "get_all_custom_device_type", lambda: ["mlu"])
    model = load_model_dir(tiny_model)
    pred = paddle_predictor(Device("mlu", (1,)), 1, model, {"precision": "fp16"})
    assert calls == [("enable_custom_device", ("mlu", 1, paddle.inference.PrecisionType.Half))]
    placement = pred.placement()
    assert placement.device == "mlu:1"
    assert ("no read-back" in placement.detail) != readback
    batch = np.random.default_rng(3).random((2, 3, 32, 32), dtype=np.float32)
    ref = paddle_predictor(Device("cpu"), None, model, {"threads": 1, "mkldnn": False})
    np.testing.assert_allclose(pred.run(batch), ref.run(batch), atol=1e-5)


@pytest.mark.parametrize("kind", ["npu", "mlu"])
def test_hardware_probe_counts_nodes_after_the_mask(kind, monkeypatch):
    spec = BACKENDS[kind].SPEC
    backend = CustomDeviceBackend(spec, "test")
    monkeypatch.delenv(spec.visible_env, raising=False)
    report = backend.probe()
    assert not report.available and f"no {spec.vendor} {kind.upper()} device found" in \
        report.reason
    fake_nodes(monkeypatch, spec.nodes.split("/")[-1][:5], 4)
    assert backend.probe().count == 4
    monkeypatch.setenv(spec.visible_env, "3")
    assert backend.probe().count == 1
    monkeypatch.setenv(spec.visible_env, "")
    report = backend.probe()
    assert not report.available and f"{spec.visible_env}=''" in report.reason


def test_resolution_strict_and_fallback_use_the_probe_reason(monkeypatch):
    monkeypatch.delenv("MLCLS_FALLBACK", raising=False)
    fake_nodes(monkeypatch, "davinci", 1)
    fake_nodes(monkeypatch, "cambricon", 1)
    with pytest.raises(DeviceError, match="paddle-custom-npu plugin is not installed"):
        resolve_device("ascend:0")
    res = resolve_device("cambricon", fallback=True)
    assert res.device == Device("cpu")
    assert "paddle-custom-mlu plugin is not installed" in res.fallback_reason


def test_cann_version_is_read_from_the_toolkit_install_file(tmp_path, monkeypatch):
    home = tmp_path / "ascend-toolkit" / "latest"
    info = home / f"{platform.machine()}-linux" / "ascend_toolkit_install.info"
    info.parent.mkdir(parents=True)
    info.write_text("package_name=Ascend-cann-toolkit\nversion=8.0.RC3\ninnerversion=V1\n")
    monkeypatch.setenv("ASCEND_TOOLKIT_HOME", str(home))
    _no_framework(monkeypatch)  # the hardware probe never asks Paddle
    backend = CustomDeviceBackend(npu.SPEC, "test")
    assert backend.probe().versions["cann"] == "8.0.RC3"
    monkeypatch.delenv("ASCEND_TOOLKIT_HOME")
    assert "cann" not in backend.probe().versions
