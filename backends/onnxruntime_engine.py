"""The ``onnxruntime`` engine: ONNX Runtime, on the CPU (and on NVIDIA GPUs / Ascend NPUs when
the installed ONNX Runtime build has the CUDA, TensorRT or CANN execution provider).

It reads the model's ``inference.onnx``, or the Paddle files converted once into the cache
(``onnx_model``). After the session is created the providers it really kept are read back
(``get_providers()``): ONNX Runtime drops a provider it cannot load (a missing CUDA library)
with a log line only and runs on the CPU, so that case is reported as a CPU placement, which
the core refuses (or records as a fallback with ``--fallback``).

Measured on the reference model (docs/engines.md): with every graph optimisation on, this is
the fastest engine on this project's CPUs, ~1.4x Paddle Inference with oneDNN.
"""

from __future__ import annotations

import importlib.util
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

NAME = "onnxruntime"
BUILDS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
CPU_EP, CUDA_EP, TRT_EP, CANN_EP = ("CPUExecutionProvider", "CUDAExecutionProvider",
                                    "TensorrtExecutionProvider", "CANNExecutionProvider")
# The execution providers that put a session on each mlcls device type.
TYPE_PROVIDERS = {"cpu": (CPU_EP,), "gpu": (TRT_EP, CUDA_EP), "npu": (CANN_EP,)}
GRAPH_LEVELS = ("disable", "basic", "extended", "all")
OPTIONS = {
    "cpu": {"threads", "graph_optimization", "spinning"},
    "gpu": {"graph_optimization", "tensorrt", "precision", "trt_cache_dir"},
    "npu": {"graph_optimization"},
}


def installed_version() -> str | None:
    for dist in BUILDS:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
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


def _graph_level(ort, options: dict[str, Any]):
    name = str(options.get("graph_optimization") or "all").lower()
    if name not in GRAPH_LEVELS:
        raise UsageError(f"engine '{NAME}' option graph_optimization must be one of "
                         f"{', '.join(GRAPH_LEVELS)}, got {name!r}")
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    return levels[name]


def _threads(options: dict[str, Any]) -> int:
    raw = options.get("threads", 0)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise UsageError(f"engine '{NAME}' option threads must be a whole number >= 0 "
                         f"(0 = one per available core), got {raw!r}")
    return raw or available_cores()


def session_options(ort, device_type: str, options: dict[str, Any]):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the converter's unused initialisers are not worth a warning
    opts.graph_optimization_level = _graph_level(ort, options)
    if device_type == "cpu":
        opts.intra_op_num_threads = _threads(options)
        # one operator at a time: a classifier's graph is a chain, and a second pool would
        # only compete with the first for the same cores
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not options.get("spinning", False):
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def providers_for(device_type: str, device_id: int | None, options: dict[str, Any],
                  model: ModelSpec) -> list[tuple[str, dict[str, Any]]]:
    """The providers to ask for, most wanted first, with their options."""
    dev_id = 0 if device_id is None else int(device_id)
    if device_type == "cpu":
        return [(CPU_EP, {})]
    if device_type == "gpu":
        precision = str(options.get("precision") or "fp32").lower()
        if precision not in ("fp32", "fp16"):
            raise UsageError(f"engine '{NAME}' option precision must be fp32 or fp16 on gpu, "
                             f"got {precision!r}")
        chain: list[tuple[str, dict[str, Any]]] = []
        if options.get("tensorrt"):
            cache = options.get("trt_cache_dir") or str(model.model_dir / ".mlcls_trt_cache")
            chain.append((TRT_EP, {"device_id": dev_id, "trt_engine_cache_enable": True,
                                   "trt_engine_cache_path": str(cache),
                                   "trt_fp16_enable": precision == "fp16"}))
        elif precision == "fp16":
            raise UsageError(f"engine '{NAME}' option precision=fp16 needs tensorrt: true")
        chain.append((CUDA_EP, {"device_id": dev_id}))
        return chain
    if device_type == "npu":
        return [(CANN_EP, {"device_id": dev_id})]
    raise DeviceError(f"ONNX Runtime does not run on '{device_type}'")


