"""The hooks a device backend implements.

Every built-in backend (cpu, gpu, xpu, npu, mlu) is an ordinary plugin: a module listed under
the entry-point group ``mlcls.backends`` whose functions carry ``@mlcls.hookimpl``. Hooks take
keyword arguments only. A hook that concerns one device type receives ``device_type`` and must
return ``None`` for types it does not own, so that the owner's answer is the one taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .devices import Device, DeviceTypeInfo, ProbeReport
    from .interfaces import Placement, Postprocessor, Predictor, Preprocessor
    from .model import ModelSpec

from .plugin import hookimpl, hookspec  # noqa: F401 - one pair of markers for both


@hookspec
def register_device_types(register: Callable[[DeviceTypeInfo], None]) -> None:
    """Declare the device types this plugin runs on.

    Call ``register(DeviceTypeInfo(name=..., description=..., aliases=(...),
    fallback=("cpu",)))`` once per type. The aliases and fallback chain given here apply
    unless devices.yaml describes the type, which then wins (it also holds priority, env and
    options). Must be cheap: import no vendor SDK or framework here.
    """


@hookspec
def prepare_environment(device: Device, options: dict[str, Any]) -> None:
    """Set what the framework reads at import time, before Paddle is imported for ``device``.

    Vendor flags, op black-lists and visible-device variables belong here. Called once per
    resolved device, before ``create_predictor``. Types you do not own: do nothing.
    """


@hookspec(firstresult=True)
def probe_device(device_type: str) -> ProbeReport | None:
    """Report whether ``device_type`` can run here: availability, device count (after any
    visible-device mask), framework/SDK/driver versions, and when unavailable the reason and
    the fix. Must not crash when the vendor SDK is missing or broken. Return ``None`` for types
    you do not own.
    """


@hookspec
def check_capability(device: Device, model: ModelSpec) -> str | None:
    """Return a sentence saying why ``model`` cannot run on ``device``, or ``None`` if it can
    (or if the type is not yours). Every plugin is asked; any refusal blocks the device.
    """


@hookspec(firstresult=True)
def create_predictor(device: Device, device_id: int | None, model: ModelSpec,
                     options: dict[str, Any]) -> Predictor | None:
    """Build the inference engine for ``model`` on one id of ``device`` (``None`` for devices
    without ids, such as the CPU). ``options`` are the type's options from devices.yaml,
    overridden by the user's. Return ``None`` for types you do not own.
    """


@hookspec(firstresult=True)
def create_preprocessor(device: Device, model: ModelSpec) -> Preprocessor | None:
    """Return a preprocessor for ``device`` to replace the core's numpy one, or ``None`` to
    keep the default (which is registered ``trylast``)."""


@hookspec(firstresult=True)
def create_postprocessor(device: Device, model: ModelSpec) -> Postprocessor | None:
    """Return a postprocessor for ``device`` to replace the core's numpy one, or ``None`` to
    keep the default (which is registered ``trylast``)."""


@hookspec(firstresult=True)
def verify_placement(device: Device, predictor: Predictor) -> Placement | None:
    """Read back where ``predictor`` really runs (engines can fall back to the CPU on their
    own). Return ``None`` for types you do not own; the core then trusts
    ``predictor.placement()``."""


@hookspec
def on_fallback(requested: str, used: str, reason: str) -> None:
    """Told each time a requested device could not be used and another was taken instead."""
