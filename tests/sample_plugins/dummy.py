"""A plugin that registers a device type which is never available here."""

from mlcls.plugin import DeviceBackend, ProbeReport, hookimpl


class Dummy(DeviceBackend):
    name = "dummy"
    description = "a device that is never there"

    def probe(self):
        return ProbeReport("dummy", False, reason="no dummy card in this machine",
                           fix="plug in a dummy card")


@hookimpl
def register_device_backends(register):
    register(Dummy())
