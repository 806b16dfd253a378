"""The ``paddle`` engine: Paddle Inference, on every device type Paddle can drive.

All of mlcls's Paddle knowledge about devices lives here and in ``paddle_device`` (build and
version facts) and ``framework_probe`` (what the installed build can do, asked in a child
process): per type, the probe (CPU: installed; gpu: a CUDA build that finds the GPUs; xpu: an
XPU build; CustomDevice types such as npu/mlu: the plugin wheel installed, loaded by Paddle and
built for its release), the ``paddle.inference.Config`` calls, and the placement read back from
the config after creation (a CPU build of Paddle quietly ignores ``enable_use_gpu``).
Paddle itself is imported only when a predictor is built.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcls.plugin import (
    Device,
    DeviceError,
    Engine,
    ModelError,
    Placement,
    ProbeReport,
    UsageError,
    available_cores,
)

from . import framework_probe, nvidia
from .paddle_device import (
    FRAMEWORK_BUILDS,
    broken_framework,
    clashing_builds,
    distribution_version,
    mask_reason,
    precision_type,
    skew,
)

if TYPE_CHECKING:
    from mlcls.model import ModelSpec
    from mlcls.plugin import Predictor

    from .custom_device import CustomDeviceSpec

log = logging.getLogger(__name__)

NAME = "paddle"
CACHE_DIR_NAME = ".mlcls_trt_cache"
XPU_INSTALL = "install paddlepaddle-xpu of the same release (docs/devices.md, Kunlunxin)"


def _not_installed(device_type: str, fix: str) -> ProbeReport | None:
    if (distribution_version(*FRAMEWORK_BUILDS) is None
            or importlib.util.find_spec("paddle") is None):
        return ProbeReport(device_type, False, reason="paddlepaddle is not installed", fix=fix)
    return None


def custom_spec(device_type: str) -> CustomDeviceSpec | None:
    """The CustomDevice description of ``device_type``'s backend, when it has one."""
    from mlcls.plugins import backend

    owner, _ = backend(device_type)
    return getattr(owner, "custom_device", None)


# -- cpu -----------------------------------------------------------------------------------------


def probe_cpu() -> ProbeReport:
    missing = _not_installed("cpu", "pip install paddlepaddle (or: pip install mlcls[cpu])")
    if missing:
        return missing
    return ProbeReport("cpu", True, count=available_cores(),
                       versions={"paddlepaddle": str(distribution_version(*FRAMEWORK_BUILDS))})


def thread_count(options: dict[str, Any]) -> int:
    threads = int(options.get("threads") or 0)
    return threads if threads > 0 else available_cores()


def cpu_predictor(model: ModelSpec, device_id: int | None, options: dict[str, Any]):
    from mlcls.paddle_engine import PaddlePredictor

    threads = thread_count(options)
    use_mkldnn = bool(options.get("mkldnn", True))

    def configure_for(mkldnn: bool):
        def configure(config) -> None:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads)
            if mkldnn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(int(options.get("mkldnn_cache_capacity", 10)))
            else:
                config.disable_mkldnn()
        return configure

    note = ""
    if use_mkldnn:
        try:
            return PaddlePredictor(model, configure_for(True),
                                   lambda config: cpu_placement(config, device_id))
        except ModelError as exc:
            # Paddle 3.3's oneDNN passes refuse some programs at creation; its native kernels
            # run them (slower). A model that is simply broken fails again below, as itself.
            note = f"oneDNN failed at predictor creation ({exc}); running on native kernels"
            log.warning("%s: %s", model.model_dir, note)
    return PaddlePredictor(model, configure_for(False),
                           lambda config: cpu_placement(config, device_id, note))


def cpu_placement(config, device_id: int | None = None, note: str = "") -> Placement:
    """Where a CPU predictor runs, as its config reports after creation. ``cpu:0,1`` asks for
    one engine per id (each with its own threads), so an id asked is an id reported. ``note``
    records a fallback from oneDNN to native kernels."""
    if config.use_gpu():
        return Placement(f"gpu:{config.gpu_device_id()}", "engine reports a GPU", NAME)
    kernels = "oneDNN" if config.mkldnn_enabled() else "native kernels"
    where = "cpu" if device_id is None else f"cpu:{device_id}"
    detail = f"{kernels}, {config.cpu_math_library_num_threads()} threads"
    return Placement(where, detail + (f"; WARNING: {note}" if note else ""), NAME)


