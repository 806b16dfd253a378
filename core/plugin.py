"""Everything a plugin needs, in one leaf module: ``from mlcls.plugin import ...``.

mlcls has two plugin axes. A **device backend** is the hardware: one per device type (``cpu``,
``gpu``, ``npu``...), it says whether the type is present here (driver, count after the
visible-device mask), which environment the vendor runtime wants, and what a training
framework calls the device. An **engine** runs the network: one per name (``paddle``,
``onnxruntime``...), it says which models it can read, whether it can run on a type here,
builds predictors and reads back where they really run. Plugins hand these objects to the core
through the two ``register_*`` hooks; the core keeps a table type -> backend and
name -> engine and calls only the owner, each call guarded so that a fault is charged to the
plugin that made it.

This module imports only the standard library and pluggy (the rest is for type checkers), so
that registering plugins stays cheap and free of import cycles.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from .errors import DeviceError, MlclsError, ModelError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from .model import ModelSpec

hookspec = pluggy.HookspecMarker("mlcls")
hookimpl = pluggy.HookimplMarker("mlcls")


# -- what a device request and a probe look like -------------------------------------------------


@dataclass(frozen=True)
class Device:
    """A parsed device: a type and zero or more logical ids (counted after the mask)."""

    type: str
    ids: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"{self.type}:{','.join(map(str, self.ids))}" if self.ids else self.type

    def single(self, device_id: int | None) -> Device:
        """This device narrowed to one id (what one predictor runs on)."""
        return Device(self.type, () if device_id is None else (device_id,))


@dataclass
class ProbeReport:
    """What a backend (or an engine, for one type) found out on this machine."""

    device_type: str
    available: bool
    count: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # why it is unavailable
    fix: str = ""  # what to do about it
    details: list[dict[str, Any]] = field(default_factory=list)  # e.g. the GPUs found
    notes: list[str] = field(default_factory=list)  # warnings that do not block the type

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.device_type, "available": self.available, "count": self.count,
            "versions": self.versions, "reason": self.reason, "fix": self.fix,
            "details": self.details, "notes": self.notes,
        }


@dataclass(frozen=True)
class Placement:
    """Where a predictor really runs, as read back from the engine after creation."""

    device: str  # e.g. "cpu", "gpu:0"
    detail: str = ""  # engine-specific facts (kernel library, precision...)
    engine: str = ""  # the engine's name; the core fills it in when an engine leaves it empty


# -- the three parts of a pipeline run -----------------------------------------------------------


class Predictor(ABC):
    """Runs the network: a float32 NCHW batch in, one row of per-class scores per image out."""

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Return scores of shape ``[N, num_classes]`` for a batch of shape ``[N, C, H, W]``."""

    @abstractmethod
    def placement(self) -> Placement:
        """Where this predictor runs, read from the engine (not from what was asked)."""

    def close(self) -> None:  # noqa: B027 - optional for engines that hold nothing
        """Release engine resources."""


class Preprocessor(ABC):
    """Turns decoded RGB uint8 HWC images into the network's input batch, in two stages so
    the pipeline can overlap them with inference: ``prepare`` runs per image on worker
    threads, ``collate`` per batch just before the predictor."""

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Per-image work (resize, crop). Default: none."""
        return image

    @abstractmethod
    def collate(self, images: list[np.ndarray]) -> np.ndarray:
        """Return the float32 ``[N, C, H, W]`` batch for prepared images."""

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        return self.collate([self.prepare(img) for img in images])


@dataclass
class Prediction:
    """The labels kept for one image, best score first."""

    class_ids: list[int]
    scores: list[float]
    label_names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


class Postprocessor(ABC):
    """Turns score rows into kept labels."""

    @abstractmethod
    def __call__(self, scores: np.ndarray, threshold: Any = None) -> list[Prediction]:
        """One ``Prediction`` per row of ``scores``; ``threshold`` overrides the model's."""


# -- the two kinds of registered objects ---------------------------------------------------------


