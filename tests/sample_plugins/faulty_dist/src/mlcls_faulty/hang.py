"""A device type and an engine whose probes never return (a driver call that hangs)."""

import time

from mlcls.plugin import DeviceBackend, Engine, hookimpl


def _forever():
    while True:
        time.sleep(60)


class HangBackend(DeviceBackend):
    name = "hang"

    def probe(self):
        _forever()


class HangEngine(Engine):
    name = "hang"

    def probe(self, device_type):
        _forever()


@hookimpl
def register_device_backends(register):
    register(HangBackend())


@hookimpl
def register_engines(register):
    register(HangEngine())
