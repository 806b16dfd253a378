"""The ``sim`` device type and the ``sim`` engine: a pretend accelerator, and the engine that
"runs" on it (Paddle Inference on the host CPU, answering as device ``sim:ID``).

It behaves like a vendor plugin so that every path of device handling can be exercised on any
machine, and shows the two objects a plugin registers: a ``DeviceBackend`` (the hardware:
``probe`` and the visible-device mask) and an ``Engine`` (``probe`` per type, predictor creation,
placement read-back). Its hardware is described by environment variables, read each time they
matter:

``MLCLS_SIM_COUNT``
    How many sim devices exist (default 2). ``0`` means the driver finds none.
``MLCLS_SIM_VISIBLE_DEVICES``
    A visible-device mask like the vendors' (``1`` or ``1,0``): ids are logical, counted after it.
``MLCLS_SIM_FAIL``
    Comma-separated failures: ``unavailable`` (the probe says no), ``create`` or ``create:ID``
    (building the predictor raises, on every id or only on ID), ``placement`` or
    ``placement:ID`` (the engine quietly runs on the CPU instead, as Paddle does with a GPU
    request on a CPU build).
``MLCLS_SIM_TRACE``
    A file to which each batch run appends ``sim:ID N`` (which device ran how many images).

To turn this into a real plugin, replace ``SimBackend.probe`` with your driver's answers,
``configure`` with your framework's device call (e.g. ``config.enable_custom_device("mytype",
device_id)``), and ``SimPredictor.placement`` with what the engine reports after creation.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from mlcls.plugin import (
    Device,
    DeviceBackend,
    DeviceError,
    Engine,
    Placement,
    Predictor,
    ProbeReport,
    hookimpl,
)

from . import __version__

if TYPE_CHECKING:
    from mlcls.model import ModelSpec

TYPE = "sim"
ENV_COUNT = "MLCLS_SIM_COUNT"
ENV_VISIBLE = "MLCLS_SIM_VISIBLE_DEVICES"
ENV_FAIL = "MLCLS_SIM_FAIL"
ENV_TRACE = "MLCLS_SIM_TRACE"
_trace_lock = threading.Lock()


def failures() -> dict[str, set[int] | None]:
    """``{failure: ids}`` from MLCLS_SIM_FAIL; ``None`` as ids means every id."""
    found: dict[str, set[int] | None] = {}
    for item in (os.environ.get(ENV_FAIL) or "").split(","):
        name, _, dev_id = item.strip().lower().partition(":")
        if not name:
            continue
        if name not in ("unavailable", "create", "placement"):
            raise ValueError(f"{ENV_FAIL}: unknown failure '{item.strip()}' "
                             "(use unavailable, create[:ID], placement[:ID])")
        if not dev_id:
            found[name] = None
        elif found.get(name, set()) is not None:
            found.setdefault(name, set()).add(int(dev_id))
    return found


def _fails(name: str, device_id: int) -> bool:
    table = failures()
    return name in table and (table[name] is None or device_id in table[name])


def visible_count() -> int:
    physical = int(os.environ.get(ENV_COUNT, "2"))
    mask = os.environ.get(ENV_VISIBLE)
    if mask is None:
        return physical
    ids = [p.strip() for p in mask.split(",") if p.strip()]
    return sum(1 for p in ids if p.isdigit() and int(p) < physical)


def probe() -> ProbeReport:
    versions = {"mlcls-simdevice": __version__, "sim-driver": "1.0"}
    try:
        table = failures()
        count = visible_count()
    except ValueError as exc:
        return ProbeReport(TYPE, False, versions=versions, reason=str(exc),
                           fix=f"fix or unset {ENV_FAIL} / {ENV_COUNT}")
    if "unavailable" in table:
        return ProbeReport(TYPE, False, versions=versions,
                           reason=f"the simulated driver is down ({ENV_FAIL}=unavailable)",
                           fix=f"unset {ENV_FAIL}")
    if count == 0:
        return ProbeReport(TYPE, False, versions=versions, reason="no sim device visible",
                           fix=f"set {ENV_COUNT} above 0, or widen {ENV_VISIBLE}")
    return ProbeReport(TYPE, True, count=count, versions=versions)


class SimBackend(DeviceBackend):
    """The hardware. Cheap to build on purpose: every mlcls command registers plugins."""

    name = TYPE
    description = "Simulated accelerator (runs on the host CPU)"
    aliases = ("simdevice",)
    fallback = ("cpu",)
    engines = ("sim",)  # what `--engine auto` tries here when devices.yaml gives no list
    visible_env = ENV_VISIBLE

    def probe(self) -> ProbeReport:
        return probe()

    def framework_device(self, device_id: int | None) -> str:
        raise DeviceError("device type 'sim' cannot train: it only simulates inference")


class SimPredictor(Predictor):
    """A CPU Paddle predictor that answers as device ``sim:ID``."""

    def __init__(self, inner: Predictor, device_id: int):
        self.inner = inner
        self.device_id = device_id

    def run(self, batch):
        scores = self.inner.run(batch)
        trace = os.environ.get(ENV_TRACE)
        if trace:
            with _trace_lock, open(trace, "a", encoding="utf-8") as fh:
                fh.write(f"{TYPE}:{self.device_id} {len(batch)}\n")
        return scores

    def placement(self) -> Placement:
        if _fails("placement", self.device_id):
            return Placement("cpu", "the simulated engine fell back to the host CPU "
                                    f"({ENV_FAIL}=placement)")
        return Placement(f"{TYPE}:{self.device_id}", "simulated on the host CPU")

    def close(self) -> None:
        self.inner.close()


def create_predictor(model: ModelSpec, device_id: int | None,
                     options: dict[str, Any]) -> Predictor:
    from mlcls.paddle_engine import PaddlePredictor

    dev_id = 0 if device_id is None else int(device_id)
    if _fails("create", dev_id):
        raise DeviceError(f"device '{TYPE}:{dev_id}': the simulated runtime refused to build "
                          f"the predictor ({ENV_FAIL}=create)")
    threads = int(options.get("threads") or 1)

    def configure(config) -> None:
        # A real engine asks for its device here.
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)

    inner = PaddlePredictor(model, configure, lambda config: Placement("cpu"))
    return SimPredictor(inner, dev_id)


class SimEngine(Engine):
    """The engine: runs only on ``sim`` (any other type gets a reason, so `mlcls devices`
    can show why)."""

    name = "sim"
    description = "Paddle Inference on the host CPU, answering as sim:ID"

    def probe(self, device_type: str) -> ProbeReport:
        if device_type != TYPE:
            return ProbeReport(device_type, False, reason=f"the sim engine runs only on "
                                                          f"'{TYPE}'")
        return ProbeReport(TYPE, True, count=visible_count(),
                           versions={"mlcls-simdevice": __version__})

    def create_predictor(self, model: ModelSpec, device: Device, device_id: int | None,
                         options: dict[str, Any]) -> Predictor:
        return create_predictor(model, device_id, options)


@hookimpl
def register_device_backends(register) -> None:
    register(SimBackend())


@hookimpl
def register_engines(register) -> None:
    register(SimEngine())
