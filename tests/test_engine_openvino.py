"""The openvino engine on the CPU: PaddleX's scores, placement read-back, options."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from engine_checks import assert_paddlex_parity, private_home

from mlcls.backends.openvino_engine import OpenVinoEngine, OpenVinoPredictor, compile_config
from mlcls.errors import DeviceError, ModelError, UsageError
from mlcls.model import load_model_dir
from mlcls.plugin import Device

pytest.importorskip("openvino")


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
    pred = OpenVinoPredictor(reference_model, Device("cpu"), None, {})
    yield pred
    pred.close()


@pytest.mark.parametrize("batch_size", [1, 8])
def test_scores_and_labels_match_paddlex(predictor, reference_dir, reference_model,
                                         batch_size):
    assert_paddlex_parity(predictor, reference_dir, reference_model, batch_size)


def test_placement_is_read_from_the_compiled_model(predictor):
    placement = predictor.placement()
    assert placement.device == "cpu"
    assert placement.engine == "openvino"
    assert "OpenVINO on CPU" in placement.detail
    # f32 by default: bf16 on an AVX-512 BF16 CPU would break parity
    assert "inference_precision_hint=f32" in placement.detail


def test_runs_from_several_threads_give_each_its_own_scores(predictor):
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((1, 3, 448, 448)).astype(np.float32) for _ in range(4)]
    alone = [predictor.run(b) for b in batches]
    together: list = [None] * 4

    def work(i: int) -> None:
        together[i] = predictor.run(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_probe_answers_for_the_cpu_only():
    engine = OpenVinoEngine()
    assert engine.probe("cpu").available
    gpu = engine.probe("gpu")
    assert not gpu.available and "Intel" in gpu.reason


def test_other_types_are_refused(reference_model):
    with pytest.raises(DeviceError, match="OpenVINO does not run on 'gpu'"):
        OpenVinoPredictor(reference_model, Device("gpu", (0,)), 0, {})


@pytest.mark.parametrize("options, message", [
    ({"hint": "LATENCY"}, "has no option 'hint'"),
    ({"performance_hint": "fastest"}, "performance_hint must be one of"),
    ({"precision": "int4"}, "precision must be one of"),
    ({"threads": "two"}, "threads must be a whole number"),
])
def test_bad_options_are_errors(reference_model, options, message):
    with pytest.raises(UsageError, match=message):
        OpenVinoPredictor(reference_model, Device("cpu"), None, options)


def test_options_map_onto_openvino_properties():
    assert compile_config({}) == {"PERFORMANCE_HINT": "LATENCY",
                                  "INFERENCE_PRECISION_HINT": "f32"}
    assert compile_config({"threads": 1, "precision": "bf16",
                           "performance_hint": "throughput"}) == {
        "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "bf16",
        "INFERENCE_NUM_THREADS": 1}


def test_a_corrupt_onnx_file_names_the_model(tiny_model, tmp_path):
    model_dir = tmp_path / "corrupt"
    shutil.copytree(tiny_model, model_dir)
    (model_dir / "inference.onnx").write_bytes(b"\x08\x07 this is not a model")
    with pytest.raises(ModelError, match=f"{model_dir}: OpenVINO could not compile"):
        OpenVinoPredictor(load_model_dir(model_dir), Device("cpu"), None, {})
