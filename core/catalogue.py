"""devices.yaml: the device catalogue and policy, loaded once from the package.

This is the one module that reads devices.yaml; the others receive what it (and resolution)
decided."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import UsageError

ENV_CATALOGUE = "MLCLS_DEVICES_YAML"
# Longer than the Paddle probe's own child-process limit (60 s), so that one reports first.
DEFAULT_PROBE_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class TypeEntry:
    """One device type as devices.yaml describes it."""

    name: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()
    # Engines in order of preference; None when devices.yaml gives no list (the backend's own
    # preference applies, then every registered engine).
    engines: tuple[str, ...] | None = None
    # Pipeline settings for the type (loaders); engine settings live under `engines:`.
    options: dict[str, Any] = field(default_factory=dict)
    # Environment the framework reads at import time; a value the user already set wins.
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalogue:
    priority: tuple[str, ...]
    fallback: bool
    types: dict[str, TypeEntry]
    models: dict[str, dict[str, list[str]]]
    source: str
    # engine name -> device type -> that engine's options on that type
    engine_options: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S

    def entry(self, name: str) -> TypeEntry:
        """The entry for ``name``, or the defaults for a type only a plugin knows."""
        return self.types.get(name) or TypeEntry(name=name)

    def aliases(self) -> dict[str, str]:
        return {alias: t.name for t in self.types.values() for alias in t.aliases}

    def options_for(self, engine: str, device_type: str) -> dict[str, Any]:
        """``engines.<engine>.options.<device_type>`` (a copy; empty when not given)."""
        return dict((self.engine_options.get(engine) or {}).get(device_type) or {})


def _read_text() -> tuple[str, str]:
    override = os.environ.get(ENV_CATALOGUE)
    if override:
        path = Path(override)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise UsageError(f"{ENV_CATALOGUE}={override}: cannot read it "
                             f"({exc.strerror})") from exc
    ref = resources.files("mlcls") / "devices.yaml"
    return ref.read_text(encoding="utf-8"), str(ref)


def parse_catalogue(text: str, source: str) -> Catalogue:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping at the top level")
    types: dict[str, TypeEntry] = {}
    for name, spec in (data.get("types") or {}).items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise UsageError(f"{source}: types.{name} must be a mapping")
        types[str(name).lower()] = TypeEntry(
            name=str(name).lower(),
            description=str(spec.get("description", "")),
            aliases=tuple(str(a).lower() for a in spec.get("aliases") or ()),
            fallback=tuple(str(f).lower() for f in spec.get("fallback") or ()),
            engines=(None if spec.get("engines") is None
                     else tuple(str(e).lower() for e in spec["engines"])),
            options=dict(spec.get("options") or {}),
            env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
        )
    priority = tuple(str(p).lower() for p in data.get("priority") or ())
    for p in priority:
        if p not in types:
            raise UsageError(f"{source}: priority names '{p}', which is not under types")
    engine_options: dict[str, dict[str, dict[str, Any]]] = {}
    for name, spec in (data.get("engines") or {}).items():
        per_type = (spec or {}).get("options") if isinstance(spec, dict) else None
        if spec and not isinstance(spec, dict) or not isinstance(per_type or {}, dict):
            raise UsageError(f"{source}: engines.{name} must be a mapping with `options: "
                             f"{{TYPE: {{...}}}}`")
        for kind, opts in (per_type or {}).items():
            if not isinstance(opts or {}, dict):
                raise UsageError(f"{source}: engines.{name}.options.{kind} must be a mapping")
        engine_options[str(name).lower()] = {str(k).lower(): dict(v or {})
                                             for k, v in (per_type or {}).items()}
    timeout = data.get("probe_timeout_s", DEFAULT_PROBE_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise UsageError(f"{source}: probe_timeout_s must be a positive number of seconds, "
                         f"got {timeout!r}")
    return Catalogue(
        priority=priority,
        fallback=bool(data.get("fallback", False)),
        types=types,
        models={str(k).lower(): v or {} for k, v in (data.get("models") or {}).items()},
        source=source,
        engine_options=engine_options,
        probe_timeout_s=float(timeout),
    )


@functools.lru_cache(maxsize=4)
def _load(key: str | None) -> Catalogue:
    return parse_catalogue(*_read_text())


def load_catalogue() -> Catalogue:
    """The catalogue in force (the packaged devices.yaml, or $MLCLS_DEVICES_YAML)."""
    return _load(os.environ.get(ENV_CATALOGUE))
