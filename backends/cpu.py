"""The CPU backend: Paddle Inference on the host, with oneDNN where the build has it."""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from typing import Any

from mlcls import hookimpl
from mlcls.devices import DeviceTypeInfo, ProbeReport
from mlcls.interfaces import Placement

TYPE = "cpu"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def paddle_version() -> str | None:
    try:
        return metadata.version("paddlepaddle")
    except metadata.PackageNotFoundError:
        return None


@hookimpl
def register_device_types(register):
    register(DeviceTypeInfo(TYPE, "Host CPU through Paddle Inference"))


@hookimpl
def probe_device(device_type: str) -> ProbeReport | None:
    if device_type != TYPE:
        return None
    version = paddle_version()
    if version is None or importlib.util.find_spec("paddle") is None:
        return ProbeReport(TYPE, False, reason="paddlepaddle is not installed",
                           fix="pip install paddlepaddle (or: pip install mlcls[cpu])")
    return ProbeReport(TYPE, True, count=available_cores(),
                       versions={"paddlepaddle": version})


@hookimpl
def prepare_environment(device, options):
    if device.type != TYPE:
        return
    blocktime = options.get("omp_blocktime_ms")
    if blocktime is not None:
        # Paddle's OpenMP runtime reads this when it starts. Its default lets idle threads
        # spin for 200 ms after the network ran, taking a core from decoding the next image
        # and from anything else on a shared machine; sleeping at once (0) makes every
        # parallel region wake them and runs slower on free cores. 1 ms keeps them hot
        # through one inference only; docs/performance.md has the measurements. A value
        # already in the environment wins.
        os.environ.setdefault("KMP_BLOCKTIME", str(int(blocktime)))


def thread_count(options: dict[str, Any]) -> int:
    threads = int(options.get("threads") or 0)
    return threads if threads > 0 else available_cores()


@hookimpl
def create_predictor(device, device_id, model, options):
    if device.type != TYPE:
        return None
    from mlcls.paddle_engine import PaddlePredictor

    threads = thread_count(options)
    use_mkldnn = bool(options.get("mkldnn", True))

    def configure(config) -> None:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        if use_mkldnn:
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(int(options.get("mkldnn_cache_capacity", 10)))
        else:
            config.disable_mkldnn()

    return PaddlePredictor(model, configure, lambda config: read_placement(config, device_id))


def read_placement(config, device_id: int | None = None) -> Placement:
    """Where a CPU predictor runs, as its config reports after creation. ``cpu:0,1`` asks for
    one engine per id (each with its own threads), so an id asked is an id reported."""
    if config.use_gpu():
        return Placement(f"gpu:{config.gpu_device_id()}", "engine reports a GPU")
    kernels = "oneDNN" if config.mkldnn_enabled() else "native kernels"
    where = TYPE if device_id is None else f"{TYPE}:{device_id}"
    return Placement(where, f"{kernels}, {config.cpu_math_library_num_threads()} threads")
