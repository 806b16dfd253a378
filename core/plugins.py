"""The plugin manager: loads backends from the ``mlcls.backends`` entry-point group.

Loading is tolerant: a backend that fails to import or register is recorded with its error
(shown by ``mlcls plugins``) and the others load as usual. ``MLCLS_LOAD_PLUGINS`` (comma
separated entry-point names) is an allow-list and ``MLCLS_BLOCK_PLUGINS`` a block list; the
essential ``cpu`` backend loads whatever they say, since fallback and ``auto`` rely on it.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import threading
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType

import pluggy

from . import defaults, hookspecs
from .devices import DeviceTypeInfo

log = logging.getLogger(__name__)

GROUP = "mlcls.backends"
ENV_ALLOW = "MLCLS_LOAD_PLUGINS"
ENV_BLOCK = "MLCLS_BLOCK_PLUGINS"
ESSENTIAL = frozenset({"cpu"})


@dataclass
class PluginRecord:
    """What ``mlcls plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    device_types: list[str] = field(default_factory=list)
    error: str | None = None
    status: str = "loaded"  # loaded | failed | blocked


@dataclass
class PluginState:
    manager: pluggy.PluginManager
    records: list[PluginRecord]
    device_types: dict[str, DeviceTypeInfo]


_state: PluginState | None = None
_lock = threading.Lock()


def _names(env: str) -> set[str] | None:
    raw = os.environ.get(env)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(impl.name for impl in pm.get_hookcallers(plugin) or ())


def _register_types(pm: pluggy.PluginManager, plugin: object, record: PluginRecord,
                    types: dict[str, DeviceTypeInfo]) -> None:
    found: list[DeviceTypeInfo] = []
    impl = getattr(plugin, "register_device_types", None)
    if impl is not None:
        impl(register=found.append)
    for info in found:
        name = info.name.lower()
        if name in types:
            raise ValueError(f"device type '{name}' is already registered by "
                             f"plugin '{types[name].plugin}'")
        types[name] = dataclasses.replace(info, name=name, plugin=record.name,
                                          aliases=tuple(a.lower() for a in info.aliases))
        record.device_types.append(name)


def _load_one(pm: pluggy.PluginManager, name: str, loader, record: PluginRecord,
              types: dict[str, DeviceTypeInfo]) -> None:
    try:
        module = loader()
        pm.register(module, name=name)
        try:
            _register_types(pm, module, record, types)
        except Exception:
            pm.unregister(module)
            raise
        record.hooks = _hook_names(pm, module)
    except Exception as exc:  # a broken plugin must never break the others
        record.status = "failed"
        record.error = f"{type(exc).__name__}: {exc}"
        log.warning("mlcls plugin '%s' failed to load: %s", name, record.error)


def _build() -> PluginState:
    pm = pluggy.PluginManager("mlcls")
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name="mlcls.defaults")
    records: list[PluginRecord] = []
    types: dict[str, DeviceTypeInfo] = {}
    allow, block = _names(ENV_ALLOW), _names(ENV_BLOCK) or set()
    seen: set[str] = set()
    def order(ep) -> tuple[bool, bool, str]:
        # essential, then built-in, backends first, so no third party can take their types
        dist = getattr(ep, "dist", None)
        return (ep.name not in ESSENTIAL, not (dist and dist.name == "mlcls"), ep.name)

    for ep in sorted(metadata.entry_points(group=GROUP), key=order):
        if ep.name in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(ep.name)
        dist = getattr(ep, "dist", None)
        record = PluginRecord(name=ep.name, module=ep.value,
                              distribution=dist.name if dist else "",
                              version=dist.version if dist else "")
        records.append(record)
        wanted = allow is None or ep.name in allow
        if ep.name not in ESSENTIAL and (not wanted or ep.name in block):
            record.status = "blocked"
            continue
        _load_one(pm, ep.name, ep.load, record, types)
    return PluginState(pm, records, types)


def get_state() -> PluginState:
    """The loaded plugins (built on first use, then shared)."""
    global _state
    with _lock:
        if _state is None:
            _state = _build()
        return _state


def get_plugin_manager() -> pluggy.PluginManager:
    return get_state().manager


def register_module(module: ModuleType | str, name: str | None = None) -> PluginRecord:
    """Register a plugin module that is not installed through an entry point (tests, notebooks).

    Errors are recorded on the returned record, as for installed plugins.
    """
    state = get_state()
    mod_name = module if isinstance(module, str) else module.__name__
    record = PluginRecord(name=name or mod_name, module=mod_name, distribution="(registered)")
    loader = (lambda: importlib.import_module(module)) if isinstance(module, str) else (
        lambda: module)
    with _lock:
        state.records.append(record)
        _load_one(state.manager, record.name, loader, record, state.device_types)
    return record


def reset() -> None:
    """Forget the loaded plugins; the next use loads them again (after env changes)."""
    global _state
    with _lock:
        _state = None
