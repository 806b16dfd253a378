"""The Kunlunxin XPU backend: the hardware only (the driver's device nodes, counted after
``XPU_VISIBLE_DEVICES``). Running on it is the engines' business: Paddle needs its XPU build."""

from __future__ import annotations

from mlcls.plugin import DeviceBackend, ProbeReport, hookimpl

from . import hardware

TYPE = "xpu"
VISIBLE_ENV = "XPU_VISIBLE_DEVICES"
NODES = "/dev/xpu[0-9]*"


class XpuBackend(DeviceBackend):
    name = TYPE
    description = "Kunlunxin XPU"
    aliases = ("kunlun", "kunlunxin")
    fallback = ("cpu",)
    visible_env = VISIBLE_ENV

    def probe(self) -> ProbeReport:
        return hardware.node_probe(TYPE, "Kunlunxin XPU", NODES, VISIBLE_ENV, "xpu-smi")

    def framework_device(self, device_id: int | None) -> str:
        return f"{TYPE}:{device_id or 0}"


@hookimpl
def register_device_backends(register):
    register(XpuBackend())
