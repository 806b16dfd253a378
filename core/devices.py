"""Device strings, probing, and resolution of a request to the device and engine actually used.

Grammar: ``auto`` | ``TYPE`` | ``TYPE:ID`` | ``TYPE:ID,ID...``; case-insensitive; aliases come
from devices.yaml and from backends; types come from devices.yaml and from plugins. Ids are
logical (counted after the type's visible-device mask).

Resolution asks the type's own backend whether the hardware is there, then the engines listed
for the type (devices.yaml's ``engines:``, in order) whether they can run on it and read the
model; every call goes to the plugin that owns the type or engine, through
``plugins.guarded``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import plugins
from .catalogue import load_catalogue
from .errors import DeviceError, DeviceSpecError, UsageError
from .plugin import Device, ProbeReport

if TYPE_CHECKING:
    from .model import ModelSpec

log = logging.getLogger(__name__)

AUTO = "auto"
ENV_FALLBACK = "MLCLS_FALLBACK"
ENV_IGNORE_CAPABILITY = "MLCLS_IGNORE_CAPABILITY"
# Options that steer the pipeline rather than an engine; the rest of device_options go to it.
PIPELINE_OPTIONS = frozenset({"loaders", "streams"})


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a device (and engine) request."""

    requested: str
    device: Device
    probe: ProbeReport
    fallback_reason: str | None = None
    engine: str = ""
    engine_probe: ProbeReport | None = None
    skipped_engines: tuple[str, ...] = field(default=())  # "name: why", in preference order


def known_types() -> list[str]:
    cat = load_catalogue()
    return list(cat.types) + [t for t in plugins.get_state().backends if t not in cat.types]


def known_engines() -> list[str]:
    return list(plugins.get_state().engines)


def aliases() -> dict[str, str]:
    """Alias -> type, from devices.yaml and from backends. devices.yaml wins; a backend's alias
    that names a type, or that an earlier backend took, is refused (and charged to its
    plugin), so no plugin can take over another's type through an alias."""
    found = dict(load_catalogue().aliases())
    types = set(known_types())
    state = plugins.get_state()
    for name, backend in state.backends.items():
        for alias in (str(a).lower() for a in backend.aliases):
            if alias in types and alias != name or found.get(alias, name) != name:
                owner = alias if alias in types else found[alias]
                plugins.record_fault(state, state.backend_plugin.get(name, ""),
                                     f"alias '{alias}' of '{name}' refused: it names "
                                     f"'{owner}'")
                continue
            found.setdefault(alias, name)
    return found


def fallback_chain(device_type: str) -> tuple[str, ...]:
    """The types to try instead of ``device_type``: devices.yaml's chain when it lists the
    type, else the chain its backend declares."""
    cat = load_catalogue()
    if device_type in cat.types:
        return cat.types[device_type].fallback
    owner, _ = plugins.backend(device_type)
    return tuple(str(t).lower() for t in owner.fallback) if owner else ()


def engine_preference(device_type: str) -> list[str]:
    """The engines ``auto`` tries on ``device_type``, in order: devices.yaml's list when it
    gives one, else the backend's own ``engines``, else every registered engine."""
    listed = load_catalogue().entry(device_type).engines
    if listed is None:
        owner, _ = plugins.backend(device_type)
        listed = tuple(getattr(owner, "engines", ()) or ()) or tuple(known_engines())
    return [str(e).lower() for e in listed]


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


def _checked_report(report: Any, device_type: str, plugin: str, what: str) -> ProbeReport:
    if not isinstance(report, ProbeReport):
        text = f"{what} returned a {type(report).__name__}, not a ProbeReport"
        plugins.record_fault(plugins.get_state(), plugin, text)
        return ProbeReport(device_type, False, reason=f"plugin '{plugin}': {text}",
                           fix=f"report this to the author of plugin '{plugin}' "
                               "(`mlcls plugins`)")
    return report


