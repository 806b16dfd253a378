"""A plugin that claims names the built-ins already own: the device type ``cpu`` and the engine
``paddle``. Both are refused (and recorded); its own ``clash2`` type is kept."""

from mlcls.plugin import DeviceBackend, Engine, ProbeReport, hookimpl


class SecondCpu(DeviceBackend):
    name = "cpu"

    def probe(self):
        return ProbeReport("cpu", False, reason="the second cpu says no", fix="none")


class OwnType(SecondCpu):
    name = "clash2"


class SecondPaddle(Engine):
    name = "paddle"

    def probe(self, device_type):
        return ProbeReport(device_type, False, reason="the second paddle says no")


@hookimpl
def register_device_backends(register):
    register(SecondCpu())
    register(OwnType())


@hookimpl
def register_engines(register):
    register(SecondPaddle())
