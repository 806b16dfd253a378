"""The built-in ``cpu`` plugin: the host CPU, and the Paddle Inference engine (registered here
so that the engine the CPU relies on is as essential as the CPU itself)."""

from __future__ import annotations

from mlcls.plugin import DeviceBackend, ProbeReport, available_cores, hookimpl

from .paddle_engine import PaddleEngine

TYPE = "cpu"


class CpuBackend(DeviceBackend):
    name = TYPE
    description = "Host CPU"
    aliases = ("host",)

    def probe(self) -> ProbeReport:
        return ProbeReport(TYPE, True, count=available_cores())

    def framework_device(self, device_id: int | None) -> str:
        return TYPE


@hookimpl
def register_device_backends(register):
    register(CpuBackend())


@hookimpl
def register_engines(register):
    register(PaddleEngine())