def probe(device_type: str) -> ProbeReport:
    """Ask the type's backend whether its hardware is here; never raises for a plugin's
    fault (an exception or a hang becomes an unavailable report naming the plugin)."""
    owner, plugin = plugins.backend(device_type)
    if owner is None:
        return ProbeReport(device_type, False, reason="no installed plugin provides it",
                           fix="install or unblock its backend plugin (`mlcls plugins`)")
    what = f"probe of device type '{device_type}'"
    try:
        report = plugins.guarded(plugin, what, owner.probe,
                                 timeout=load_catalogue().probe_timeout_s)
    except DeviceError as exc:
        return ProbeReport(device_type, False, reason=str(exc),
                           fix=f"see `mlcls plugins`; fix, update or block plugin '{plugin}' "
                               f"({plugins.ENV_BLOCK}={plugin})")
    report = _checked_report(report, device_type, plugin, what)
    if report.device_type != device_type:
        # a backend answering about another type is the fault this design rules out: the
        # answer counts for its own type only
        plugins.record_fault(plugins.get_state(), plugin, f"{what} answered for "
                                                    f"'{report.device_type}'; taken as "
                                                    f"'{device_type}' only")
        report.device_type = device_type
    return report


def probe_engine(engine_name: str, device_type: str) -> ProbeReport:
    """Ask engine ``engine_name`` whether it can run on ``device_type`` here; never raises for
    a plugin's fault."""
    owner, plugin = plugins.engine(engine_name)
    if owner is None:
        return ProbeReport(device_type, False,
                           reason=f"no installed plugin provides the engine '{engine_name}'",
                           fix=f"known engines: {', '.join(known_engines()) or 'none'} "
                               "(`mlcls plugins`)")
    what = f"probe of engine '{engine_name}' on '{device_type}'"
    try:
        report = plugins.guarded(plugin, what, owner.probe, device_type,
                                 timeout=load_catalogue().probe_timeout_s)
    except DeviceError as exc:
        return ProbeReport(device_type, False, reason=str(exc),
                           fix=f"see `mlcls plugins`; fix, update or block plugin '{plugin}'")
    return _checked_report(report, device_type, plugin, what)


def check_plugins() -> None:
    """Call every registered backend and engine once the way a run would (hardware probe,
    environment, each engine's probe on each available type), so that their faults are
    recorded on their ``PluginRecord``; nothing is set or kept."""
    aliases()  # refuses (and records) aliases that name another's type
    available = []
    for kind in known_types():
        if probe(kind).available:
            available.append(kind)
        owner, plugin = plugins.backend(kind)
        if owner is None:
            continue
        try:
            plugins.guarded(plugin, f"environment of '{kind}'", owner.environment,
                            dict(load_catalogue().entry(kind).options))
        except DeviceError:
            pass  # recorded as the plugin's fault
    for kind in available:
        for name in known_engines():
            probe_engine(name, kind)


def model_problem(engine_name: str, model: ModelSpec | None) -> str | None:
    """Why engine ``engine_name`` cannot read ``model``, or ``None``."""
    if model is None:
        return None
    owner, plugin = plugins.engine(engine_name)
    if owner is None:
        return f"no installed plugin provides the engine '{engine_name}'"
    try:
        problem = plugins.guarded(plugin, f"model check of engine '{engine_name}'",
                                  owner.model_problem, model)
    except DeviceError as exc:
        return str(exc)
    return str(problem) if problem else None


def _rules_problem(device_type: str, model: ModelSpec | None) -> str | None:
    rules = load_catalogue().models.get(device_type) or {}
    name = model.model_name or "" if model is not None else ""
    for pattern in rules.get("deny") or ():
        if fnmatch.fnmatch(name, str(pattern)):
            return (f"model '{name}' is denied on '{device_type}' by devices.yaml "
                    f"(models.{device_type}.deny: {pattern})")
    allow = rules.get("allow")
    if allow is not None and not any(fnmatch.fnmatch(name, str(p)) for p in allow):
        return f"model '{name}' is not in devices.yaml's models.{device_type}.allow list"
    return None


def _ignoring_capability() -> bool:
    return os.environ.get(ENV_IGNORE_CAPABILITY, "") in ("1", "true", "yes")


def capability_problem(device: Device, model: ModelSpec | None) -> str | None:
    """Why ``model`` may not run on ``device`` by devices.yaml's ``models`` rules, or ``None``."""
    if model is None or _ignoring_capability():
        return None
    return _rules_problem(device.type, model)


