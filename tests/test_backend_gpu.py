"""The gpu backend and the paddle engine on gpu, on a machine without a GPU: nvidia-smi parsing
against real captures, the hardware probe, the engine's probe against a faked CUDA build, the
exact Config calls, and the real CPU build's silent CPU run turned into an error or a recorded
fallback."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import paddle
import paddle.inference
import pytest
import yaml

from backend_fakes import (
    GPU_PROBE,
    Calls,
    fake_gpus,
    fake_paddle,
    install_fake_smi,
    install_metadata,
    paddle_predictor,
    recording_config,
    use_framework,
)
from mlcls import create_pipeline
from mlcls.backends import framework_probe, gpu, nvidia
from mlcls.backends.paddle_engine import probe_gpu
from mlcls.catalogue import load_catalogue
from mlcls.devices import Device, resolve_device
from mlcls.errors import DeviceError, UsageError
from mlcls.model import load_model_dir

needs_capture = pytest.mark.skipif(not GPU_PROBE.is_dir(), reason="no gpu-probe captures")


@pytest.fixture(autouse=True)
def _no_cached_facts():
    framework_probe.clear_cache()
    yield
    framework_probe.clear_cache()


@needs_capture
def test_nvidia_smi_query_parses_to_what_nvml_reports():
    nvml = json.loads((GPU_PROBE / "nvml.json").read_text())
    gpus = nvidia.parse_query_csv((GPU_PROBE / "nvidia-smi-query.csv").read_text())
    assert len(gpus) == nvml["count"]
    for got, want in zip(gpus, nvml["devices"]):
        assert (got.index, got.name, got.uuid) == (want["index"], want["name"], want["uuid"])
        assert got.memory_mib * 2**20 == want["memory_total"]
        assert got.driver == nvml["driver"]
    cuda = nvidia.parse_cuda_version((GPU_PROBE / "nvidia-smi.txt").read_text())
    major, minor = divmod(nvml["cuda_driver"], 1000)
    assert cuda == f"{major}.{minor // 10}"


def test_nvidia_smi_without_header_or_units():
    gpus = nvidia.parse_query_csv("1, Tesla T4, GPU-abc, 15360, 535.1\n")
    assert [(g.index, g.name, g.memory_mib, g.driver) for g in gpus] == [
        (1, "Tesla T4", 15360, "535.1")]


def test_visible_mask_is_applied_as_cuda_applies_it():
    gpus = [nvidia.Gpu(i, f"G{i}", f"GPU-{i}aa{i}", 100, "1") for i in range(3)]
    assert nvidia.apply_visible_mask(gpus, None) == gpus
    assert nvidia.apply_visible_mask(gpus, "") == []
    assert [g.index for g in nvidia.apply_visible_mask(gpus, "2,0")] == [2, 0]
    assert [g.index for g in nvidia.apply_visible_mask(gpus, "GPU-1")] == [1]
    # CUDA stops at the first entry it cannot use
    assert [g.index for g in nvidia.apply_visible_mask(gpus, "1,7,0")] == [1]


def test_probe_on_a_cuda_build_counts_gpus_and_reports_versions(monkeypatch):
    fake = fake_paddle(cuda=True, cuda_count=2)
    use_framework(monkeypatch, fake)
    report = probe_gpu()
    assert report.available and report.count == 2
    assert report.versions["paddlepaddle"] == "3.3.1"
    assert report.versions["cuda"] == "12.6" and report.versions["cudnn"] == "9.5.1"
    assert "tensorrt" not in report.versions  # the build answers 'None'
    assert ("cuda.device_count", ()) in fake.calls
    assert ("is_compiled_with_cuda", ()) in fake.calls


def test_probe_names_the_mask_that_hides_every_gpu(monkeypatch):
    use_framework(monkeypatch, fake_paddle(cuda=True, cuda_count=0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    report = probe_gpu()
    assert not report.available
    assert "CUDA_VISIBLE_DEVICES=''" in report.reason
    assert "CUDA_VISIBLE_DEVICES" in report.fix


@needs_capture
def test_probe_on_the_real_cpu_build_names_the_gpu_and_what_to_install(tmp_path, monkeypatch):
    install_fake_smi(tmp_path, monkeypatch)  # the hardware; Paddle is the real CPU build
    report = probe_gpu()
    nvml = json.loads((GPU_PROBE / "nvml.json").read_text())
    assert not report.available
    assert "CPU build" in report.reason
    assert nvml["devices"][0]["name"] in report.reason
    assert report.details[0]["name"] == nvml["devices"][0]["name"]
    assert report.versions["driver"] == nvml["driver"]
    assert f"paddlepaddle-gpu=={paddle.__version__}" in report.fix
    assert "13.0" in report.fix  # the newest CUDA the driver supports


@needs_capture
def test_masked_gpus_are_still_named_when_the_build_is_the_problem(tmp_path, monkeypatch):
    install_fake_smi(tmp_path, monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    report = probe_gpu()
    assert "CPU build" in report.reason and "H100" in report.reason
    assert "H100" in report.details[0]["name"]  # the hardware found, masked or not
    use_framework(monkeypatch, fake_paddle(cuda=True, cuda_count=0))
    assert "CUDA_VISIBLE_DEVICES=''" in probe_gpu().reason
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the mask is not the cause here
    report = probe_gpu()
    assert "CUDA finds no GPU although nvidia-smi lists 1" in report.reason
    assert "supports CUDA up to" not in report.reason  # a 12.6 build suits a 13.0 driver
    use_framework(monkeypatch, fake_paddle(cuda=True, cuda_count=0, cuda_version="13.1"))
    report = probe_gpu()
    assert ("paddlepaddle-gpu is built for CUDA 13.1 but driver 580.159.04 supports CUDA up "
            "to 13.0") in report.reason
    assert report.fix.startswith("upgrade the NVIDIA driver")


def test_probe_without_gpu_or_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi anywhere
    monkeypatch.setattr(gpu, "PROC_GPUS", str(tmp_path / "none" / "*"))
    report = gpu.probe()  # the hardware
    assert not report.available
    assert "no NVIDIA GPU found" in report.reason and "nvidia-smi is not on PATH" in \
        report.reason
    report = probe_gpu()  # the engine
    assert not report.available
    assert "no NVIDIA GPU was found" in report.reason and "nvidia-smi is not on PATH" in \
        report.reason


def test_hardware_probe_counts_after_the_mask(monkeypatch):
    fake_gpus(monkeypatch, 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    report = gpu.probe()
    assert report.available and report.count == 3 and report.versions["driver"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    report = gpu.probe()
    assert report.count == 2 and [d["index"] for d in report.details] == [2, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    report = gpu.probe()
    assert not report.available and "CUDA_VISIBLE_DEVICES=''" in report.reason


def _copy_model(src, dst, hpi_shapes=None):
    shutil.copytree(src, dst)
    if hpi_shapes is not None:
        cfg = yaml.safe_load((dst / "inference.yml").read_text())
        cfg["Hpi"] = {"backend_configs": {"paddle_infer": {"trt_dynamic_shapes": hpi_shapes}}}
        (dst / "inference.yml").write_text(yaml.safe_dump(cfg))
    return load_model_dir(dst)


def _cpu_scores(model, batch):
    pred = paddle_predictor(Device("cpu"), None, model, {"threads": 1, "mkldnn": False})
    return pred.run(batch)


def test_create_predictor_makes_the_cuda_calls_and_reads_back_the_id(tiny_model, monkeypatch):
    calls = Calls()
    monkeypatch.setattr(paddle.inference, "Config", recording_config(calls))
    model = load_model_dir(tiny_model)
    pred = paddle_predictor(Device("gpu", (1,)), 1, model, {"memory_pool_mb": 300})
    assert calls == [("enable_use_gpu", (300, 1, paddle.inference.PrecisionType.Float32))]
    placement = pred.placement()
    assert placement.device == "gpu:1" and "300 MB" in placement.detail
    batch = np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(pred.run(batch), _cpu_scores(model, batch), atol=1e-5)


def test_tensorrt_fp16_with_dynamic_shapes_from_inference_yml(tiny_model, tmp_path,
                                                              monkeypatch):
    shapes = {"x": [[1, 3, 32, 32], [2, 3, 32, 32], [8, 3, 32, 32]]}
    model = _copy_model(tiny_model, tmp_path / "m", hpi_shapes=shapes)
    calls = Calls()
    monkeypatch.setattr(paddle.inference, "Config", recording_config(calls))
    pred = paddle_predictor(Device("gpu", (0,)), 0, model, {
        "tensorrt": True, "precision": "fp16", "trt_max_batch_size": 8,
        "trt_workspace_mb": 256})
    half = paddle.inference.PrecisionType.Half
    assert calls.names() == ["enable_use_gpu", "enable_tensorrt_engine", "set_optim_cache_dir",
                             "set_trt_dynamic_shape_info"]
    assert calls[0][1][2] == half
    assert calls[1][1] == {"workspace_size": 256 << 20, "max_batch_size": 8,
                           "min_subgraph_size": 3, "precision_mode": half,
                           "use_static": True, "use_calib_mode": False}
    cache = calls[2][1][0]
    assert cache.startswith(str(tmp_path / "m")) and (tmp_path / "m" / cache).is_dir()
    assert calls[3][1] == ({"x": [1, 3, 32, 32]}, {"x": [8, 3, 32, 32]}, {"x": [2, 3, 32, 32]})
    assert "TensorRT" in pred.placement().detail


def test_bad_gpu_options_are_usage_errors(tiny_model, monkeypatch):
    monkeypatch.setattr(paddle.inference, "Config", recording_config(Calls()))
    model = load_model_dir(tiny_model)
    with pytest.raises(UsageError, match="fp16 needs tensorrt"):
        paddle_predictor(Device("gpu"), 0, model, {"precision": "fp16"})
    with pytest.raises(UsageError, match="precision='int3'"):
        paddle_predictor(Device("gpu"), 0, model, {"precision": "int3"})


def test_silent_cpu_run_of_a_cpu_build_is_an_error_or_a_recorded_fallback(
        tiny_model, image_dir, monkeypatch, caplog):
    # Only the probe is faked (it claims a CUDA build); Paddle and its Config are real, so
    # enable_use_gpu really is ignored by this CPU build.
    use_framework(monkeypatch, fake_paddle(cuda=True, cuda_count=1))
    fake_gpus(monkeypatch, 1)
    monkeypatch.delenv("MLCLS_FALLBACK", raising=False)
    assert resolve_device("gpu:0").device == Device("gpu", (0,))
    with pytest.raises(DeviceError, match=r"engine 'paddle' runs on cpu although gpu:0 was "
                                          r"asked.*CPU build.*--fallback"):
        create_pipeline("multi_label_image_classification", device="gpu:0",
                        model_dir=tiny_model)
    with caplog.at_level(logging.WARNING):
        pipe = create_pipeline("multi_label_image_classification", device="gpu:0",
                               model_dir=tiny_model, fallback=True)
    with pipe:
        results = list(pipe.predict(str(image_dir)))
    assert pipe.device == "cpu"
    assert results and all(r["device"] == "cpu" for r in results)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("gpu:0 -> cpu" in w and "CPU build" in w for w in warnings)


def test_unavailable_gpu_is_strict_by_default_and_falls_back_when_asked(monkeypatch, caplog):
    use_framework(monkeypatch, fake_paddle(cuda=False))
    fake_gpus(monkeypatch, 1)  # the hardware is there; the engine cannot use it
    monkeypatch.delenv("MLCLS_FALLBACK", raising=False)
    with pytest.raises(DeviceError, match="not a|CPU build") as info:
        resolve_device("cuda:0")
    assert "--fallback" in str(info.value)
    monkeypatch.setenv("MLCLS_FALLBACK", "1")
    with caplog.at_level(logging.WARNING):
        res = resolve_device("cuda:0")
    assert res.device == Device("cpu") and "CPU build" in res.fallback_reason
    assert any("gpu:0 -> cpu" in r.getMessage() for r in caplog.records)


def test_auto_prefers_an_available_gpu(tiny_model, image_dir, monkeypatch):
    use_framework(monkeypatch, fake_paddle(cuda=True, cuda_count=2))
    fake_gpus(monkeypatch, 2)
    res = resolve_device("auto")
    assert res.device == Device("gpu") and res.fallback_reason is None
    calls = Calls()
    monkeypatch.setattr(paddle.inference, "Config", recording_config(calls))
    with create_pipeline("multi_label_image_classification", model_dir=tiny_model) as pipe:
        results = list(pipe.predict(str(image_dir)))
    assert calls.names() == ["enable_use_gpu"] and calls[0][1][1] == 0
    assert pipe.device == "gpu:0" and {r["device"] for r in results} == {"gpu:0"}


def test_two_framework_builds_installed_together_are_named(tmp_path, monkeypatch):
    install_metadata(tmp_path, monkeypatch, "paddlepaddle-gpu", "3.3.1")
    report = probe_gpu()  # the real CPU build is what imports as `paddle`
    assert not report.available
    assert "paddlepaddle-gpu 3.3.1" in report.reason
    assert f"paddlepaddle {paddle.__version__}" in report.reason
    assert "installed together" in report.reason
    use_framework(monkeypatch, fake_paddle(cuda=True, cuda_count=1))
    report = probe_gpu()
    assert report.available and any("installed together" in n for n in report.notes)


def test_devices_yaml_can_refuse_a_precision_for_a_model(tiny_model, tmp_path, monkeypatch):
    data = yaml.safe_load(open(load_catalogue().source))
    data["models"] = {"gpu": {"precisions": {"TinyNet_*": ["fp32"]}}}
    catalogue = tmp_path / "devices.yaml"
    catalogue.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MLCLS_DEVICES_YAML", str(catalogue))
    monkeypatch.delenv("MLCLS_IGNORE_CAPABILITY", raising=False)
    monkeypatch.setenv("MLCLS_FALLBACK", "1")  # the CPU build's silent CPU run is accepted
    use_framework(monkeypatch, fake_paddle(cuda=True, cuda_count=1))
    fake_gpus(monkeypatch, 1)
    calls = Calls()
    monkeypatch.setattr(paddle.inference, "Config", recording_config(calls))
    fp16 = {"tensorrt": True, "precision": "fp16", "trt_cache_dir": str(tmp_path / "trt")}

    def build(options):
        create_pipeline("multi_label_image_classification", device="gpu:0",
                        model_dir=tiny_model, device_options=options).close()

    with pytest.raises(DeviceError, match=r"model 'TinyNet_ML' may not run in fp16 on 'gpu'.*"
                                          r"TinyNet_\*: \[fp32\]"):
        build(fp16)
    assert calls == []
    build({})
    monkeypatch.setenv("MLCLS_IGNORE_CAPABILITY", "1")
    build(fp16)
    assert calls.names().count("enable_use_gpu") == 2
