"""A hook name with a typo (``register_device_backend``): it must not load as "loaded"."""

from mlcls.plugin import DeviceBackend, ProbeReport, hookimpl


class Typo(DeviceBackend):
    name = "typo"

    def probe(self):
        return ProbeReport("typo", True, count=1)


@hookimpl
def register_device_backend(register):
    register(Typo())
