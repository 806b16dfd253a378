"""The ONNX engines pass the conformance kit on the CPU, as a third-party engine would."""

from __future__ import annotations

from mlcls.testing import BackendConformance


class TestCpuOnnxRuntimeConformance(BackendConformance):
    device_type = "cpu"
    engine = "onnxruntime"
    has_ids = False


class TestCpuOpenVinoConformance(BackendConformance):
    device_type = "cpu"
    engine = "openvino"
    has_ids = False
