"""The plugin registry: loads plugins from the ``mlcls.backends`` entry-point group, keeps the
table device type -> backend and engine name -> engine, and guards every call into a plugin.

Loading is tolerant: a plugin that fails to import, implements a hook mlcls does not have, or
raises while registering is recorded with its error (shown by ``mlcls plugins``) and the others
load as usual. A type or engine name that is already taken is refused and recorded; built-ins
load first, so they win. ``MLCLS_LOAD_PLUGINS`` (comma separated entry-point names) is an
allow-list and ``MLCLS_BLOCK_PLUGINS`` a block list; the essential ``cpu`` plugin (the host CPU
and the Paddle engine) loads whatever they say, since fallback and ``auto`` rely on it.

Every later call into a plugin goes through ``guarded``: an exception that is not one of
mlcls's own errors, or a probe that does not answer in time, is charged to the plugin by name
(``PluginRecord.faults``) and becomes a ``PluginFault`` naming it.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, TypeVar

import pluggy

from . import plugin as api
from .errors import DeviceError, MlclsError

log = logging.getLogger(__name__)

GROUP = "mlcls.backends"
ENV_ALLOW = "MLCLS_LOAD_PLUGINS"
ENV_BLOCK = "MLCLS_BLOCK_PLUGINS"
ESSENTIAL = frozenset({"cpu"})
CORE = "mlcls"  # what faults of the core itself are charged to (none expected)

T = TypeVar("T")


class PluginFault(DeviceError):
    """A plugin raised or hung in a call; the message names the plugin and the call."""

    def __init__(self, plugin: str, message: str):
        super().__init__(message)
        self.plugin = plugin


@dataclass
class PluginRecord:
    """What ``mlcls plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    device_types: list[str] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    error: str | None = None  # why it failed to load
    status: str = "loaded"  # loaded | failed | blocked
    # Faults charged to it after loading: refused registrations, raising or hanging calls.
    faults: list[str] = field(default_factory=list)


@dataclass
class PluginState:
    manager: pluggy.PluginManager
    records: list[PluginRecord]
    backends: dict[str, api.DeviceBackend] = field(default_factory=dict)
    engines: dict[str, api.Engine] = field(default_factory=dict)
    backend_plugin: dict[str, str] = field(default_factory=dict)  # type -> plugin name
    engine_plugin: dict[str, str] = field(default_factory=dict)  # engine -> plugin name
    hung: set[tuple[str, str]] = field(default_factory=set)  # (plugin, call) that hung once

    def record(self, name: str) -> PluginRecord | None:
        return next((r for r in self.records if r.name == name), None)


_state: PluginState | None = None
_lock = threading.RLock()


def _names(env: str) -> set[str] | None:
    raw = os.environ.get(env)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(impl.name for impl in pm.get_hookcallers(plugin) or ())


def record_fault(state: PluginState, plugin: str, text: str) -> None:
    record = state.record(plugin)
    if record is not None and text not in record.faults:
        record.faults.append(text)
    log.warning("mlcls plugin '%s': %s", plugin, text)


def _registrar(state: PluginState, record: PluginRecord, kind: str) -> Callable[[Any], None]:
    """The ``register`` callback handed to one plugin's ``register_*`` hook."""
    wanted = api.DeviceBackend if kind == "device type" else api.Engine
    table = state.backends if kind == "device type" else state.engines
    owners = state.backend_plugin if kind == "device type" else state.engine_plugin
    mine = record.device_types if kind == "device type" else record.engines

    def refuse(text: str) -> None:
        record_fault(state, record.name, text)

    def register(obj: Any) -> None:
        name = str(getattr(obj, "name", "") or "").strip().lower()
        if not isinstance(obj, wanted):
            refuse(f"registered a {type(obj).__name__}, not a {wanted.__name__}; refused")
            return
        if not name or ":" in name or "," in name or name == "auto":
            refuse(f"registered a {kind} with the bad name {name!r} (a plain word, not "
                   "'auto'); refused")
            return
        if name in table:
            refuse(f"{kind} '{name}' is already registered by plugin '{owners[name]}'; refused")
            return
        obj.name = name
        table[name] = obj
        owners[name] = record.name
        mine.append(name)

    return register


def _load_one(state: PluginState, name: str, loader, record: PluginRecord) -> None:
    pm = state.manager
    module = None
    try:
        module = loader()
        pm.register(module, name=name)
        try:
            # a hook name mlcls does not define (a misspelling) would otherwise never be called
            pm.check_pending()
        except pluggy.PluginValidationError:
            known = sorted(n for n in dir(api) if hasattr(getattr(api, n), "mlcls_spec"))
            unknown = [n for n in _hook_names(pm, module)
                       if getattr(pm.hook, n).spec is None]
            pm.unregister(module)
            raise pluggy.PluginValidationError(
                module, f"implements {', '.join(repr(u) for u in unknown) or 'a hook'} which "
                        f"mlcls does not define (its hooks: {', '.join(known)})") from None
        record.hooks = _hook_names(pm, module)
        for hook, kind in (("register_device_backends", "device type"),
                           ("register_engines", "engine")):
            impl = getattr(module, hook, None)
            if impl is not None and hook in record.hooks:
                impl(register=_registrar(state, record, kind))
    except Exception as exc:  # a broken plugin must never break the others
        if module is not None and pm.is_registered(module):
            pm.unregister(module)
        for kind_table, owners, mine in ((state.backends, state.backend_plugin,
                                          record.device_types),
                                         (state.engines, state.engine_plugin, record.engines)):
            for n in mine:  # what it registered before failing goes with it
                kind_table.pop(n, None)
                owners.pop(n, None)
            mine.clear()
        record.status = "failed"
        record.error = f"{type(exc).__name__}: {exc}"
        log.warning("mlcls plugin '%s' failed to load: %s", name, record.error)


