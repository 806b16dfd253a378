"""PaddleX's high-performance inference switches, mapped onto mlcls's engines.

PaddleX code and configs say ``use_hpip=True`` (``--use_hpip``, ``use_hpip: true`` in a
pipeline YAML) and optionally ``hpi_config`` with ``backend`` (paddle, openvino, onnxruntime,
tensorrt, om) and ``backend_config``. mlcls has one engine choice, ``engine`` plus the engine's
options, so these are translated into it:

- ``use_hpip`` alone: ``engine: auto``, which in mlcls already is the fastest engine measured
  for the device type (devices.yaml's order, or the engine ``mlcls tune`` recorded).
- ``backend``: the engine of that name; ``tensorrt`` is ONNX Runtime's TensorRT provider
  (``onnxruntime`` with ``tensorrt: true``, gpu only), as PaddleX builds it from ONNX too.
- ``backend_config``: the engine's options (``cpu_num_threads`` -> ``threads``; Paddle's
  ``run_mode`` -> ``mkldnn`` / ``tensorrt`` + ``precision``; TensorRT's ``precision``).

A key mlcls does not know, or one it cannot honour, is an error that says so: a config must
never run differently from what it says without a word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError

BACKENDS = {"paddle": "paddle", "openvino": "openvino", "onnxruntime": "onnxruntime",
            "tensorrt": "onnxruntime"}
# hpi_config keys PaddleX fills in itself from the pipeline and inference.yml
INTERNAL_KEYS = ("model_name", "device_type", "device_id", "hpi_info")
# Paddle's run modes (PaddlePredictorOption.run_mode) -> paddle engine options
RUN_MODES = {
    "paddle": {"mkldnn": False},
    "mkldnn": {"mkldnn": True},
    "trt_fp32": {"tensorrt": True, "precision": "fp32"},
    "trt_fp16": {"tensorrt": True, "precision": "fp16"},
}


@dataclass
class EngineChoice:
    """What ``use_hpip`` / ``hpi_config`` ask for: an engine (None = auto) and its options."""

    engine: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _where(source: str, key: str) -> str:
    return f"{source}.{key}" if source else key


def _threads(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where} must be a whole number of threads >= 1, got {value!r}")
    return value


def _backend_options(backend: str, config: Any, where: str) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise UsageError(f"{where} must be a mapping of the {backend} backend's settings, "
                         f"got {type(config).__name__}")
    options: dict[str, Any] = {}
    known: tuple[str, ...]
    if backend in ("openvino", "onnxruntime"):
        known = ("cpu_num_threads",)
        if "cpu_num_threads" in config:
            options["threads"] = _threads(config["cpu_num_threads"],
                                          f"{where}.cpu_num_threads")
    elif backend == "tensorrt":
        known = ("precision", "use_dynamic_shapes")
        options["tensorrt"] = True
        precision = str(config.get("precision", "fp32")).lower()
        if precision not in ("fp32", "fp16"):
            raise UsageError(f"{where}.precision must be fp32 or fp16, got {precision!r}")
        options["precision"] = precision
        if config.get("use_dynamic_shapes", True) is not True:
            raise UsageError(f"{where}.use_dynamic_shapes: false is not supported by mlcls "
                             "(ONNX Runtime's TensorRT provider builds engines for the "
                             "shapes it meets)")
        if "dynamic_shapes" in config:
            raise UsageError(f"{where}.dynamic_shapes is not supported by mlcls's TensorRT "
                             "path (ONNX Runtime builds profiles for the shapes it meets); "
                             "remove it, or use backend: paddle with run_mode trt_fp32 and "
                             "the paddle engine's trt_dynamic_shapes option")
    elif backend == "paddle":
        known = ("run_mode", "cpu_threads")
        if "run_mode" in config:
            mode = str(config["run_mode"])
            if mode not in RUN_MODES:
                raise UsageError(f"{where}.run_mode {mode!r} is not supported by mlcls "
                                 f"(supported: {', '.join(RUN_MODES)})")
            options.update(RUN_MODES[mode])
        if "cpu_threads" in config:
            options["threads"] = _threads(config["cpu_threads"], f"{where}.cpu_threads")
    else:  # pragma: no cover - backends are checked before
        known = ()
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for the "
                         f"{backend} backend (mlcls understands: {', '.join(known)})")
    return options


def engine_choice(use_hpip: Any, hpi_config: Any, source: str = "") -> EngineChoice | None:
    """Translate PaddleX's switches; ``None`` when high-performance inference is not asked.
    ``source`` names where they came from in messages (``pipeline config``...)."""
    if use_hpip is None or use_hpip is False:
        if hpi_config:
            raise UsageError(f"{_where(source, 'hpi_config')} is given but use_hpip is off; "
                             "PaddleX would ignore it, so mlcls refuses it: set use_hpip: "
                             "true, or remove hpi_config")
        return None
    if use_hpip is not True:
        raise UsageError(f"{_where(source, 'use_hpip')} must be true or false, got "
                         f"{use_hpip!r}")
    if hpi_config is None:
        return EngineChoice()
    if hasattr(hpi_config, "model_dump"):  # a PaddleX HPIConfig object
        hpi_config = hpi_config.model_dump(exclude_none=True, by_alias=True)
    where = _where(source, "hpi_config")
    if not isinstance(hpi_config, dict):
        raise UsageError(f"{where} must be a mapping (backend, backend_config), got "
                         f"{type(hpi_config).__name__}")
    internal = [k for k in INTERNAL_KEYS if k in hpi_config]
    if internal:
        raise UsageError(f"{where}: {', '.join(internal)} are filled in by PaddleX itself; "
                         "mlcls takes the model, device and engine facts from the pipeline "
                         "(model_dir, device) instead: remove them")
    known = ("backend", "backend_config", "auto_config", "auto_paddle2onnx")
    unknown = sorted(set(hpi_config) - set(known))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: "
                         f"{', '.join(known)})")
    if hpi_config.get("auto_paddle2onnx", True) is not True:
        raise UsageError(f"{where}.auto_paddle2onnx: false is not supported: mlcls converts "
                         "Paddle files to ONNX when an ONNX engine needs them; to run without "
                         "a conversion, ship inference.onnx in the model directory or choose "
                         "backend: paddle")
    backend = hpi_config.get("backend")
    auto = hpi_config.get("auto_config", True)
    if not isinstance(auto, bool):
        raise UsageError(f"{where}.auto_config must be true or false, got {auto!r}")
    if backend is None:
        if not auto:
            raise UsageError(f"{where}: auto_config is false, so backend must be given "
                             f"({', '.join(BACKENDS)})")
        if hpi_config.get("backend_config"):
            raise UsageError(f"{where}.backend_config needs backend: it configures one "
                             "backend")
        return EngineChoice()
    backend = str(backend).lower()
    if backend == "om":
        raise UsageError(f"{where}.backend: om (Ascend offline models) is not supported by "
                         "mlcls; on npu, leave backend out and the paddle engine runs through "
                         "the CustomDevice plugin")
    if backend not in BACKENDS:
        raise UsageError(f"{where}.backend {backend!r} is not one of "
                         f"{', '.join([*BACKENDS, 'om'])}")
    options = _backend_options(backend, hpi_config.get("backend_config"),
                               f"{where}.backend_config")
    return EngineChoice(BACKENDS[backend], options)


def apply(choice: EngineChoice | None, engine: str | None,
          device_options: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """Merge a translated choice with an explicit ``engine`` and ``device_options`` (these
    win per key; an explicit engine that contradicts ``backend`` is an error)."""
    if choice is None:
        return engine, device_options
    explicit = None if engine in (None, "", "auto") else str(engine).lower()
    if explicit and choice.engine and explicit != choice.engine:
        raise UsageError(f"engine '{explicit}' and hpi_config backend (engine "
                         f"'{choice.engine}') disagree; give one of them")
    merged = dict(choice.options)
    merged.update(device_options or {})
    return explicit or choice.engine or engine, (merged or device_options)