class OnnxRuntimePredictor(Predictor):
    """One ONNX Runtime session. ``run`` is safe from several threads (ONNX Runtime's own
    guarantee), so no lock is taken."""

    def __init__(self, model: ModelSpec, device: Device, device_id: int | None,
                 options: dict[str, Any]):
        check_options(device.type, options)
        source = onnx_model.onnx_for(model)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DeviceError(f"engine '{NAME}': onnxruntime cannot be imported ({exc}); "
                              "pip install onnxruntime") from exc
        self.device_type = device.type
        self.device_id = device_id
        self.source = source
        wanted = providers_for(device.type, device_id, options, model)
        have = set(ort.get_available_providers())
        asked = [(name, opts) for name, opts in wanted if name in have]
        if not asked:
            raise DeviceError(f"device '{device.single(device_id)}': this ONNX Runtime build "
                              f"({installed_version()}) has none of "
                              f"{', '.join(n for n, _ in wanted)} (it has "
                              f"{', '.join(sorted(have))})")
        self.asked = [name for name, _ in asked]
        # the CPU provider last, so that an operator the device cannot run still has a home;
        # whether the device provider itself was kept is read back below
        if CPU_EP not in self.asked:
            asked.append((CPU_EP, {}))
        sess_opts = session_options(ort, device.type, options)
        try:
            self.session = ort.InferenceSession(str(source.path), sess_opts,
                                                providers=[n for n, _ in asked],
                                                provider_options=[o for _, o in asked])
        except Exception as exc:
            raise ModelError(f"{model.model_dir}: ONNX Runtime could not load {source.path} "
                             f"({type(exc).__name__}: {_last_line(exc)})") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{model.model_dir}: expected one image input and a score output "
                             f"in {source.path}, found {len(inputs)} inputs and "
                             f"{len(outputs)} outputs")
        self._input = inputs[0].name
        self._output = outputs[0].name
        self._threads = sess_opts.intra_op_num_threads
        self._level = str(options.get("graph_optimization") or "all").lower()

    def run(self, batch: np.ndarray) -> np.ndarray:
        import numpy as np  # not at module level: registering plugins must stay cheap

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        scores = self.session.run([self._output], {self._input: batch})[0]
        return scores.reshape(batch.shape[0], -1)

    def placement(self) -> Placement:
        kept = self.session.get_providers()
        device_eps = [p for p in kept if p != CPU_EP]
        where = f"{self.source.origin} {self.source.path.name}"
        if self.device_type == "cpu":
            # `cpu:0,1` asks for one session per id (each with its own threads)
            at = "cpu" if self.device_id is None else f"cpu:{self.device_id}"
            return Placement(at, f"{CPU_EP}, {self._threads} threads, graph optimisation "
                                 f"{self._level}, ONNX from {where}", NAME)
        if not device_eps:
            return Placement("cpu", f"ONNX Runtime kept only {CPU_EP} although "
                                    f"{', '.join(self.asked)} was asked (the provider failed "
                                    "to load; its libraries or driver are missing)", NAME)
        options = self.session.get_provider_options().get(device_eps[0], {})
        dev_id = options.get("device_id", self.device_id or 0)
        return Placement(f"{self.device_type}:{dev_id}",
                         f"{', '.join(device_eps)}, ONNX from {where}", NAME)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


class OnnxRuntimeEngine(Engine):
    name = NAME
    description = "ONNX Runtime (cpu; gpu with the CUDA/TensorRT providers; npu with CANN)"

    def model_problem(self, model: ModelSpec) -> str | None:
        return onnx_model.conversion_problem(model)

    def probe(self, device_type: str) -> ProbeReport:
        version = installed_version()
        if version is None or importlib.util.find_spec("onnxruntime") is None:
            return ProbeReport(device_type, False, reason="onnxruntime is not installed",
                               fix=("pip install onnxruntime (or: pip install mlcls[cpu])"
                                    if device_type == "cpu" else
                                    "install the onnxruntime build for this device "
                                    "(docs/engines.md)"))
        wanted = TYPE_PROVIDERS.get(device_type)
        versions = {"onnxruntime": version}
        if wanted is None:
            return ProbeReport(device_type, False, versions=versions,
                               reason=f"ONNX Runtime has no execution provider for "
                                      f"'{device_type}' in mlcls",
                               fix="use another engine (`mlcls devices`)")
        try:
            import onnxruntime as ort

            have = ort.get_available_providers()
        except Exception as exc:  # a broken install must not break the probe
            return ProbeReport(device_type, False, versions=versions,
                               reason=f"onnxruntime {version} cannot be imported "
                                      f"({type(exc).__name__}: {_last_line(exc)})",
                               fix="reinstall onnxruntime")
        found = [p for p in wanted if p in have]
        if not found:
            return ProbeReport(device_type, False, versions=versions,
                               reason=f"onnxruntime {version} has no "
                                      f"{' or '.join(wanted)} (it has {', '.join(have)})",
                               fix=_provider_fix(device_type))
        count = available_cores() if device_type == "cpu" else 0
        return ProbeReport(device_type, True, count=count, versions=versions,
                           notes=[f"providers: {', '.join(found)}"] if device_type != "cpu"
                           else [])

    def create_predictor(self, model: ModelSpec, device: Device, device_id: int | None,
                         options: dict[str, Any]) -> Predictor:
        return OnnxRuntimePredictor(model, device, device_id, options)


def _provider_fix(device_type: str) -> str:
    if device_type == "gpu":
        return ("replace onnxruntime with onnxruntime-gpu built for your CUDA version "
                "(`pip uninstall -y onnxruntime && pip install onnxruntime-gpu`; both "
                "provide the same module, so never install both)")
    if device_type == "npu":
        return "install an onnxruntime build with the CANN execution provider (Ascend's)"
    return "use another engine"


@hookimpl
def register_engines(register):
    """Registered like any third party's engine: through the ``mlcls.backends`` entry-point
    group (pyproject.toml). Cheap: ONNX Runtime itself is imported only when a predictor
    is built or a probe asks."""
    register(OnnxRuntimeEngine())


__all__ = ["OnnxRuntimeEngine", "OnnxRuntimePredictor"]