def _build() -> PluginState:
    pm = pluggy.PluginManager("mlcls")
    pm.add_hookspecs(api)
    state = PluginState(pm, [])
    allow, block = _names(ENV_ALLOW), _names(ENV_BLOCK) or set()
    seen: set[str] = set()

    def order(ep) -> tuple[bool, bool, str]:
        # essential, then built-in plugins first, so no third party can take their names
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
        state.records.append(record)
        wanted = allow is None or ep.name in allow
        if ep.name not in ESSENTIAL and (not wanted or ep.name in block):
            record.status = "blocked"
            continue
        _load_one(state, ep.name, ep.load, record)
    return state


def get_state() -> PluginState:
    """The loaded plugins (built on first use, then shared)."""
    global _state
    with _lock:
        if _state is None:
            _state = _build()
        return _state


def get_plugin_manager() -> pluggy.PluginManager:
    return get_state().manager


def register_module(module: ModuleType | object | str, name: str | None = None) -> PluginRecord:
    """Register a plugin that is not installed through an entry point (tests, notebooks): a
    module, an object with hook methods, or a module name. Errors are recorded on the returned
    record, as for installed plugins."""
    state = get_state()
    mod_name = module if isinstance(module, str) else getattr(module, "__name__",
                                                              type(module).__name__)
    record = PluginRecord(name=name or mod_name, module=mod_name, distribution="(registered)")
    loader = (lambda: importlib.import_module(module)) if isinstance(module, str) else (
        lambda: module)
    with _lock:
        state.records.append(record)
        _load_one(state, record.name, loader, record)
    return record


def reset() -> None:
    """Forget the loaded plugins; the next use loads them again (after env changes)."""
    global _state
    with _lock:
        _state = None


# -- calls into plugins --------------------------------------------------------------------------


def backend(device_type: str) -> tuple[api.DeviceBackend | None, str]:
    """The backend registered for ``device_type`` and its plugin's name."""
    state = get_state()
    return state.backends.get(device_type), state.backend_plugin.get(device_type, "")


def engine(name: str) -> tuple[api.Engine | None, str]:
    """The engine registered as ``name`` and its plugin's name."""
    state = get_state()
    return state.engines.get(name), state.engine_plugin.get(name, "")


def guarded(plugin: str, what: str, fn: Callable[..., T], *args: Any,
            timeout: float | None = None, **kwargs: Any) -> T:
    """Call ``fn`` for ``plugin``; ``what`` names the call in messages (``probe of 'gpu'``).

    mlcls's own errors pass through (they are a plugin's deliberate, clear answers). Any other
    exception, and with ``timeout`` a call that has not returned in time, is recorded as a
    fault of ``plugin`` and raised as a ``PluginFault`` naming it. A call that hung once is not
    made again in this process (its thread may still be stuck)."""
    state = get_state()
    if (plugin, what) in state.hung:
        raise PluginFault(plugin, f"plugin '{plugin}': {what} did not answer earlier in this "
                                  "process, so it is not asked again")
    if timeout is None:
        try:
            return fn(*args, **kwargs)
        except MlclsError:
            raise
        except Exception as exc:
            text = f"{what} raised {type(exc).__name__}: {exc}"
            record_fault(state, plugin, text)
            raise PluginFault(plugin, f"plugin '{plugin}': {text}") from None
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    # A daemon thread: a probe stuck in a driver call cannot be killed, only left behind.
    worker = threading.Thread(target=target, name=f"mlcls-{plugin}-call", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        state.hung.add((plugin, what))
        text = f"{what} did not answer within {timeout:g} s and was cut off"
        record_fault(state, plugin, text)
        raise PluginFault(plugin, f"plugin '{plugin}': {text} (devices.yaml probe_timeout_s)")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, MlclsError):
            raise exc
        text = f"{what} raised {type(exc).__name__}: {exc}"
        record_fault(state, plugin, text)
        raise PluginFault(plugin, f"plugin '{plugin}': {text}") from None
    return box["value"]


def announce(requested: str, used: str, reason: str) -> None:
    """Tell every ``on_fallback`` listener; one that raises is charged, the rest still hear."""
    pm = get_plugin_manager()
    for impl in pm.hook.on_fallback.get_hookimpls():
        try:
            impl.function(requested=requested, used=used, reason=reason)
        except Exception as exc:
            record_fault(get_state(), impl.plugin_name,
                   f"on_fallback raised {type(exc).__name__}: {exc}")
