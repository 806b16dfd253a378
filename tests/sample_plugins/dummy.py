"""A plugin that registers a device type which is never available here."""

from mlcls import hookimpl
from mlcls.devices import DeviceTypeInfo, ProbeReport


@hookimpl
def register_device_types(register):
    register(DeviceTypeInfo("dummy", "a device that is never there"))


@hookimpl
def probe_device(device_type):
    if device_type != "dummy":
        return None
    return ProbeReport("dummy", False, reason="no dummy card in this machine",
                       fix="plug in a dummy card")
