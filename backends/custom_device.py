"""Backends for accelerators that Paddle drives through a CustomDevice plugin (Ascend NPU,
Cambricon MLU...). A vendor describes its type with one ``CustomDeviceSpec`` and writes no code:
``CustomDevicePlugin(spec, description)`` is the plugin object its entry point names, and
registers a ``CustomDeviceBackend`` (the hardware: device nodes counted after the visible-device
mask). The Paddle engine runs on any type whose backend carries a ``custom_device`` spec (it
checks that the plugin wheel is installed, loaded by Paddle and built for its release)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from mlcls.plugin import DeviceBackend, ProbeReport, hookimpl

from . import hardware


@dataclass(frozen=True)
class CustomDeviceSpec:
    """One CustomDevice-backed type."""

    type: str
    distribution: str  # the Paddle plugin wheel, e.g. paddle-custom-npu
    vendor: str  # e.g. "Ascend"
    toolkit: str  # the vendor SDK the plugin needs, for the fix text
    smi: str  # the vendor's device-listing tool
    nodes: str = ""  # the driver's device nodes, e.g. /dev/davinci[0-9]*
    visible_env: str | None = None  # the vendor's visible-device mask
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


class CustomDeviceBackend(DeviceBackend):
    """The hardware of one CustomDevice-backed type."""

    def __init__(self, spec: CustomDeviceSpec, description: str):
        self.custom_device = spec
        self.name = spec.type
        self.description = description
        self.fallback = ("cpu",)
        self.visible_env = spec.visible_env

    def probe(self) -> ProbeReport:
        spec = self.custom_device
        vendor = f"{spec.vendor} {spec.type.upper()}"
        report = hardware.node_probe(spec.type, vendor, spec.nodes or f"/dev/{spec.type}*",
                                     spec.visible_env, spec.smi)
        report.versions.update(sdk_versions(spec))
        return report

    def framework_device(self, device_id: int | None) -> str:
        return f"{self.custom_device.type}:{device_id or 0}"


class CustomDevicePlugin:
    """The plugin object of one CustomDevice-backed type (its entry point names it)."""

    def __init__(self, spec: CustomDeviceSpec, description: str):
        self.spec = spec
        self.description = description

    @hookimpl
    def register_device_backends(self, register) -> None:
        register(CustomDeviceBackend(self.spec, self.description))