# -- gpu -----------------------------------------------------------------------------------------


def _cpu_build_report(version: str, versions: dict[str, str],
                      gpus: list[nvidia.Gpu]) -> ProbeReport:
    details = [g.as_dict() for g in gpus]
    if not gpus:
        where = ("nvidia-smi is not on PATH" if shutil.which("nvidia-smi") is None
                 else "nvidia-smi lists none")
        return ProbeReport("gpu", False, versions=versions, reason=(
            f"paddlepaddle {version} is a CPU build and no NVIDIA GPU was found ({where})"),
            fix="on a machine with an NVIDIA GPU and its driver, install paddlepaddle-gpu "
                "(docs/devices.md, NVIDIA)")
    driver = gpus[0].driver
    supported = nvidia.driver_cuda_version()
    found = "; ".join(g.describe() for g in gpus)
    return ProbeReport("gpu", False, versions=versions, details=details, reason=(
        f"paddlepaddle {version} is a CPU build, so it cannot use the {len(gpus)} NVIDIA GPU(s) "
        f"found: {found} (driver {driver})"), fix=(
        f"replace it with the CUDA build of the same release: `pip uninstall -y paddlepaddle` "
        f"then `pip install paddlepaddle-gpu=={version}` from the wheel index the PaddlePaddle "
        f"install guide gives for a CUDA version"
        + (f" up to {supported}, the newest driver {driver} supports" if supported else
           f" that driver {driver} supports")))


def _newer(a: str, b: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split(".") if p.isdigit())
    return key(a) > key(b)


def _no_device_report(versions: dict[str, str], gpus: list[nvidia.Gpu],
                      build_cuda: str | None) -> ProbeReport:
    masked = mask_reason("gpu")
    if masked and not nvidia.apply_visible_mask(gpus, os.environ.get("CUDA_VISIBLE_DEVICES")):
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
    return ProbeReport("gpu", False, versions=versions, reason=reason, fix=fix,
                       details=[g.as_dict() for g in gpus])


def probe_gpu() -> ProbeReport:
    """Whether this Paddle build can use the GPUs: a CUDA build that finds them."""
    installed = nvidia.list_gpus()
    gpus = nvidia.apply_visible_mask(installed, os.environ.get("CUDA_VISIBLE_DEVICES"))
    versions: dict[str, str] = {}
    if installed:
        versions["driver"] = installed[0].driver
    missing = _not_installed("gpu", "install paddlepaddle-gpu (docs/devices.md, NVIDIA)")
    if missing:
        missing.versions = versions
        return missing
    facts = framework_probe.framework_facts()
    if facts.error:
        return broken_framework("gpu", facts)
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
        report = ProbeReport("gpu", True, count=int(facts.cuda["count"]), versions=versions,
                             details=details)
    if clash and report.available:
        report.notes.append(clash)
    elif clash:
        report.reason += f"; {clash}"
    return report


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


def gpu_predictor(model: ModelSpec, device_id: int | None, options: dict[str, Any]):
    from mlcls.paddle_engine import PaddlePredictor

    gpu_id = 0 if device_id is None else int(device_id)
    tensorrt = bool(options.get("tensorrt", False))
    precision_name = str(options.get("precision") or "fp32").lower()
    precision = precision_type(precision_name, "gpu")
    if precision_name == "fp16" and not tensorrt:
        raise UsageError("gpu option precision=fp16 needs tensorrt: true (devices.yaml "
                         "engines.paddle.options.gpu, or device_options)")
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

    return PaddlePredictor(model, configure, gpu_placement)


def gpu_placement(config) -> Placement:
    """Where the predictor runs, from the config after creation: a CPU build of Paddle answers
    ``use_gpu() == False`` even though ``enable_use_gpu`` was called."""
    if not config.use_gpu():
        return Placement("cpu", "Paddle ignored enable_use_gpu (use_gpu() is False after "
                                "configuration): this paddlepaddle is a CPU build", NAME)
    detail = f"CUDA, memory pool {config.memory_pool_init_size_mb()} MB"
    if config.tensorrt_engine_enabled():
        detail += f", TensorRT {config.tensorrt_precision_mode()}"
    return Placement(f"gpu:{config.gpu_device_id()}", detail, NAME)


