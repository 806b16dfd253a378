"""The Ascend NPU backend: Paddle's CustomDevice plugin ``paddle-custom-npu`` (on the CANN
toolkit). Ids are counted after ``ASCEND_RT_VISIBLE_DEVICES``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlcls import hookimpl
from mlcls.devices import Device, DeviceTypeInfo, ProbeReport

from . import custom_device
from .paddle_device import apply_env

if TYPE_CHECKING:
    from mlcls.interfaces import Predictor
    from mlcls.model import ModelSpec

SPEC = custom_device.CustomDeviceSpec(
    type="npu", distribution="paddle-custom-npu", vendor="Ascend", toolkit="CANN toolkit",
    smi="npu-smi", version_files=(
        # ASCEND_TOOLKIT_HOME is exported by the toolkit's set_env.sh
        ("cann", "$ASCEND_TOOLKIT_HOME/{arch}-linux/ascend_toolkit_install.info"),
        ("ascend_driver", "/usr/local/Ascend/driver/version.info"),
    ))


@hookimpl
def register_device_types(register: Callable[[DeviceTypeInfo], None]) -> None:
    register(DeviceTypeInfo(SPEC.type, "Ascend NPU through the paddle-custom-npu plugin"))


@hookimpl
def prepare_environment(device: Device, options: dict[str, Any]) -> None:
    if device.type == SPEC.type:
        apply_env(SPEC.type)


@hookimpl
def probe_device(device_type: str) -> ProbeReport | None:
    return custom_device.probe(SPEC) if device_type == SPEC.type else None


@hookimpl
def create_predictor(device: Device, device_id: int | None, model: ModelSpec,
                     options: dict[str, Any]) -> Predictor | None:
    if device.type != SPEC.type:
        return None
    return custom_device.create_predictor(SPEC, device_id, model, options)