def precision_problem(device_type: str, model: ModelSpec | None,
                      options: dict[str, Any]) -> str | None:
    """Why ``model`` may not run at the options' ``precision`` on ``device_type`` according to
    devices.yaml's ``models.<type>.precisions`` (``{name pattern: [precisions]}``), or ``None``."""
    if model is None or _ignoring_capability():
        return None
    precision = str(options.get("precision") or "fp32").lower()
    rules = (load_catalogue().models.get(device_type) or {}).get("precisions") or {}
    name = model.model_name or ""
    for pattern, allowed in rules.items():
        allowed = [str(a).lower() for a in (allowed or ())]
        if fnmatch.fnmatch(name, str(pattern)) and precision not in allowed:
            return (f"model '{name}' may not run in {precision} on '{device_type}' "
                    f"(devices.yaml models.{device_type}.precisions: {pattern}: "
                    f"[{', '.join(allowed)}]; {ENV_IGNORE_CAPABILITY}=1 overrides)")
    return None


def fallback_enabled(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    env = os.environ.get(ENV_FALLBACK)
    if env is not None and env.strip():
        return env.strip().lower() in ("1", "true", "yes", "on")
    return load_catalogue().fallback


def check_engine_name(engine: str | None) -> str:
    """``auto`` or a registered engine name (lower case); a clear error otherwise."""
    text = str(engine or AUTO).strip().lower()
    if text == AUTO:
        return AUTO
    if text not in known_engines():
        raise UsageError(f"unknown engine '{engine}'; known engines: "
                         f"{', '.join(known_engines() + [AUTO])}")
    return text


def pick_engine(device_type: str, model: ModelSpec | None, wanted: str = AUTO
                ) -> tuple[str | None, ProbeReport | None, list[str]]:
    """The engine to run on ``device_type``: ``wanted``, or with ``auto`` the first in the
    type's preference that can run here and read the model. Returns (name or None, its probe,
    why each engine tried was passed over)."""
    names = [wanted] if wanted != AUTO else engine_preference(device_type)
    skipped: list[str] = []
    for name in names:
        problem = model_problem(name, model)
        if problem:
            skipped.append(f"{name}: {problem}")
            continue
        report = probe_engine(name, device_type)
        if not report.available:
            skipped.append(f"{name}: {report.reason}"
                           + (f" (fix: {report.fix})" if report.fix else ""))
            continue
        return name, report, skipped
    if not names:
        skipped.append(f"no engine is registered for '{device_type}' (`mlcls plugins`)")
    return None, None, skipped


@dataclass
class _Verdict:
    report: ProbeReport
    why: str | None = None
    engine: str | None = None
    engine_report: ProbeReport | None = None
    skipped: list[str] = field(default_factory=list)


def _usable(device: Device, model: ModelSpec | None, engine: str | None) -> _Verdict:
    """Whether ``device`` can be used (hardware, ids, devices.yaml rules, and unless
    ``engine`` is None, an engine)."""
    report = probe(device.type)
    if not report.available:
        why = f"'{device.type}' is unavailable: {report.reason}"
        return _Verdict(report, why + (f" (fix: {report.fix})" if report.fix else ""))
    bad = [i for i in device.ids if report.count and i >= report.count]
    if bad:
        return _Verdict(report, f"{device.type} id {bad[0]} does not exist: {report.count} "
                                f"{device.type} device(s) visible, ids 0-{report.count - 1}")
    problem = capability_problem(device, model)
    if problem:
        return _Verdict(report, problem)
    if engine is None:  # training: the framework is the backend's business
        return _Verdict(report)
    name, engine_report, skipped = pick_engine(device.type, model, engine)
    if name is None:
        what = f"engine '{engine}'" if engine != AUTO else "no engine"
        verb = "cannot run" if engine != AUTO else "can run"
        return _Verdict(report, f"{what} {verb} on '{device.type}' here: "
                                + "; ".join(skipped), skipped=skipped)
    return _Verdict(report, None, name, engine_report, skipped)


def _resolved(requested: str, device: Device, verdict: _Verdict,
              fallback_reason: str | None = None) -> Resolution:
    if verdict.skipped:
        log.warning("engine fallback on %s: %s -> %s because %s", device,
                    engine_preference(device.type)[0], verdict.engine,
                    "; ".join(verdict.skipped))
    return Resolution(requested, device, verdict.report, fallback_reason,
                      engine=verdict.engine or "", engine_probe=verdict.engine_report,
                      skipped_engines=tuple(verdict.skipped))


def resolve_device(spec: str | None, *, model: ModelSpec | None = None,
                   fallback: bool | None = None, engine: str | None = AUTO,
                   inference: bool = True) -> Resolution:
    """Turn a device (and engine) request into the device and engine to use, probing and
    falling back as the policy says. ``engine`` None means auto; ``inference=False`` (training)
    skips the choice of an inference engine. Raises ``DeviceError`` with the reason and the fix
    when nothing can be used."""
    parsed = parse_device(spec)
    wanted = check_engine_name(engine) if inference else None
    cat = load_catalogue()
    if parsed == AUTO:
        reasons = []
        for name in cat.priority:
            candidate = Device(name)
            verdict = _usable(candidate, model, wanted)
            if verdict.why is None:
                # no id: the engine takes the type's first device and reports which (gpu:0)
                log.info("device auto -> %s (engine %s)", candidate, verdict.engine)
                return _resolved(AUTO, candidate, verdict)
            reasons.append(verdict.why)
        raise DeviceError("no device type in devices.yaml's priority list can be used: "
                          + "; ".join(reasons))
    assert isinstance(parsed, Device)
    verdict = _usable(parsed, model, wanted)
    if verdict.why is None:
        return _resolved(str(parsed), parsed, verdict)
    why = verdict.why
    if not fallback_enabled(fallback):
        chain = fallback_chain(parsed.type)
        hint = (f"; pass --fallback (or set {ENV_FALLBACK}=1) to use "
                f"{' then '.join(chain)} instead" if chain else "")
        raise DeviceError(f"cannot use device '{parsed}': {why}{hint}")
    tried = [why]
    for name in fallback_chain(parsed.type):
        candidate = Device(name)
        verdict2 = _usable(candidate, model, wanted)
        if verdict2.why is None:
            announce_fallback(str(parsed), str(candidate), why)
            return _resolved(str(parsed), candidate, verdict2, fallback_reason=why)
        tried.append(verdict2.why)
    raise DeviceError(f"cannot use device '{parsed}' nor its fallbacks: " + "; ".join(tried))


def announce_fallback(requested: str, used: str, reason: str) -> None:
    log.warning("device fallback: %s -> %s because %s", requested, used, reason)
    plugins.announce(requested, used, reason)


def environment_for(device_type: str, engine: str, type_options: dict[str, Any],
                    engine_options: dict[str, Any]) -> dict[str, str]:
    """What to set before the engine's framework is imported: devices.yaml's ``env`` for the
    type, then the backend's and the engine's own variables (earlier ones win)."""
    env = dict(load_catalogue().entry(device_type).env)
    owner, plugin = plugins.backend(device_type)
    if owner is not None:
        extra = plugins.guarded(plugin, f"environment of '{device_type}'", owner.environment,
                                dict(type_options)) or {}
        for k, v in dict(extra).items():
            env.setdefault(str(k), str(v))
    eng, eplugin = plugins.engine(engine)
    if eng is not None:
        extra = plugins.guarded(eplugin, f"environment of engine '{engine}'", eng.environment,
                                device_type, dict(engine_options)) or {}
        for k, v in dict(extra).items():
            env.setdefault(str(k), str(v))
    return env


def apply_environment(env: dict[str, str]) -> dict[str, str]:
    """Set ``env``; a variable the user already set is kept. Returns what was set."""
    import sys

    applied = {}
    for key, value in env.items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    if applied and "paddle" in sys.modules:
        log.info("paddle was already imported, so %s may not take effect", ", ".join(applied))
    return applied


def framework_device(spec: str | None) -> str:
    """For training: resolve ``spec``, set the type's environment, and return the backend's
    name for the device in the training framework (``gpu:0``)."""
    device = resolve_device(spec, inference=False).device
    if len(device.ids) > 1:
        raise UsageError(f"device '{device}': training runs on one device; pass one id, "
                         f"e.g. {device.type}:{device.ids[0]}")
    owner, plugin = plugins.backend(device.type)
    if owner is None:
        raise DeviceError(f"no installed plugin provides the device type '{device.type}'")
    type_options = dict(load_catalogue().entry(device.type).options)
    apply_environment(environment_for(device.type, "", type_options, {}))
    return plugins.guarded(plugin, f"framework device of '{device.type}'",
                           owner.framework_device, device.ids[0] if device.ids else None)
