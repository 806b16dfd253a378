"""Device strings, probing, and resolution of a request to the device actually used.

Grammar: ``auto`` | ``TYPE`` | ``TYPE:ID`` | ``TYPE:ID,ID...``; case-insensitive; aliases come
from devices.yaml; types come from devices.yaml and from plugins. Ids are logical (counted
after the type's visible-device mask).
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .catalogue import load_catalogue
from .errors import DeviceError, DeviceSpecError
from .plugin import Device, ProbeReport

if TYPE_CHECKING:
    from .model import ModelSpec

log = logging.getLogger(__name__)

AUTO = "auto"
ENV_FALLBACK = "MLCLS_FALLBACK"
ENV_IGNORE_CAPABILITY = "MLCLS_IGNORE_CAPABILITY"


@dataclass(frozen=True)
class DeviceTypeInfo:
    """A device type as a plugin registers it."""

    name: str
    description: str = ""
    plugin: str = ""
    # Defaults for a type devices.yaml does not list (devices.yaml wins when it does).
    aliases: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a device request."""

    requested: str
    device: Device
    probe: ProbeReport
    fallback_reason: str | None = None


def known_types() -> list[str]:
    from .plugins import get_state

    cat = load_catalogue()
    names = list(cat.types) + [t for t in get_state().device_types if t not in cat.types]
    return names


def aliases() -> dict[str, str]:
    """Alias -> type, from devices.yaml and from plugins (devices.yaml wins)."""
    from .plugins import get_state

    found = {a: info.name for info in get_state().device_types.values() for a in info.aliases}
    found.update(load_catalogue().aliases())
    return found


def fallback_chain(device_type: str) -> tuple[str, ...]:
    """The types to try instead of ``device_type``: devices.yaml's chain when it lists the
    type, else the chain its plugin registered."""
    from .plugins import get_state

    cat = load_catalogue()
    if device_type in cat.types:
        return cat.types[device_type].fallback
    info = get_state().device_types.get(device_type)
    return tuple(t.lower() for t in info.fallback) if info else ()


def parse_device(text: str | None) -> Device | str:
    """Parse a device string; returns ``"auto"`` or a ``Device``. Raises ``DeviceError``."""
    if text is None:
        return AUTO
    raw = str(text).strip()
    types = known_types()
    listing = ", ".join(types + [AUTO])
    if not raw:
        raise DeviceSpecError(f"empty device string; use one of: {listing}")
    low = raw.lower()
    if low == AUTO:
        return AUTO
    name, sep, id_part = low.partition(":")
    name = name.strip()
    name = aliases().get(name, name)
    if name not in types:
        raise DeviceSpecError(f"unknown device type '{raw.partition(':')[0]}' in '{raw}'; "
                          f"known types: {listing}")
    if not sep:
        return Device(name)
    ids: list[int] = []
    for part in id_part.split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit()):  # not '²' (int() fails) nor '٣' (= 3)
            what = f"'{part}'" if part else "(empty)"
            raise DeviceSpecError(f"bad device id {what} in '{raw}': ids are non-negative "
                                  f"integers, as in {name}:0 or {name}:0,1; known types: "
                                  f"{listing}")
        dev_id = int(part)
        if dev_id in ids:
            raise DeviceSpecError(f"device id {dev_id} appears twice in '{raw}'; known types: "
                                  f"{listing}")
        ids.append(dev_id)
    return Device(name, tuple(ids))


def probe(device_type: str) -> ProbeReport:
    """Ask the owning plugin about ``device_type``; never raises for a plugin's fault."""
    from .plugins import get_plugin_manager, get_state

    try:
        report = get_plugin_manager().hook.probe_device(device_type=device_type)
    except Exception as exc:  # a broken vendor SDK must not take the caller down
        return ProbeReport(device_type, False, reason=f"the probe failed: "
                           f"{type(exc).__name__}: {exc}", fix="see `mlcls plugins` and the "
                           "vendor's install guide")
    if report is None:
        owner = get_state().device_types.get(device_type)
        if owner is None:
            return ProbeReport(device_type, False, reason="no installed plugin provides it",
                               fix="install or unblock its backend plugin (`mlcls plugins`)")
        return ProbeReport(device_type, False, reason=f"plugin '{owner.plugin}' has no probe")
    if not isinstance(report, ProbeReport):
        return ProbeReport(device_type, False, reason=f"the probe returned a "
                           f"{type(report).__name__}, not a ProbeReport",
                           fix="report this to the plugin's author (`mlcls plugins`)")
    return report


