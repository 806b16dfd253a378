"""The NVIDIA GPU backend: a CUDA build of paddlepaddle (``paddlepaddle-gpu``), one predictor per
GPU id, a GPU memory pool, and optional TensorRT.

Paddle's ``enable_use_gpu`` on a CPU build only logs an error and goes on on the CPU; the
placement read back from the config after creation turns that into an error or a recorded
fallback (see ``read_placement``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcls import hookimpl
from mlcls.devices import Device, DeviceTypeInfo, ProbeReport
from mlcls.errors import UsageError
from mlcls.interfaces import Placement

from . import framework_probe, nvidia
from .paddle_device import (
    FRAMEWORK_BUILDS,
    apply_env,
    broken_framework,
    clashing_builds,
    distribution_version,
    mask_reason,
    precision_type,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mlcls.interfaces import Predictor
    from mlcls.model import ModelSpec

TYPE = "gpu"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
CACHE_DIR_NAME = ".mlcls_trt_cache"


@hookimpl
def register_device_types(register: Callable[[DeviceTypeInfo], None]) -> None:
    register(DeviceTypeInfo(TYPE, "NVIDIA GPU through a CUDA build of paddlepaddle"))


@hookimpl
def prepare_environment(device: Device, options: dict[str, Any]) -> None:
    if device.type == TYPE:
        apply_env(TYPE)


def _cpu_build_report(version: str, versions: dict[str, str],
                      gpus: list[nvidia.Gpu]) -> ProbeReport:
    details = [g.as_dict() for g in gpus]
    if not gpus:
        where = ("nvidia-smi is not on PATH" if shutil.which("nvidia-smi") is None
                 else "nvidia-smi lists none")
        return ProbeReport(TYPE, False, versions=versions, reason=(
            f"paddlepaddle {version} is a CPU build and no NVIDIA GPU was found ({where})"),
            fix="on a machine with an NVIDIA GPU and its driver, install paddlepaddle-gpu "
                "(docs/devices.md, NVIDIA)")
    driver = gpus[0].driver
    supported = nvidia.driver_cuda_version()
    found = "; ".join(g.describe() for g in gpus)
    return ProbeReport(TYPE, False, versions=versions, details=details, reason=(
        f"paddlepaddle {version} is a CPU build, so it cannot use the {len(gpus)} NVIDIA GPU(s) "
        f"found: {found} (driver {driver})"), fix=(
        f"replace it with the CUDA build of the same release: `pip uninstall -y paddlepaddle` "
        f"then `pip install paddlepaddle-gpu=={version}` from the wheel index the PaddlePaddle "
        f"install guide gives for a CUDA version"
        + (f" up to {supported}, the newest driver {driver} supports" if supported else
           f" that driver {driver} supports")))


def _no_device_report(versions: dict[str, str], gpus: list[nvidia.Gpu],
                      build_cuda: str | None) -> ProbeReport:
    masked = mask_reason(TYPE)
    if masked and not nvidia.apply_visible_mask(gpus, os.environ.get(VISIBLE_ENV)):
        reason, fix = masked
    elif not gpus:
        reason = "the CUDA build of paddlepaddle finds no GPU and nvidia-smi lists none"
        fix = "install the NVIDIA driver (nvidia-smi must list the GPU), or use another device"
    else:
        supported = nvidia.driver_cuda_version()
        reason = (f"CUDA finds no GPU although nvidia-smi lists {len(gpus)}: "
                  + "; ".join(g.describe() for g in gpus))
        fix = "check that the driver matches the CUDA version paddlepaddle-gpu was built for"
        if supported and build_cuda and _newer(build_cuda, supported):
            reason += (f"; paddlepaddle-gpu is built for CUDA {build_cuda} but driver "
                       f"{gpus[0].driver} supports CUDA up to {supported}")
            fix = (f"upgrade the NVIDIA driver, or install a paddlepaddle-gpu built for CUDA "
                   f"{supported} or older")
    return ProbeReport(TYPE, False, versions=versions, reason=reason, fix=fix,
                       details=[g.as_dict() for g in gpus])


def _newer(a: str, b: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split(".") if p.isdigit())
    return key(a) > key(b)


def probe() -> ProbeReport:
    installed = nvidia.list_gpus()  # the hardware, whatever the mask says
    gpus = nvidia.apply_visible_mask(installed, os.environ.get(VISIBLE_ENV))
    versions: dict[str, str] = {}
    if installed:
        versions["driver"] = installed[0].driver
    if (distribution_version(*FRAMEWORK_BUILDS) is None
            or importlib.util.find_spec("paddle") is None):
        return ProbeReport(TYPE, False, versions=versions, details=[g.as_dict() for g in gpus],
                           reason="paddlepaddle is not installed",
                           fix="install paddlepaddle-gpu (docs/devices.md, NVIDIA)")
    facts = framework_probe.framework_facts()
    if facts.error:
        return broken_framework(TYPE, facts)
    versions["paddlepaddle"] = str(facts.paddle_version)
    for key in ("version", "cudnn", "tensorrt"):
        if facts.cuda.get(key):
            versions["cuda" if key == "version" else key] = str(facts.cuda[key])
    clash = clashing_builds()
    if not facts.cuda.get("compiled"):
        report = _cpu_build_report(str(facts.paddle_version), versions, installed)
    elif not facts.cuda.get("count"):
        report = _no_device_report(versions, installed, facts.cuda.get("version"))
    else:
        details = [dict(g.as_dict(), id=i) for i, g in enumerate(gpus)]
        report = ProbeReport(TYPE, True, count=int(facts.cuda["count"]), versions=versions,
                             details=details)
    if clash and report.available:
        report.notes.append(clash)
    elif clash:
        report.reason += f"; {clash}"
    return report


@hookimpl
def probe_device(device_type: str) -> ProbeReport | None:
    return probe() if device_type == TYPE else None


def _dynamic_shapes(options: dict[str, Any], model) -> dict[str, list[list[int]]] | None:
    """``{input: [min, opt, max]}`` from the options, else from inference.yml's Hpi section
    (where PaddleX exports keep them)."""
    shapes = options.get("trt_dynamic_shapes")
    if shapes is None:
        hpi = (model.raw_config or {}).get("Hpi") or {}
        shapes = ((hpi.get("backend_configs") or {}).get("paddle_infer") or {}).get(
            "trt_dynamic_shapes")
    if shapes is None:
        return None
    if not isinstance(shapes, dict) or not all(
            isinstance(v, list) and len(v) == 3 for v in shapes.values()):
        raise UsageError(f"gpu option trt_dynamic_shapes must map each input name to "
                         f"[min, opt, max] shapes, got {shapes!r}")
    return shapes


def _trt_cache_dir(options: dict[str, Any], model) -> Path:
    target = Path(options.get("trt_cache_dir") or Path(model.model_dir) / CACHE_DIR_NAME)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{target}: cannot create the TensorRT engine cache ({exc.strerror}); "
                         f"set the gpu option trt_cache_dir to a writable folder") from exc
    return target


@hookimpl
def create_predictor(device: Device, device_id: int | None, model: ModelSpec,
                     options: dict[str, Any]) -> Predictor | None:
    if device.type != TYPE:
        return None
    from mlcls.paddle_engine import PaddlePredictor

    gpu_id = 0 if device_id is None else int(device_id)
    tensorrt = bool(options.get("tensorrt", False))
    precision_name = str(options.get("precision") or "fp32").lower()
    precision = precision_type(precision_name, TYPE, model)
    if precision_name == "fp16" and not tensorrt:
        raise UsageError("gpu option precision=fp16 needs tensorrt: true (devices.yaml or "
                         "device_options)")
    pool_mb = int(options.get("memory_pool_mb") or 512)
    shapes = _dynamic_shapes(options, model) if tensorrt else None
    cache = _trt_cache_dir(options, model) if tensorrt else None

    def configure(config) -> None:
        config.enable_use_gpu(pool_mb, gpu_id, precision)
        if not tensorrt:
            return
        config.enable_tensorrt_engine(
            workspace_size=int(options.get("trt_workspace_mb") or 1024) << 20,
            max_batch_size=int(options.get("trt_max_batch_size") or 8),
            min_subgraph_size=int(options.get("trt_min_subgraph_size") or 3),
            precision_mode=precision, use_static=True, use_calib_mode=False)
        config.set_optim_cache_dir(str(cache))
        if shapes:
            config.set_trt_dynamic_shape_info({k: v[0] for k, v in shapes.items()},
                                              {k: v[2] for k, v in shapes.items()},
                                              {k: v[1] for k, v in shapes.items()})
        else:
            log.info("gpu: TensorRT without dynamic shapes; each new batch shape rebuilds "
                     "the engine (set trt_dynamic_shapes)")

    return PaddlePredictor(model, configure, read_placement)


def read_placement(config) -> Placement:
    """Where the predictor runs, from the config after creation: a CPU build of Paddle answers
    ``use_gpu() == False`` even though ``enable_use_gpu`` was called."""
    if not config.use_gpu():
        return Placement("cpu", "Paddle ignored enable_use_gpu (use_gpu() is False after "
                                "configuration): this paddlepaddle is a CPU build")
    detail = f"CUDA, memory pool {config.memory_pool_init_size_mb()} MB"
    if config.tensorrt_engine_enabled():
        detail += f", TensorRT {config.tensorrt_precision_mode()}"
    return Placement(f"gpu:{config.gpu_device_id()}", detail)
