"""Exceptions raised by mlcls. Every message names the input at fault and what is wrong."""

from __future__ import annotations


class MlclsError(Exception):
    """Base class of every error mlcls raises on purpose."""


class UsageError(MlclsError):
    """A bad argument, flag or configuration value (the CLI exits with status 2)."""


class DeviceError(MlclsError):
    """A device string that does not parse, or a device that cannot be used."""


class DeviceSpecError(DeviceError, UsageError):
    """A device string that does not parse (a usage error too)."""


class ModelError(MlclsError):
    """A model directory or model name that cannot be loaded."""


class InputError(MlclsError):
    """One input (file, URL, array...) that cannot be read as an image."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
