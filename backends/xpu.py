"""The Kunlunxin XPU backend: a paddlepaddle XPU build (``paddlepaddle-xpu``, a separate build of
the framework, not a plugin), one predictor per XPU id."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlcls import hookimpl
from mlcls.devices import Device, DeviceTypeInfo, ProbeReport
from mlcls.errors import DeviceError
from mlcls.interfaces import Placement

from . import framework_probe
from .paddle_device import (
    FRAMEWORK_BUILDS,
    apply_env,
    broken_framework,
    clashing_builds,
    distribution_version,
    mask_reason,
)

if TYPE_CHECKING:
    from mlcls.interfaces import Predictor
    from mlcls.model import ModelSpec

TYPE = "xpu"
INSTALL = "install paddlepaddle-xpu of the same release (docs/devices.md, Kunlunxin)"


@hookimpl
def register_device_types(register: Callable[[DeviceTypeInfo], None]) -> None:
    register(DeviceTypeInfo(TYPE, "Kunlunxin XPU through a paddlepaddle XPU build"))


@hookimpl
def prepare_environment(device: Device, options: dict[str, Any]) -> None:
    if device.type == TYPE:
        apply_env(TYPE)


def probe() -> ProbeReport:
    if (distribution_version(*FRAMEWORK_BUILDS) is None
            or importlib.util.find_spec("paddle") is None):
        return ProbeReport(TYPE, False, reason="paddlepaddle is not installed",
                           fix=INSTALL.replace("of the same release ", ""))
    facts = framework_probe.framework_facts()
    if facts.error:
        return broken_framework(TYPE, facts)
    versions = {"paddlepaddle": str(facts.paddle_version)}
    if facts.xpu.get("version"):
        versions["xpu_runtime"] = str(facts.xpu["version"])
    if not facts.xpu.get("compiled"):
        clash = clashing_builds()
        return ProbeReport(TYPE, False, versions=versions, reason=(
            f"paddlepaddle {facts.paddle_version} is not an XPU build"
            + (f"; {clash}" if clash else "")),
            fix=f"`pip uninstall -y paddlepaddle`, then {INSTALL}")
    count = int(facts.xpu.get("count") or 0)
    if count == 0:
        reason, fix = mask_reason(TYPE) or (
            "the XPU build of paddlepaddle finds no XPU",
            "check the Kunlunxin driver (xpu-smi must list the card)")
        return ProbeReport(TYPE, False, versions=versions, reason=reason, fix=fix)
    return ProbeReport(TYPE, True, count=count, versions=versions)


@hookimpl
def probe_device(device_type: str) -> ProbeReport | None:
    return probe() if device_type == TYPE else None


@hookimpl
def create_predictor(device: Device, device_id: int | None, model: ModelSpec,
                     options: dict[str, Any]) -> Predictor | None:
    if device.type != TYPE:
        return None
    from mlcls.paddle_engine import PaddlePredictor

    xpu_id = 0 if device_id is None else int(device_id)

    def configure(config) -> None:
        try:
            config.enable_xpu()
        except RuntimeError as exc:  # a build without XPU refuses here, unlike the GPU call
            raise DeviceError(f"device 'xpu:{xpu_id}': this paddlepaddle build cannot run on "
                              f"an XPU ({str(exc).strip().splitlines()[0]}); {INSTALL}"
                              ) from exc
        config.set_xpu_device_id(xpu_id)

    return PaddlePredictor(model, configure, read_placement)


def read_placement(config) -> Placement:
    if not config.use_xpu():
        return Placement("cpu", "Paddle did not keep the XPU setting (use_xpu() is False)")
    return Placement(f"xpu:{config.xpu_device_id()}", "Kunlunxin XPU")