# -- xpu -----------------------------------------------------------------------------------------


def probe_xpu() -> ProbeReport:
    missing = _not_installed("xpu", XPU_INSTALL.replace("of the same release ", ""))
    if missing:
        return missing
    facts = framework_probe.framework_facts()
    if facts.error:
        return broken_framework("xpu", facts)
    versions = {"paddlepaddle": str(facts.paddle_version)}
    if facts.xpu.get("version"):
        versions["xpu_runtime"] = str(facts.xpu["version"])
    if not facts.xpu.get("compiled"):
        clash = clashing_builds()
        return ProbeReport("xpu", False, versions=versions, reason=(
            f"paddlepaddle {facts.paddle_version} is not an XPU build"
            + (f"; {clash}" if clash else "")),
            fix=f"`pip uninstall -y paddlepaddle`, then {XPU_INSTALL}")
    count = int(facts.xpu.get("count") or 0)
    if count == 0:
        reason, fix = mask_reason("xpu") or (
            "the XPU build of paddlepaddle finds no XPU",
            "check the Kunlunxin driver (xpu-smi must list the card)")
        return ProbeReport("xpu", False, versions=versions, reason=reason, fix=fix)
    return ProbeReport("xpu", True, count=count, versions=versions)


def xpu_predictor(model: ModelSpec, device_id: int | None, options: dict[str, Any]):
    from mlcls.paddle_engine import PaddlePredictor

    xpu_id = 0 if device_id is None else int(device_id)

    def configure(config) -> None:
        try:
            config.enable_xpu()
        except RuntimeError as exc:  # a build without XPU refuses here, unlike the GPU call
            raise DeviceError(f"device 'xpu:{xpu_id}': this paddlepaddle build cannot run on "
                              f"an XPU ({str(exc).strip().splitlines()[0]}); {XPU_INSTALL}"
                              ) from exc
        config.set_xpu_device_id(xpu_id)

    return PaddlePredictor(model, configure, xpu_placement)


def xpu_placement(config) -> Placement:
    if not config.use_xpu():
        return Placement("cpu", "Paddle did not keep the XPU setting (use_xpu() is False)", NAME)
    return Placement(f"xpu:{config.xpu_device_id()}", "Kunlunxin XPU", NAME)


# -- CustomDevice types (npu, mlu, a vendor's own) -----------------------------------------------


def probe_custom(spec: CustomDeviceSpec) -> ProbeReport:
    plugin_version = distribution_version(spec.distribution)
    paddle_version = distribution_version(*FRAMEWORK_BUILDS)
    versions = {k: v for k, v in (("paddlepaddle", paddle_version),
                                  (spec.distribution, plugin_version)) if v}
    if plugin_version is None:
        # no plugin, nothing for Paddle to load: no child process needed to say so
        return ProbeReport(spec.type, False, versions=versions,
                           reason=f"the {spec.distribution} plugin is not installed",
                           fix=spec.install)
    if paddle_version is None:
        return ProbeReport(spec.type, False, versions=versions,
                           reason="paddlepaddle is not installed",
                           fix=f"install paddlepaddle of the release {spec.distribution} "
                               f"{plugin_version} was built for")
    skewed = skew(spec.distribution, plugin_version, paddle_version)
    facts = framework_probe.framework_facts()
    if facts.error:
        report = broken_framework(spec.type, facts)
        if skewed:
            report.reason += f"; {skewed}"
            report.fix = f"install matching releases: {spec.install}"
        report.versions = versions
        return report
    if spec.type not in facts.custom.get("types", ()):
        reason = f"{spec.distribution} {plugin_version} is installed but Paddle did not load it"
        problem = facts.problems.get("custom.types")
        reason += f" ({problem})" if problem else ""
        reason += f"; {skewed}" if skewed else ""
        return ProbeReport(spec.type, False, versions=versions, reason=reason,
                           fix=f"install matching releases: {spec.install}" if skewed
                           else f"check the {spec.toolkit} environment, then {spec.install}")
    count = facts.custom_count(spec.type)
    if count == 0:
        reason, fix = mask_reason(spec.type) or (
            f"{spec.distribution} is loaded but finds no {spec.type.upper()}",
            f"check the {spec.vendor} driver ({spec.smi} must list the card)")
        return ProbeReport(spec.type, False, versions=versions, reason=reason, fix=fix)
    return ProbeReport(spec.type, True, count=count, versions=versions,
                       notes=[skewed] if skewed else [])


