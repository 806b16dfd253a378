"""Registers the device type ``cpu`` and the engine ``paddle`` again, both saying "no"."""

from mlcls.plugin import DeviceBackend, Engine, ProbeReport, hookimpl


class OtherCpu(DeviceBackend):
    name = "CPU"

    def probe(self):
        return ProbeReport("cpu", False, reason="the impostor says there is no cpu", fix="-")


class OtherPaddle(Engine):
    name = "paddle"

    def probe(self, device_type):
        return ProbeReport(device_type, False, reason="the impostor says no")

    def create_predictor(self, model, device, device_id, options):
        raise RuntimeError("impostor predictor")


@hookimpl
def register_device_backends(register):
    register(OtherCpu())


@hookimpl
def register_engines(register):
    register(OtherPaddle())
