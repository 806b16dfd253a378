"""The onnxruntime engine on the CPU: PaddleX's scores, placement read-back, options."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from engine_checks import assert_paddlex_parity, private_home

from mlcls.backends import onnxruntime_engine as ortmod
from mlcls.backends.onnxruntime_engine import OnnxRuntimeEngine, OnnxRuntimePredictor
from mlcls.errors import DeviceError, ModelError, UsageError
from mlcls.model import load_model_dir
from mlcls.plugin import Device

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = private_home(tmp_path_factory)
        mp.setenv("MLCLS_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def reference_model(reference_dir, home):
    return load_model_dir(reference_dir / "model" / "PP-LCNet_x1_0_ML")


@pytest.fixture(scope="module")
def predictor(reference_model):
    pred = OnnxRuntimePredictor(reference_model, Device("cpu"), None, {})
    yield pred
    pred.close()


@pytest.mark.parametrize("batch_size", [1, 8])
def test_scores_and_labels_match_paddlex(predictor, reference_dir, reference_model,
                                         batch_size):
    assert_paddlex_parity(predictor, reference_dir, reference_model, batch_size)


def test_placement_is_read_from_the_session(predictor):
    placement = predictor.placement()
    assert placement.device == "cpu"
    assert placement.engine == "onnxruntime"
    assert "CPUExecutionProvider" in placement.detail
    assert predictor.session.get_providers() == ["CPUExecutionProvider"]


def test_a_provider_dropped_by_onnxruntime_reads_back_as_the_cpu(reference_model, monkeypatch):
    """ONNX Runtime drops a provider it cannot load with a log line and runs on the CPU. The
    CPU build here has no CUDA provider, so its list is widened to claim one (the only fake):
    the real session then drops it, and the placement must say so."""
    import onnxruntime as ort

    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", *real])
    pred = OnnxRuntimePredictor(reference_model, Device("gpu", (0,)), 0, {})
    try:
        placement = pred.placement()
    finally:
        pred.close()
    assert placement.device == "cpu"
    assert "kept only CPUExecutionProvider" in placement.detail
    assert "CUDAExecutionProvider" in placement.detail


def test_a_build_without_the_provider_is_refused(reference_model):
    with pytest.raises(DeviceError, match="has none of CUDAExecutionProvider"):
        OnnxRuntimePredictor(reference_model, Device("gpu", (0,)), 0, {})


def test_probe_says_what_runs_where():
    engine = OnnxRuntimeEngine()
    cpu = engine.probe("cpu")
    assert cpu.available and cpu.versions["onnxruntime"]
    gpu = engine.probe("gpu")
    assert not gpu.available
    assert "CUDAExecutionProvider" in gpu.reason and "onnxruntime-gpu" in gpu.fix
    assert not engine.probe("xpu").available


@pytest.mark.parametrize("options, message", [
    ({"thread": 2}, "has no option 'thread'"),
    ({"threads": -1}, "threads must be a whole number"),
    ({"graph_optimization": "max"}, "graph_optimization must be one of"),
])
def test_bad_options_are_errors(reference_model, options, message):
    with pytest.raises(UsageError, match=message):
        OnnxRuntimePredictor(reference_model, Device("cpu"), None, options)


def test_options_reach_the_session(reference_model):
    pred = OnnxRuntimePredictor(reference_model, Device("cpu"), None,
                                {"threads": 1, "graph_optimization": "basic",
                                 "spinning": False})
    try:
        assert "1 threads, graph optimisation basic" in pred.placement().detail
        batch = np.zeros((2, 3, 448, 448), np.float32)
        assert pred.run(batch).shape == (2, 80)
    finally:
        pred.close()


def test_a_shipped_onnx_file_is_used_as_is(tiny_model, tmp_path, home):
    model_dir = tmp_path / "with-onnx"
    shutil.copytree(tiny_model, model_dir)
    source = ortmod.onnx_model.onnx_for(load_model_dir(tiny_model))
    shutil.copy(source.path, model_dir / "inference.onnx")
    spec = load_model_dir(model_dir)
    assert spec.onnx_file == model_dir / "inference.onnx"
    pred = OnnxRuntimePredictor(spec, Device("cpu"), None, {})
    assert "model directory inference.onnx" in pred.placement().detail
    pred.close()


def test_a_corrupt_onnx_file_names_the_model(tiny_model, tmp_path):
    model_dir = tmp_path / "corrupt"
    shutil.copytree(tiny_model, model_dir)
    (model_dir / "inference.onnx").write_bytes(b"\x08\x07 this is not a model")
    with pytest.raises(ModelError, match=f"{model_dir}: ONNX Runtime could not load"):
        OnnxRuntimePredictor(load_model_dir(model_dir), Device("cpu"), None, {})


def test_the_demo_model_ships_an_onnx_file_that_matches_its_paddle_files():
    """The packaged demo model runs on the ONNX engines without a conversion; its ONNX file
    must stay the same network as its Paddle files (rebuild it when they change:
    docs/engines.md)."""
    import paddle.inference as pi

    from mlcls.model_hub import ensure_model

    spec = load_model_dir(ensure_model("mlcls-demo"))
    assert spec.onnx_file is not None and spec.onnx_file.stat().st_size < 2 << 20
    batch = np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)
    pred = OnnxRuntimePredictor(spec, Device("cpu"), None, {"threads": 1})
    assert pred.source.origin == "model directory"
    got = pred.run(batch)
    pred.close()
    config = pi.Config(str(spec.graph_file), str(spec.params_file))
    config.disable_gpu()
    paddle_pred = pi.create_predictor(config)
    handle = paddle_pred.get_input_handle(paddle_pred.get_input_names()[0])
    handle.reshape(list(batch.shape))
    handle.copy_from_cpu(batch)
    paddle_pred.run()
    want = paddle_pred.get_output_handle(paddle_pred.get_output_names()[0]).copy_to_cpu()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_running_a_model_with_an_onnx_file_never_imports_paddle(tmp_path):
    """The whole path with the defaults (device and engine auto), in a fresh process: import
    mlcls, build the pipeline on the demo model (which ships inference.onnx), tag the demo
    image. Neither Paddle nor the converter may be imported."""
    import json
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from mlcls import create_pipeline\n"
        "from mlcls.model_hub import ensure_model\n"
        "from pathlib import Path\n"
        "p = create_pipeline('multi_label_image_classification', model='mlcls-demo')\n"
        "demo = Path(ensure_model('mlcls-demo')).parent / 'demo.png'\n"
        "res = next(iter(p.predict(str(demo))))\n"
        "print(json.dumps({'labels': res['label_names'], 'engine': res['engine'],\n"
        "                  'paddle': sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                                   ('paddle', 'paddle2onnx'))}))\n")
    env = {**__import__("os").environ, "MLCLS_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["engine"] == "onnxruntime"
    assert result["labels"]  # the demo image has digits on it
    assert result["paddle"] == []
    assert not (tmp_path / "home" / "onnx").exists()  # no conversion was needed
