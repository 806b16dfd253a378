"""What the npu and mlu backends share: Paddle's CustomDevice API.

A CustomDevice plugin (``paddle-custom-npu``, ``paddle-custom-mlu``) is a separate wheel that
Paddle loads when it is imported; it must be built for the installed Paddle release. Asking
Paddle Inference for a custom device type that no plugin registered aborts the process, so the
predictor is only created after the type is confirmed registered in this process.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

from mlcls import hookimpl
from mlcls.devices import Device, DeviceTypeInfo, ProbeReport
from mlcls.errors import DeviceError
from mlcls.interfaces import Placement

from . import framework_probe
from .paddle_device import (
    FRAMEWORK_BUILDS,
    apply_env,
    broken_framework,
    distribution_version,
    mask_reason,
    precision_type,
    skew,
)


@dataclass(frozen=True)
class CustomDeviceSpec:
    """One CustomDevice-backed type."""

    type: str
    distribution: str  # the plugin wheel, e.g. paddle-custom-npu
    vendor: str  # e.g. "Ascend"
    toolkit: str  # the vendor SDK the plugin needs, for the fix text
    smi: str  # the vendor's device-listing tool
    # (label, file) pairs holding ``version=...`` lines of the vendor SDK/driver; ``$VAR`` and
    # ``{arch}`` are filled in, and a file under an unset variable is skipped
    version_files: tuple[tuple[str, str], ...] = ()

    @property
    def install(self) -> str:
        return (f"install {self.distribution} built for your paddlepaddle release, with the "
                f"{self.toolkit} it needs (docs/devices.md, {self.vendor})")


def sdk_versions(spec: CustomDeviceSpec) -> dict[str, str]:
    """The vendor SDK/driver versions that its install files state (best effort: the SDK is
    never imported for this)."""
    found = {}
    for label, pattern in spec.version_files:
        path = os.path.expandvars(pattern.replace("{arch}", platform.machine()))
        if "$" in path:
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    key, sep, value = line.partition("=")
                    if sep and key.strip().lower() == "version" and value.strip():
                        found[label] = value.strip()
                        break
        except OSError:
            continue
    return found


def probe(spec: CustomDeviceSpec) -> ProbeReport:
    plugin_version = distribution_version(spec.distribution)
    paddle_version = distribution_version(*FRAMEWORK_BUILDS)
    versions = {k: v for k, v in (("paddlepaddle", paddle_version),
                                  (spec.distribution, plugin_version)) if v}
    versions.update(sdk_versions(spec))
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


def create_predictor(spec: CustomDeviceSpec, device_id: int | None, model: Any,
                     options: dict[str, Any]):
    from mlcls.paddle_engine import PaddlePredictor, import_paddle_inference

    import_paddle_inference()  # loads the CustomDevice plugins
    dev_id = 0 if device_id is None else int(device_id)
    if spec.type not in _registered_types():
        raise DeviceError(f"device '{spec.type}:{dev_id}': no CustomDevice plugin registered "
                          f"'{spec.type}' with the Paddle imported in this process; "
                          f"{spec.install}")
    precision = precision_type(options.get("precision"), spec.type, model)

    def configure(config) -> None:
        config.enable_custom_device(spec.type, dev_id, precision)

    return PaddlePredictor(model, configure, lambda config: read_placement(spec, dev_id, config))


def read_placement(spec: CustomDeviceSpec, asked_id: int, config) -> Placement:
    """The config's own answer where the Paddle build exposes it; otherwise the id asked of a
    plugin that was confirmed registered (some builds do not bind ``use_custom_device``)."""
    if hasattr(config, "use_custom_device"):
        if not config.use_custom_device():
            return Placement("cpu", "Paddle did not keep the custom-device setting")
        return Placement(f"{config.custom_device_type()}:{config.custom_device_id()}",
                         f"CustomDevice {spec.distribution}")
    if spec.type not in _registered_types():
        return Placement("cpu", f"no CustomDevice plugin registered '{spec.type}'")
    return Placement(f"{spec.type}:{asked_id}", f"CustomDevice {spec.distribution} (asked; "
                                                "this Paddle build has no read-back)")


class CustomDevicePlugin:
    """The hooks of a backend on a Paddle CustomDevice plugin. The npu and mlu backends are
    instances (their entry points name the instance); a vendor with another CustomDevice
    plugin gets a backend from one ``CustomDeviceSpec``."""

    def __init__(self, spec: CustomDeviceSpec, description: str):
        self.spec = spec
        self.description = description

    @hookimpl
    def register_device_types(self, register) -> None:
        register(DeviceTypeInfo(self.spec.type, self.description))

    @hookimpl
    def prepare_environment(self, device: Device, options: dict[str, Any]) -> None:
        if device.type == self.spec.type:
            apply_env(self.spec.type)

    @hookimpl
    def probe_device(self, device_type: str) -> ProbeReport | None:
        return probe(self.spec) if device_type == self.spec.type else None

    @hookimpl
    def create_predictor(self, device: Device, device_id: int | None, model: Any,
                         options: dict[str, Any]):
        if device.type != self.spec.type:
            return None
        return create_predictor(self.spec, device_id, model, options)
