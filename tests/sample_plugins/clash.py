"""A plugin that claims a device type another plugin already owns."""

from mlcls import hookimpl
from mlcls.devices import DeviceTypeInfo


@hookimpl
def register_device_types(register):
    register(DeviceTypeInfo("cpu", "a second cpu"))