def _registered_types() -> list[str]:
    import paddle

    return [str(t) for t in paddle.device.get_all_custom_device_type()]


def custom_predictor(spec: CustomDeviceSpec, model: ModelSpec, device_id: int | None,
                     options: dict[str, Any]):
    from mlcls.paddle_engine import PaddlePredictor, import_paddle_inference

    import_paddle_inference()  # loads the CustomDevice plugins
    dev_id = 0 if device_id is None else int(device_id)
    if spec.type not in _registered_types():
        raise DeviceError(f"device '{spec.type}:{dev_id}': no CustomDevice plugin registered "
                          f"'{spec.type}' with the Paddle imported in this process; "
                          f"{spec.install}")
    precision = precision_type(options.get("precision"), spec.type)

    def configure(config) -> None:
        config.enable_custom_device(spec.type, dev_id, precision)

    return PaddlePredictor(model, configure, lambda config: custom_placement(spec, dev_id,
                                                                             config))


def custom_placement(spec: CustomDeviceSpec, asked_id: int, config) -> Placement:
    """The config's own answer where the Paddle build exposes it; otherwise the id asked of a
    plugin that was confirmed registered (some builds do not bind ``use_custom_device``)."""
    if hasattr(config, "use_custom_device"):
        if not config.use_custom_device():
            return Placement("cpu", "Paddle did not keep the custom-device setting", NAME)
        return Placement(f"{config.custom_device_type()}:{config.custom_device_id()}",
                         f"CustomDevice {spec.distribution}", NAME)
    if spec.type not in _registered_types():
        return Placement("cpu", f"no CustomDevice plugin registered '{spec.type}'", NAME)
    return Placement(f"{spec.type}:{asked_id}", f"CustomDevice {spec.distribution} (asked; "
                                                "this Paddle build has no read-back)", NAME)


# -- the engine ----------------------------------------------------------------------------------


class PaddleEngine(Engine):
    name = NAME
    description = "Paddle Inference (cpu, gpu, xpu, CustomDevice types)"

    def model_problem(self, model: ModelSpec) -> str | None:
        graph = getattr(model, "graph_file", None)
        if graph is None or Path(graph).suffix not in (".json", ".pdmodel"):
            return (f"Paddle Inference reads inference.json or inference.pdmodel, and "
                    f"{getattr(model, 'model_dir', 'the model')} has neither")
        return None

    def probe(self, device_type: str) -> ProbeReport:
        if device_type == "cpu":
            return probe_cpu()
        if device_type == "gpu":
            return probe_gpu()
        if device_type == "xpu":
            return probe_xpu()
        spec = custom_spec(device_type)
        if spec is not None:
            return probe_custom(spec)
        return ProbeReport(device_type, False,
                           reason=f"Paddle Inference does not run on '{device_type}'",
                           fix="use an engine made for it (`mlcls devices` shows which can)")

    def environment(self, device_type: str, options: dict[str, Any]) -> dict[str, str]:
        blocktime = options.get("omp_blocktime_ms")
        if device_type != "cpu" or blocktime is None:
            return {}
        # Paddle's OpenMP runtime reads this when it starts. Its default lets idle threads
        # spin for 200 ms after the network ran, taking a core from decoding the next image
        # and from anything else on a shared machine; sleeping at once (0) makes every
        # parallel region wake them and runs slower on free cores. 1 ms keeps them hot
        # through one inference only; docs/performance.md has the measurements.
        return {"KMP_BLOCKTIME": str(int(blocktime))}

    def create_predictor(self, model: ModelSpec, device: Device, device_id: int | None,
                         options: dict[str, Any]) -> Predictor:
        if device.type == "cpu":
            return cpu_predictor(model, device_id, options)
        if device.type == "gpu":
            return gpu_predictor(model, device_id, options)
        if device.type == "xpu":
            return xpu_predictor(model, device_id, options)
        spec = custom_spec(device.type)
        if spec is None:
            raise DeviceError(f"Paddle Inference does not run on '{device.type}'")
        return custom_predictor(spec, model, device_id, options)


__all__ = ["PaddleEngine", "ModelError"]