class DeviceBackend:
    """The hardware of one device type. Subclass it, set ``name``, implement ``probe``.

    ``aliases`` and ``fallback`` apply unless devices.yaml describes the type (it wins there).
    Nothing here may import a framework or vendor SDK at construction time: every mlcls
    command registers plugins, including ``mlcls devices``.
    """

    name: str = ""
    description: str = ""
    aliases: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()
    # Engines to try on this type, in order, when devices.yaml gives no `engines:` list for it
    # (empty: every registered engine).
    engines: tuple[str, ...] = ()
    # The vendor's visible-device variable (CUDA_VISIBLE_DEVICES...), for engines' messages.
    visible_env: str | None = None

    def probe(self) -> ProbeReport:
        """Whether the type is present here: driver/SMI answers, the device count after the
        visible-device mask, versions, and when absent the reason and the fix. Called under a
        time limit; must not crash when the vendor SDK is missing or broken."""
        raise NotImplementedError

    def environment(self, options: dict[str, Any]) -> dict[str, str]:
        """Variables the vendor runtime reads at import time, set before any framework is
        imported for this type (a variable the user already set is kept). ``options`` are the
        type's pipeline options from devices.yaml."""
        return {}

    def framework_device(self, device_id: int | None) -> str:
        """The training framework's name for one device of this type (``gpu:0`` for
        ``paddle.set_device``). Raise ``DeviceError`` when the type cannot train."""
        raise DeviceError(f"device type '{self.name}' cannot be used for training: its "
                          f"backend does not name a framework device")


class Engine:
    """An inference engine. Subclass it, set ``name``, implement ``probe`` and
    ``create_predictor``; override ``model_problem`` when it cannot read every model."""

    name: str = ""
    description: str = ""

    def model_problem(self, model: ModelSpec) -> str | None:
        """A sentence saying why this engine cannot read (or convert) ``model``'s files, or
        ``None`` when it can."""
        return None

    def probe(self, device_type: str) -> ProbeReport:
        """Whether this engine can run on ``device_type`` here (the type's own backend has
        already said the hardware is present): versions, and when not the reason and the fix.
        Called under a time limit."""
        raise NotImplementedError

    def environment(self, device_type: str, options: dict[str, Any]) -> dict[str, str]:
        """Variables this engine's runtime reads when it starts, for ``device_type`` with the
        engine ``options``; set before the engine is imported (a value already set wins)."""
        return {}

    def create_predictor(self, model: ModelSpec, device: Device, device_id: int | None,
                         options: dict[str, Any]) -> Predictor:
        """Build a predictor for ``model`` on one id of ``device`` (``None`` for devices
        without ids, such as the CPU). ``options`` are devices.yaml's
        ``engines.<name>.options.<type>``, overridden by the pipeline's ``device_options``."""
        raise NotImplementedError

    def placement(self, predictor: Predictor) -> Placement:
        """Where ``predictor`` really runs (engines can fall back to the CPU on their own)."""
        return predictor.placement()

    def create_preprocessor(self, model: ModelSpec, device: Device) -> Preprocessor | None:
        """A preprocessor to replace the core's numpy one, or ``None`` to keep it."""
        return None

    def create_postprocessor(self, model: ModelSpec, device: Device) -> Postprocessor | None:
        """A postprocessor to replace the core's numpy one, or ``None`` to keep it."""
        return None


# -- the hooks -----------------------------------------------------------------------------------


@hookspec
def register_device_backends(register: Callable[[DeviceBackend], None]) -> None:
    """Hand the core one ``DeviceBackend`` per device type this plugin provides:
    ``register(MyBackend())``. A type name already taken is refused (built-ins win) and the
    refusal is shown by ``mlcls plugins``. Must be cheap: import no vendor SDK here."""


@hookspec
def register_engines(register: Callable[[Engine], None]) -> None:
    """Hand the core one ``Engine`` per inference engine this plugin provides:
    ``register(MyEngine())``. A name already taken is refused (built-ins win). Must be cheap:
    import no framework here."""


@hookspec
def on_fallback(requested: str, used: str, reason: str) -> None:
    """Told each time a requested device could not be used and another was taken instead."""


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's total): what an
    engine's ``threads: 0`` means on a CPU."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


__all__ = [
    "Device", "DeviceBackend", "DeviceError", "Engine", "MlclsError", "ModelError", "Placement",
    "Postprocessor", "Prediction", "Predictor", "Preprocessor", "ProbeReport", "UsageError",
    "available_cores", "hookimpl", "hookspec", "on_fallback", "register_device_backends",
    "register_engines",
]