def capability_problem(device: Device, model: ModelSpec | None) -> str | None:
    """Why ``model`` may not run on ``device`` (devices.yaml, then plugins), or ``None``."""
    if model is None or os.environ.get(ENV_IGNORE_CAPABILITY, "") in ("1", "true", "yes"):
        return None
    rules = load_catalogue().models.get(device.type) or {}
    name = model.model_name or ""
    for pattern in rules.get("deny") or ():
        if fnmatch.fnmatch(name, str(pattern)):
            return (f"model '{name}' is denied on '{device.type}' by devices.yaml "
                    f"(models.{device.type}.deny: {pattern})")
    allow = rules.get("allow")
    if allow is not None and not any(fnmatch.fnmatch(name, str(p)) for p in allow):
        return f"model '{name}' is not in devices.yaml's models.{device.type}.allow list"
    from .plugins import get_plugin_manager

    for problem in get_plugin_manager().hook.check_capability(device=device, model=model):
        if problem:
            return str(problem)
    return None


def fallback_enabled(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    env = os.environ.get(ENV_FALLBACK)
    if env is not None and env.strip():
        return env.strip().lower() in ("1", "true", "yes", "on")
    return load_catalogue().fallback


def _usable(device: Device, model: ModelSpec | None) -> tuple[ProbeReport, str | None]:
    """The probe, and why ``device`` cannot be used (``None`` when it can)."""
    report = probe(device.type)
    if not report.available:
        why = f"'{device.type}' is unavailable: {report.reason}"
        return report, why + (f" (fix: {report.fix})" if report.fix else "")
    bad = [i for i in device.ids if report.count and i >= report.count]
    if bad:
        return report, (f"{device.type} id {bad[0]} does not exist: {report.count} "
                        f"{device.type} device(s) visible, ids 0-{report.count - 1}")
    problem = capability_problem(device, model)
    return report, problem


def resolve_device(spec: str | None, *, model: ModelSpec | None = None,
                   fallback: bool | None = None) -> Resolution:
    """Turn a device request into the device to use, probing and falling back as the policy
    says. Raises ``DeviceError`` with the reason and the fix when nothing can be used."""
    parsed = parse_device(spec)
    cat = load_catalogue()
    if parsed == AUTO:
        reasons = []
        for name in cat.priority:
            candidate = Device(name)
            report, why = _usable(candidate, model)
            if why is None:
                # no id: the backend takes its first device and reports which (gpu:0)
                log.info("device auto -> %s", candidate)
                return Resolution(AUTO, candidate, report)
            reasons.append(why)
        raise DeviceError("no device type in devices.yaml's priority list can be used: "
                          + "; ".join(reasons))
    assert isinstance(parsed, Device)
    report, why = _usable(parsed, model)
    if why is None:
        return Resolution(str(parsed), parsed, report)
    if not fallback_enabled(fallback):
        chain = fallback_chain(parsed.type)
        hint = (f"; pass --fallback (or set {ENV_FALLBACK}=1) to use "
                f"{' then '.join(chain)} instead" if chain else "")
        raise DeviceError(f"cannot use device '{parsed}': {why}{hint}")
    tried = [why]
    for name in fallback_chain(parsed.type):
        candidate = Device(name)
        report2, why2 = _usable(candidate, model)
        if why2 is None:
            announce_fallback(str(parsed), str(candidate), why)
            return Resolution(str(parsed), candidate, report2, fallback_reason=why)
        tried.append(why2)
    raise DeviceError(f"cannot use device '{parsed}' nor its fallbacks: " + "; ".join(tried))


def announce_fallback(requested: str, used: str, reason: str) -> None:
    from .plugins import get_plugin_manager

    log.warning("device fallback: %s -> %s because %s", requested, used, reason)
    get_plugin_manager().hook.on_fallback(requested=requested, used=used, reason=reason)
