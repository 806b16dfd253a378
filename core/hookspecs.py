"""The hooks a plugin implements; they are defined in ``mlcls.plugin`` (the one module a plugin
imports). This module keeps the older import path of the markers working."""

from __future__ import annotations

from .plugin import hookimpl, hookspec, on_fallback, register_device_backends, register_engines

__all__ = ["hookimpl", "hookspec", "on_fallback", "register_device_backends", "register_engines"]
