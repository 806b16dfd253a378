"""The ``openvino`` engine: OpenVINO Runtime on the host CPU.

It reads the model's ``inference.onnx``, or the Paddle files converted once into the cache
(``onnx_model``). OpenVINO's other devices are Intel's (its ``GPU`` is an Intel GPU, its
``NPU`` an Intel NPU), not the NVIDIA GPUs and Ascend NPUs that mlcls's ``gpu`` and ``npu``
types mean, so the engine answers for ``cpu`` only and says so for the others.

Two defaults differ from OpenVINO's own, both measured (docs/engines.md):
- ``precision: f32``. On a CPU with AVX-512 BF16 OpenVINO silently computes in bfloat16, and
  the scores then differ from Paddle's by up to 0.09: the parity the project promises is gone.
- ``performance_hint: LATENCY``. THROUGHPUT makes several streams that split two cores and
  ran 1.5-2x slower per image here.
After compiling, the device that really runs it is read back (``EXECUTION_DEVICES``).
"""

from __future__ import annotations

import importlib.util
import threading
from importlib import metadata
from typing import TYPE_CHECKING, Any

from mlcls.plugin import (
    Device,
    DeviceError,
    Engine,
    ModelError,
    Placement,
    Predictor,
    ProbeReport,
    UsageError,
    available_cores,
    hookimpl,
)

from . import onnx_model

if TYPE_CHECKING:
    import numpy as np

    from mlcls.model import ModelSpec

NAME = "openvino"
# mlcls device type -> OpenVINO device name
TYPE_DEVICES = {"cpu": "CPU"}
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}
OPTIONS = {"cpu": {"threads", "performance_hint", "precision", "cache_dir"}}


def installed_version() -> str | None:
    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return None


def check_options(device_type: str, options: dict[str, Any]) -> None:
    """Unknown option names are errors: a typo must not silently run with the default."""
    known = OPTIONS.get(device_type, set())
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"engine '{NAME}' on '{device_type}' has no option "
                         f"{', '.join(map(repr, unknown))}; its options are "
                         f"{', '.join(sorted(known)) or 'none'} (devices.yaml "
                         f"engines.{NAME}.options.{device_type}, or device_options)")


def compile_config(options: dict[str, Any]) -> dict[str, Any]:
    threads = options.get("threads", 0)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise UsageError(f"engine '{NAME}' option threads must be a whole number >= 0 "
                         f"(0 = OpenVINO's choice, every core), got {threads!r}")
    hint = str(options.get("performance_hint") or "LATENCY").upper()
    if hint not in HINTS:
        raise UsageError(f"engine '{NAME}' option performance_hint must be one of "
                         f"{', '.join(HINTS)}, got {hint!r}")
    precision = str(options.get("precision") or "f32").lower()
    if precision not in PRECISIONS:
        raise UsageError(f"engine '{NAME}' option precision must be one of "
                         f"{', '.join(sorted(PRECISIONS))}, got {precision!r}")
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint,
                              "INFERENCE_PRECISION_HINT": PRECISIONS[precision]}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if options.get("cache_dir"):
        config["CACHE_DIR"] = str(options["cache_dir"])
    return config


class OpenVinoPredictor(Predictor):
    """One compiled model and its infer request (a request is not re-entrant: runs from
    several threads take turns)."""

    def __init__(self, model: ModelSpec, device: Device, device_id: int | None,
                 options: dict[str, Any]):
        check_options(device.type, options)
        target = TYPE_DEVICES.get(device.type)
        if target is None:
            raise DeviceError(f"OpenVINO does not run on '{device.type}' in mlcls "
                              "(its GPU and NPU are Intel devices)")
        config = compile_config(options)
        source = onnx_model.onnx_for(model)
        try:
            import openvino as ov
        except ImportError as exc:
            raise DeviceError(f"engine '{NAME}': openvino cannot be imported ({exc}); "
                              "pip install openvino") from exc
        self.device_type, self.device_id, self.source = device.type, device_id, source
        try:
            core = ov.Core()
            self.compiled = core.compile_model(str(source.path), target, config)
        except Exception as exc:
            raise ModelError(f"{model.model_dir}: OpenVINO could not compile {source.path} "
                             f"for {target} ({type(exc).__name__}: {_reason(exc)})") from exc
        if len(self.compiled.inputs) != 1 or not self.compiled.outputs:
            raise ModelError(f"{model.model_dir}: expected one image input and a score output "
                             f"in {source.path}, found {len(self.compiled.inputs)} inputs")
        self._output = self.compiled.output(0)
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        import numpy as np  # not at module level: registering plugins must stay cheap

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            result = self._request.infer({0: batch})
            # the request's buffer is reused by the next run: copy out under the lock
            scores = np.array(result[self._output], copy=True)
        return scores.reshape(batch.shape[0], -1)

    def placement(self) -> Placement:
        devices = [str(d) for d in self.compiled.get_property("EXECUTION_DEVICES")]
        facts = []
        for key in ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "INFERENCE_NUM_THREADS",
                    "NUM_STREAMS"):
            try:
                value = self.compiled.get_property(key)
                # an element type prints as "<Type: 'float32'>"; its short name is "f32"
                value = value.to_string() if hasattr(value, "to_string") else value
                facts.append(f"{key.lower()}={value}")
            except Exception:  # a device plugin that lacks the property
                continue
        detail = (f"OpenVINO on {', '.join(devices)}, {', '.join(facts)}, ONNX from "
                  f"{self.source.origin} {self.source.path.name}")
        ours = [d for d in devices if d.split(".")[0] == TYPE_DEVICES[self.device_type]]
        if not ours:
            return Placement(devices[0].lower() if devices else "unknown", detail, NAME)
        where = self.device_type if self.device_id is None else (
            f"{self.device_type}:{self.device_id}")
        return Placement(where, detail, NAME)

    def close(self) -> None:
        self._request = None
        self.compiled = None


def _reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # OpenVINO prefixes its message with source locations; the last lines carry the cause
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return "; ".join((useful or lines or [type(exc).__name__])[-2:])


class OpenVinoEngine(Engine):
    name = NAME
    description = "OpenVINO Runtime (cpu)"

    def model_problem(self, model: ModelSpec) -> str | None:
        return onnx_model.conversion_problem(model)

    def probe(self, device_type: str) -> ProbeReport:
        version = installed_version()
        if version is None or importlib.util.find_spec("openvino") is None:
            return ProbeReport(device_type, False, reason="openvino is not installed",
                               fix="pip install openvino (or: pip install mlcls[openvino])")
        versions = {"openvino": version}
        if device_type not in TYPE_DEVICES:
            return ProbeReport(device_type, False, versions=versions,
                               reason=f"OpenVINO runs on the CPU here; its GPU and NPU "
                                      f"plugins drive Intel devices, not mlcls's "
                                      f"'{device_type}'",
                               fix="use another engine on this type (`mlcls devices`)")
        return ProbeReport(device_type, True, count=available_cores(), versions=versions)

    def create_predictor(self, model: ModelSpec, device: Device, device_id: int | None,
                         options: dict[str, Any]) -> Predictor:
        return OpenVinoPredictor(model, device, device_id, options)


@hookimpl
def register_engines(register):
    """Registered like any third party's engine: through the ``mlcls.backends`` entry-point
    group (pyproject.toml). Cheap: OpenVINO itself is imported only when a predictor
    is built or a probe asks."""
    register(OpenVinoEngine())


__all__ = ["OpenVinoEngine", "OpenVinoPredictor"]
