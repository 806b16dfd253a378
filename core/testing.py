"""The conformance kit: the checks every device backend and engine must pass, as a pytest plugin.

It is parametrised by device type x engine. A vendor runs it against their plugin in one of two
ways::

    # tests/test_conformance.py in the plugin's repository
    from mlcls.testing import BackendConformance

    class TestMyDevice(BackendConformance):
        device_type = "mydev"
        engine = "myengine"      # or None: the engine `--engine auto` picks for the type

or, with nothing written, ``pytest -p mlcls.testing --mlcls-device mydev [--mlcls-engine NAME]
--pyargs mlcls.testing``. The checks: the type (and engine) are registered by a loaded plugin
without faults; registering plugins imports no framework or vendor SDK; the backend's and the
engine's probe reports have the documented shape (and a reason and a fix when unavailable);
outputs equal Paddle Inference on the CPU within ``atol`` on a tiny random model; placement is
read back per id and every result names the id and the engine that ran it; several ids each get
work, results in input order; and an unavailable device is refused (strict) or falls back with a
WARNING and an ``on_fallback`` event.

Checks that need the device are skipped, with the probe's reason, where it is unavailable.
Nothing here imports Paddle until a model is needed, so loading the plugin is cheap.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

# Absolute imports: pytest may import this file a second time under another name (`--pyargs`
# on an editable install), and the checks must see the same classes as the backends do.
from mlcls import hookimpl
from mlcls.devices import (
    fallback_chain,
    known_engines,
    known_types,
    probe,
    probe_engine,
    resolve_device,
)
from mlcls.errors import DeviceError
from mlcls.plugin import Device, ProbeReport

OPTION = "--mlcls-device"
ENGINE_OPTION = "--mlcls-engine"
REFERENCE_ENGINE = "paddle"  # what outputs are compared with, on the CPU


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlcls", "mlcls device backend conformance")
    group.addoption(OPTION, default=None, metavar="TYPE",
                    help="device type that TestDeviceConformance checks (e.g. npu)")
    group.addoption(ENGINE_OPTION, default=None, metavar="ENGINE",
                    help="engine it runs (default: the one --engine auto picks)")


def export_tiny_model(target: Path, num_classes: int = 4, size: int = 24, seed: int = 7, *,
                      labels: list[str] | None = None, threshold: Any = 0.0,
                      transform_ops: list[dict] | None = None,
                      model_name: str = "ConformanceNet_ML") -> Path:
    """Export a small random-weight multi-label model (conv, pooling, linear, sigmoid) in
    PaddleX's inference layout to ``target``. The default threshold 0 keeps every class, so
    every score is compared."""
    import paddle
    import yaml

    paddle.seed(seed)

    class TinyNet(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 8, 3, stride=2, padding=1)
            self.pool = paddle.nn.AdaptiveAvgPool2D(1)
            self.fc = paddle.nn.Linear(8, num_classes)

        def forward(self, x):
            x = paddle.nn.functional.relu(self.conv(x))
            x = self.pool(x).flatten(1)
            # x4 spreads the scores over (0, 1) instead of bunching them near 0.5
            return paddle.nn.functional.sigmoid(self.fc(x) * 4.0)

    net = TinyNet()
    net.eval()
    target.mkdir(parents=True, exist_ok=True)
    spec = [paddle.static.InputSpec([None, 3, size, size], "float32", "x")]
    paddle.jit.save(net, str(target / "inference"), input_spec=spec)
    ops = transform_ops if transform_ops is not None else [
        {"ResizeImage": {"size": size, "interpolation": "bilinear", "backend": "pil"}},
        {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                            "scale": 1 / 255, "order": "", "channel_num": 3}},
        {"ToCHWImage": None},
    ]
    config = {
        "Global": {"model_name": model_name},
        "PreProcess": {"transform_ops": ops},
        "PostProcess": {"MultiLabelThreshOutput": {
            "threshold": threshold,
            "label_list": labels if labels is not None else
            [f"label_{i}" for i in range(num_classes)],
        }},
    }
    (target / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def write_images(target: Path, count: int = 5) -> list[Path]:
    import numpy as np
    from PIL import Image

    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    paths = []
    for i in range(count):
        arr = rng.integers(0, 256, (20 + 7 * i, 30 + 5 * i, 3), dtype=np.uint8)
        path = target / f"img_{i:02d}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


class _FallbackRecorder:
    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []

    @hookimpl
    def on_fallback(self, requested: str, used: str, reason: str) -> None:
        self.events.append({"requested": requested, "used": used, "reason": reason})


def _scores(result: Any) -> dict[int, float]:
    return dict(zip(result["class_ids"], result["scores"]))


class BackendConformance:
    """Subclass with ``device_type`` set; override the class attributes below as needed."""

    device_type: ClassVar[str | None] = None
    engine: ClassVar[str | None] = None  # None: the engine `--engine auto` picks
    atol: ClassVar[float] = 1e-4
    # Modules that registering plugins must not import (the framework, vendor SDKs).
    forbidden_imports: ClassVar[tuple[str, ...]] = ("paddle",)
    # False for types without device ids (the CPU): no "TYPE:ID" requests are made.
    has_ids: ClassVar[bool] = True

    # -- fixtures ---------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def kind(cls, request: pytest.FixtureRequest) -> str:
        name = cls.device_type or request.config.getoption(OPTION, default=None)
        if not name:
            pytest.skip(f"no device type given (set device_type or pass {OPTION})")
        return str(name).lower()

    @pytest.fixture(scope="class")
    @classmethod
    def engine_name(cls, request: pytest.FixtureRequest) -> str:
        name = cls.engine or request.config.getoption(ENGINE_OPTION, default=None)
        return str(name or "auto").lower()

    @pytest.fixture(scope="class")
    @classmethod
    def report(cls, kind: str) -> ProbeReport:
        return probe(kind)

    @pytest.fixture(scope="class")
    @classmethod
    def available(cls, report: ProbeReport, engine_name: str) -> ProbeReport:
        if not report.available:
            pytest.skip(f"'{report.device_type}' is unavailable here: {report.reason}")
        if engine_name != "auto":
            engine_report = probe_engine(engine_name, report.device_type)
            if not engine_report.available:
                pytest.skip(f"engine '{engine_name}' cannot run on '{report.device_type}' "
                            f"here: {engine_report.reason}")
        return report

    @pytest.fixture(scope="class")
    @classmethod
    def model_dir(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return export_tiny_model(tmp_path_factory.mktemp("conformance") / "model")

    @pytest.fixture(scope="class")
    @classmethod
    def images(cls, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
        return write_images(tmp_path_factory.mktemp("conformance-images"))

    @pytest.fixture(scope="class")
    @classmethod
    def cpu_results(cls, model_dir: Path, images: list[Path]) -> list[Any]:
        from mlcls.pipeline import create_pipeline

        with create_pipeline("multi_label_image_classification", device="cpu",
                             engine=REFERENCE_ENGINE, model_dir=model_dir) as pipe:
            return list(pipe.predict([str(p) for p in images]))

    def _device(self, kind: str, ids: tuple[int, ...] = (0,)) -> str:
        return f"{kind}:{','.join(map(str, ids))}" if self.has_ids else kind

    # -- checks -----------------------------------------------------------------------------

    def test_type_and_engine_are_registered_by_loaded_plugins(self, kind: str,
                                                               engine_name: str) -> None:
        from mlcls.plugin import DeviceBackend, Engine
        from mlcls.plugins import get_state

        state = get_state()
        assert kind in known_types(), f"'{kind}' is not a known device type"
        backend = state.backends.get(kind)
        assert isinstance(backend, DeviceBackend), f"no loaded plugin registers '{kind}'"
        owners = [state.backend_plugin[kind]]
        if engine_name != "auto":
            assert engine_name in known_engines(), f"no loaded plugin registers engine " \
                                                   f"'{engine_name}'"
            assert isinstance(state.engines[engine_name], Engine)
            owners.append(state.engine_plugin[engine_name])
        for owner in owners:
            record = state.record(owner)
            assert record is not None and record.status == "loaded", record
            assert not record.faults, f"plugin '{owner}' has faults: {record.faults}"

    def test_registration_imports_no_framework(self, kind: str) -> None:
        code = ("import json, sys\nfrom mlcls.plugins import get_state\n"
                f"assert {kind!r} in get_state().backends\n"
                f"print(json.dumps([m for m in {list(self.forbidden_imports)!r} "
                "if m in sys.modules]))\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == [], (
            "registering the plugins imported a framework/SDK module")

    def test_probe_report_shape(self, kind: str, report: ProbeReport) -> None:
        assert isinstance(report, ProbeReport)
        assert report.device_type == kind
        assert isinstance(report.available, bool)
        assert isinstance(report.count, int) and report.count >= 0
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in report.versions.items())
        if report.available:
            assert report.count >= 1, "an available type must count at least one device"
        else:
            assert report.reason.strip(), "an unavailable type must say why"
            assert report.fix.strip(), "an unavailable type must say what to do"
        json.dumps(report.as_dict())

    def test_engine_probe_report_shape(self, kind: str, report: ProbeReport,
                                       engine_name: str) -> None:
        if not report.available:
            pytest.skip(f"'{kind}' is unavailable here: {report.reason}")
        names = known_engines() if engine_name == "auto" else [engine_name]
        for name in names:
            er = probe_engine(name, kind)
            assert isinstance(er, ProbeReport) and isinstance(er.available, bool), name
            if not er.available:
                assert er.reason.strip(), f"engine '{name}' must say why it cannot run"
            json.dumps(er.as_dict())

    def test_outputs_match_the_cpu_reference(self, kind, available, engine_name, model_dir,
                                             images, cpu_results) -> None:
        from mlcls.pipeline import create_pipeline

        with create_pipeline("multi_label_image_classification", device=self._device(kind),
                             engine=engine_name, model_dir=model_dir) as pipe:
            got = list(pipe.predict([str(p) for p in images]))
        assert [r["input_path"] for r in got] == [r["input_path"] for r in cpu_results]
        for mine, ref in zip(got, cpu_results):
            a, b = _scores(mine), _scores(ref)
            assert a.keys() == b.keys(), mine["input_path"]
            for cls, score in b.items():
                assert abs(a[cls] - score) <= self.atol, (mine["input_path"], cls, a[cls], score)

    def test_placement_is_read_back_per_id(self, kind, available, engine_name, model_dir,
                                           images) -> None:
        from mlcls.pipeline import create_pipeline

        device = self._device(kind)
        with create_pipeline("multi_label_image_classification", device=device,
                             engine=engine_name, model_dir=model_dir) as pipe:
            assert [p.device for p in pipe.placements] == [device]
            used = pipe.engine_name
            assert [p.engine for p in pipe.placements] == [used]
            assert engine_name in ("auto", used)
            results = list(pipe.predict(str(images[0])))
        assert results[0]["device"] == device and results[0]["engine"] == used

    def test_every_id_gets_work_and_order_is_kept(self, kind, available, engine_name,
                                                  model_dir, images) -> None:
        if not self.has_ids or available.count < 2:
            pytest.skip("needs a type with ids and at least two devices")
        from mlcls.pipeline import create_pipeline

        device = self._device(kind, (1, 0))
        with create_pipeline("multi_label_image_classification", device=device,
                             engine=engine_name, model_dir=model_dir, batch_size=1) as pipe:
            assert [p.device for p in pipe.placements] == [f"{kind}:1", f"{kind}:0"]
            results = list(pipe.predict([str(p) for p in images]))
        assert [r["input_path"] for r in results] == [str(p) for p in images]
        assert {r["device"] for r in results} == {f"{kind}:0", f"{kind}:1"}

    def test_unavailable_is_strict_or_a_recorded_fallback(self, kind, monkeypatch,
                                                          caplog) -> None:
        chain = fallback_chain(kind)
        if not chain:
            pytest.skip(f"'{kind}' has no fallback chain")
        from mlcls import devices
        from mlcls.plugins import get_plugin_manager

        real = devices.probe
        down = ProbeReport(kind, False, reason="taken down by the conformance kit", fix="none")
        monkeypatch.setattr(devices, "probe", lambda t: down if t == kind else real(t))
        monkeypatch.delenv(devices.ENV_FALLBACK, raising=False)
        requested = self._device(kind)
        with pytest.raises(DeviceError, match="taken down by the conformance kit"):
            resolve_device(requested, fallback=False)
        recorder = _FallbackRecorder()
        pm = get_plugin_manager()
        pm.register(recorder, name="mlcls.testing.recorder")
        try:
            with caplog.at_level(logging.WARNING):
                res = resolve_device(requested, fallback=True)
        finally:
            pm.unregister(recorder)
        assert res.device.type in chain and res.fallback_reason
        assert recorder.events and recorder.events[0]["requested"] == requested
        assert recorder.events[0]["used"] == str(res.device)
        assert any(f"{requested} -> {res.device}" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.WARNING)


class TestDeviceConformance(BackendConformance):
    """Run by ``pytest -p mlcls.testing --mlcls-device TYPE --pyargs mlcls.testing``."""


__all__ = ["BackendConformance", "Device", "export_tiny_model", "write_images"]
