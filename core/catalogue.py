"""devices.yaml: the device catalogue and policy, loaded once from the package."""

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


@dataclass(frozen=True)
class TypeEntry:
    """One device type as devices.yaml describes it."""

    name: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()
    visible_env: str | None = None
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

    def entry(self, name: str) -> TypeEntry:
        """The entry for ``name``, or the defaults for a type only a plugin knows."""
        return self.types.get(name) or TypeEntry(name=name)

    def aliases(self) -> dict[str, str]:
        return {alias: t.name for t in self.types.values() for alias in t.aliases}


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
            visible_env=spec.get("visible_env"),
            options=dict(spec.get("options") or {}),
            env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
        )
    priority = tuple(str(p).lower() for p in data.get("priority") or ())
    for p in priority:
        if p not in types:
            raise UsageError(f"{source}: priority names '{p}', which is not under types")
    return Catalogue(
        priority=priority,
        fallback=bool(data.get("fallback", False)),
        types=types,
        models={str(k).lower(): v or {} for k, v in (data.get("models") or {}).items()},
        source=source,
    )


@functools.lru_cache(maxsize=4)
def _load(key: str | None) -> Catalogue:
    return parse_catalogue(*_read_text())


def load_catalogue() -> Catalogue:
    """The catalogue in force (the packaged devices.yaml, or $MLCLS_DEVICES_YAML)."""
    return _load(os.environ.get(ENV_CATALOGUE))
