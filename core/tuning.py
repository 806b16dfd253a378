"""Measured engine choice: ``mlcls tune`` times every engine that can run a model on a device
type here and records the fastest; ``--engine auto`` then takes that engine for the same model,
device type and batch size (devices.yaml's order is the choice when nothing was recorded).

Why record per machine: the order in devices.yaml is measured on one kind of machine, and the
winner moves with the CPU (AVX-512, core count), the model and the batch size. The record is a
small JSON file, ``$MLCLS_HOME/tuning.json`` (``~/.cache/mlcls`` by default), keyed by the
model's files (path, size and modification time: a re-exported model is a new key), the device
type and the batch size, and written whole through a rename under a lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .model import ModelSpec

log = logging.getLogger(__name__)

ENV_HOME = "MLCLS_HOME"
FILE_NAME = "tuning.json"


def record_path() -> Path:
    home = os.environ.get(ENV_HOME)
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "mlcls"
    return base / FILE_NAME


def model_identity(model: ModelSpec) -> str:
    """A key for the model's files as they are now (cheap: no hashing of their bytes)."""
    parts = []
    for path in (model.graph_file, model.params_file, getattr(model, "onnx_file", None)):
        if path is None:
            continue
        st = Path(path).stat()
        parts.append(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _key(model: ModelSpec, device_type: str, batch_size: int) -> str:
    return f"{model_identity(model)}|{device_type}|b{batch_size}"


@dataclass
class TunedChoice:
    """What ``mlcls tune`` found for one model, device type and batch size."""

    engine: str
    ms_per_image: dict[str, float] = field(default_factory=dict)
    measured_at: str = ""
    model_dir: str = ""

    def reason(self) -> str:
        others = ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(
            self.ms_per_image.items(), key=lambda kv: kv[1]))
        return (f"`mlcls tune` measured it fastest here on {self.measured_at} "
                f"(ms/img: {others})")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable tuning record (%s); ignoring it", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def recorded_choice(model: ModelSpec, device_type: str, batch_size: int) -> TunedChoice | None:
    """The engine ``mlcls tune`` recorded for this model, type and batch size, if any."""
    try:
        key = _key(model, device_type, batch_size)
    except OSError:
        return None
    entry = _read(record_path()).get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("engine"), str):
        return None
    return TunedChoice(entry["engine"], dict(entry.get("ms_per_image") or {}),
                       str(entry.get("measured_at") or ""), str(entry.get("model_dir") or ""))


def record_choice(model: ModelSpec, device_type: str, batch_size: int,
                  choice: TunedChoice) -> Path:
    """Add (or replace) one record; other records are kept."""
    import fcntl

    path = record_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = _read(path)
            data[_key(model, device_type, batch_size)] = {
                "engine": choice.engine, "ms_per_image": choice.ms_per_image,
                "measured_at": choice.measured_at, "model_dir": str(model.model_dir),
                "device_type": device_type, "batch_size": batch_size}
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
            os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write the tuning record {path} ({exc.strerror or exc}); "
                         f"set {ENV_HOME} to a writable folder") from exc
    return path


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class EngineTiming:
    engine: str
    ms_per_image: list[float] = field(default_factory=list)  # one per timed round
    placement: str = ""
    error: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.ms_per_image) if self.ms_per_image else float("inf")


def synthetic_batch(pipeline, batch_size: int, seed: int = 0):
    """A batch as the pipeline's own preprocessing makes it, from random 640x480 pictures
    (an engine's speed does not depend on what the pixels show)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(batch_size)]
    pre = pipeline.preprocessor
    return pre.collate([pre.prepare(img) for img in images])


def _round(predictors: list, batch, per_round: float) -> float:
    """ms per image of every predictor (stream) running ``batch`` over and over at once, for
    about ``per_round`` seconds: an engine's throughput with all its streams busy."""
    from concurrent.futures import ThreadPoolExecutor

    def loop(run) -> int:
        n, start = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - start < per_round:
            run(batch)
            n += 1
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(len(predictors)) as pool:
        runs = sum(pool.map(loop, [p.run for p in predictors]))
    return (time.perf_counter() - start) / (runs * len(batch)) * 1e3


def time_engines(pipelines: dict[str, Any], batch_size: int, seconds: float,
                 rounds: int = 3) -> dict[str, EngineTiming]:
    """Time each pipeline's predictors on the same batch, in interleaved rounds (so a slow
    spell of a shared machine hits every engine alike); each round runs an engine, all its
    streams at once, for about ``seconds / rounds`` after a warm-up run."""
    for p in pipelines.values():
        p.open_streams()
    timings = {name: EngineTiming(name, placement=p.placements[0].detail + (
                   f", {len(p.predictors)} streams" if len(p.predictors) > 1 else ""))
               for name, p in pipelines.items()}
    batches = {name: synthetic_batch(p, batch_size) for name, p in pipelines.items()}
    for name, p in pipelines.items():
        for predictor in p.predictors:
            predictor.run(batches[name])  # first-run allocations and kernel choices
    per_round = max(seconds / rounds, 0.05)
    for _ in range(rounds):
        for name, p in pipelines.items():
            timings[name].ms_per_image.append(_round(p.predictors, batches[name], per_round))
    return timings


# -- auto's use of a record ----------------------------------------------------------------------


def prefer_recorded(resolution, model: ModelSpec, batch_size: int,
                    fallback: bool | None) -> tuple[Any, str]:
    """With ``--engine auto``: the engine recorded by ``mlcls tune`` for this model, device
    type and batch size, when it can still be used; else ``resolution`` unchanged. Returns
    the resolution and why its engine was chosen ("" = the usual order)."""
    from . import devices
    from .errors import MlclsError

    choice = recorded_choice(model, resolution.device.type, batch_size)
    if choice is None:
        return resolution, ""
    if choice.engine == resolution.engine:
        return resolution, choice.reason()
    try:
        tuned = devices.resolve_device(str(resolution.device), model=model, fallback=fallback,
                                       engine=choice.engine)
    except MlclsError as exc:
        log.warning("engine %s, recorded by `mlcls tune` for %s on %s at batch %d, cannot be "
                    "used now (%s); taking %s", choice.engine, model.model_dir,
                    resolution.device.type, batch_size, exc, resolution.engine)
        return resolution, ""
    log.info("engine auto -> %s on %s: %s", tuned.engine, tuned.device, choice.reason())
    return tuned, choice.reason()


def default_reason(resolution, engine: str | None) -> str:
    """Why the pipeline's engine was chosen, when no tuning record decided."""
    if engine not in (None, "", "auto"):
        return "asked for"
    skipped = getattr(resolution, "skipped_engines", ())
    text = f"the first engine in devices.yaml's order for {resolution.device.type} that can run"
    return text + (f" (passed over: {'; '.join(skipped)})" if skipped else "")


def all_records() -> list[dict[str, Any]]:
    """Every record of ``mlcls tune`` here (for ``mlcls devices``), oldest model first."""
    data = _read(record_path())
    rows = [dict(v) for v in data.values() if isinstance(v, dict) and "engine" in v]
    return sorted(rows, key=lambda r: (str(r.get("model_dir")), str(r.get("device_type")),
                                       int(r.get("batch_size") or 0)))
