"""The multi-label classification pipeline: inputs -> preprocessing -> predictor(s) ->
postprocessing -> results, with decoding overlapped with inference."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import config as cfgmod
from . import devices, hpi, plugins, tuning
from .catalogue import load_catalogue
from .defaults import default_postprocessor, default_preprocessor
from .devices import Device, Resolution, fallback_enabled, resolve_device
from .errors import DeviceError, InputError, MlclsError, ModelError, UsageError
from .inputs import Sample, expand_inputs
from .model import ModelSpec, load_model_dir
from .model_hub import ensure_model
from .plugin import (
    Engine,
    Placement,
    Postprocessor,
    Predictor,
    Preprocessor,
    available_cores,
)
from .postprocess import threshold_vector
from .results import BaseResult, FailedResult, MultiLabelClsResult

log = logging.getLogger(__name__)


def resolve_model(model: str | None, model_dir: str | os.PathLike | None) -> ModelSpec:
    """A model directory, or an official model name (from the cache, downloading it)."""
    if model_dir:
        return load_model_dir(model_dir)
    if not model:
        raise ModelError("no model given: pass model_dir (a PaddleX inference-model directory) "
                         "or an official model name")
    if Path(model).expanduser().is_dir():
        return load_model_dir(model)
    return load_model_dir(ensure_model(model))


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, MlclsError) else str(exc)


class MultiLabelClassificationPipeline:
    """Tags images with every label whose score is above its threshold."""

    def __init__(self, model: ModelSpec, resolution: Resolution, *, batch_size: int = 1,
                 threshold: Any = None, device_options: dict[str, Any] | None = None,
                 fallback: bool | None = None):
        self.model = model
        self.resolution = resolution
        self.batch_size = batch_size
        self.threshold = threshold
        device = resolution.device
        self.engine_name = resolution.engine or devices.AUTO
        engine, self._engine_plugin = plugins.engine(self.engine_name)
        if engine is None:
            raise DeviceError(f"no installed plugin provides the engine "
                              f"'{self.engine_name}' (`mlcls plugins`)")
        self._engine: Engine = engine
        cat = load_catalogue()
        overrides = dict(device_options or {})
        # Pipeline settings (loaders, streams) come from the type's options, then from the
        # engine's (their best value can depend on the engine), then from device_options; the
        # rest of the engine's options go to the engine.
        type_options = dict(cat.entry(device.type).options)
        options = cat.options_for(self.engine_name, device.type)
        for key in devices.PIPELINE_OPTIONS & options.keys():
            type_options[key] = options.pop(key)
        type_options.update({k: v for k, v in overrides.items()
                             if k in devices.PIPELINE_OPTIONS})
        options.update({k: v for k, v in overrides.items()
                        if k not in devices.PIPELINE_OPTIONS})
        self.options = options
        # Loader threads decode and resize the next images while a batch runs. devices.yaml
        # sets `loaders: 0` where the engine itself computes on every core (cpu): there they
        # would only contend with it, so the caller's thread loads (docs/performance.md).
        loaders = type_options.get("loaders")
        if loaders is not None and (isinstance(loaders, bool) or not isinstance(loaders, int)
                                    or loaders < 0):
            raise UsageError(f"device option 'loaders' must be a whole number >= 0, got "
                             f"{loaders!r}")
        workers = max(2, min(4, os.cpu_count() or 1)) if loaders is None else loaders
        # Streams: predictors per device, each running whole batches of its own, so that
        # decoding and the other streams' inference fill the cores one engine's threads leave
        # idle. An engine's `threads: 0` then shares the available cores among them.
        self.streams = type_options.get("streams", 1)
        if isinstance(self.streams, bool) or not isinstance(self.streams, int) or \
                self.streams < 1:
            raise UsageError(f"device option 'streams' must be a whole number >= 1, got "
                             f"{self.streams!r}")
        if self.streams > 1 and options.get("threads") == 0:
            options["threads"] = max(1, available_cores() // self.streams)
        problem = devices.precision_problem(device.type, model, options)
        if problem:
            raise DeviceError(problem)
        devices.apply_environment(devices.environment_for(device.type, self.engine_name,
                                                          type_options, options))
        # One predictor (and its read-back placement) per device id now; the other streams
        # open on the first run that has work for them (open_streams), so that a one-image
        # run starts as fast as a single stream.
        self.predictors: list[Predictor] = []
        self.placements: list[Placement] = []
        self._device = device
        self._ids = list(device.ids or (None,))
        self._streams_lock = threading.Lock()
        try:
            for device_id in self._ids:
                predictor = self._create_predictor(device_id)
                self.predictors.append(predictor)
                self.placements.append(self._check_placement(device.single(device_id),
                                                             predictor, fallback))
        except BaseException:
            self.close()
            raise
        self.preprocessor: Preprocessor = (
            self._call("create_preprocessor", engine.create_preprocessor, model, device)
            or default_preprocessor(model))
        self.postprocessor: Postprocessor = (
            self._call("create_postprocessor", engine.create_postprocessor, model, device)
            or default_postprocessor(model))
        if threshold is not None and model.label_list:
            threshold_vector(threshold, len(model.label_list))  # fail now, not mid-run
        if model.label_list:
            self._check_label_count()
        self._pool = (ThreadPoolExecutor(workers, thread_name_prefix="mlcls-load")
                      if workers else None)
        self._runners = ThreadPoolExecutor(len(self._ids) * self.streams,
                                           thread_name_prefix="mlcls-run")

    def _create_predictor(self, device_id: int | None) -> Predictor:
        predictor = self._call("create_predictor", self._engine.create_predictor, self.model,
                               self._device, device_id, dict(self.options))
        if not isinstance(predictor, Predictor):
            raise DeviceError(f"plugin '{self._engine_plugin}': engine '{self.engine_name}' "
                              f"returned a {type(predictor).__name__}, not a Predictor")
        return predictor

    def open_streams(self) -> int:
        """Open the predictors that the ``streams`` option asks for beyond the first one per
        device id (once; later calls return at once) and return how many there are. A stream
        that cannot be opened, or that reads back another placement than its device's first,
        is closed and logged, and the pipeline goes on with the ones it has."""
        wanted = len(self._ids) * self.streams
        with self._streams_lock:
            while len(self.predictors) < wanted:
                first = len(self.predictors) % len(self._ids)
                predictor = None
                try:
                    predictor = self._create_predictor(self._ids[first])
                    placement = self._call("placement", self._engine.placement, predictor)
                except MlclsError as exc:
                    log.warning("stream %d not opened: %s", len(self.predictors) + 1, exc)
                    if predictor is not None:
                        self._call("close", predictor.close)
                    break
                if not isinstance(placement, Placement) or \
                        placement.device != self.placements[first].device:
                    log.warning("stream %d not opened: it reads back %s, not %s",
                                len(self.predictors) + 1,
                                getattr(placement, "device", placement),
                                self.placements[first].device)
                    self._call("close", predictor.close)
                    break
                self.predictors.append(predictor)
                self.placements.append(dataclasses.replace(
                    placement, engine=placement.engine or self.engine_name))
            self.streams = len(self.predictors) // len(self._ids)  # no retry on every run
        return len(self.predictors)

    def _check_label_count(self) -> None:
        """One blank image through the network at load: a label_list that does not match the
        model's outputs is a model error now, not a failure of every image later."""
        try:
            blank = np.full((64, 64, 3), 127, np.uint8)
            scores = self.predictors[0].run(self.preprocessor.collate(
                [self.preprocessor.prepare(blank)]))
        except Exception as exc:  # inference problems are reported per batch, as before
            log.debug("label count check skipped: %s", exc)
            return
        outputs = scores.shape[-1] if getattr(scores, "ndim", 0) == 2 else None
        if outputs is not None and outputs != len(self.model.label_list):
            self.close()
            raise ModelError(f"{self.model.model_dir / 'inference.yml'}: label_list has "
                             f"{len(self.model.label_list)} names but the model outputs "
                             f"{outputs} scores")

    def _call(self, what: str, fn, *args):
        return plugins.guarded(self._engine_plugin, f"{what} of engine '{self.engine_name}'",
                               fn, *args)

    def _check_placement(self, wanted: Device, predictor: Predictor,
                         fallback: bool | None) -> Placement:
        """Read back where the engine runs; an engine's own silent fallback becomes an error,
        or, with fallback on, a recorded and logged one."""
        placement = self._call("placement", self._engine.placement, predictor)
        if not isinstance(placement, Placement):
            raise DeviceError(f"plugin '{self._engine_plugin}': engine '{self.engine_name}' "
                              f"read back a {type(placement).__name__}, not a Placement")
        if not placement.engine:
            placement = dataclasses.replace(placement, engine=self.engine_name)
        if placement.device.partition(":")[0] == wanted.type and (
                not wanted.ids or placement.device == str(wanted)):
            return placement
        reason = (f"engine '{self.engine_name}' runs on {placement.device} although {wanted} "
                  f"was asked ({placement.detail or 'no detail'})")
        if not fallback_enabled(fallback):
            raise DeviceError(f"device '{wanted}': {reason}; pass --fallback to accept it")
        devices.announce_fallback(str(wanted), placement.device, reason)
        return placement

    @property
    def device(self) -> str:
        """The device(s) actually used, e.g. ``cpu`` or ``gpu:0,1``."""
        used = list(dict.fromkeys(p.device for p in self.placements))  # streams share one
        types = {d.partition(":")[0] for d in used}
        if len(types) == 1 and len(used) > 1:
            return f"{types.pop()}:{','.join(d.partition(':')[2] for d in used)}"
        return ",".join(used)

    # -- prediction ---------------------------------------------------------------------------

    def _load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        image = sample.load()
        return image, self.preprocessor.prepare(image)

    def _run(self, predictor_index: int, prepared: list[np.ndarray]) -> np.ndarray:
        batch = self.preprocessor.collate(prepared)
        scores = self.predictors[predictor_index].run(batch)
        if scores.shape[0] != len(prepared):
            raise RuntimeError(f"the predictor returned {scores.shape[0]} rows for a batch of "
                               f"{len(prepared)}")
        return scores

    def _start(self, which: int, prepared: list[np.ndarray]) -> Future:
        """Run one batch. With a single predictor it runs on the caller's thread: a hand-off
        to a runner thread would only add a wake-up to every batch's latency (the loaders
        keep decoding ahead either way). Several predictors run on their own threads."""
        if len(self.predictors) > 1:
            return self._runners.submit(self._run, which, prepared)
        done: Future = Future()
        try:
            done.set_result(self._run(which, prepared))
        except Exception as exc:  # reported per batch by _results, like a runner's failure
            done.set_exception(exc)
        return done

    def predict(self, input: Any, threshold: Any = None, batch_size: int | None = None,
                **kwargs: Any) -> Iterator[BaseResult]:
        """Yield one result per input image, in input order. An input that cannot be read
        yields a ``FailedResult`` (``ok`` is False) in its place; the rest still run."""
        if kwargs:
            raise TypeError(f"predict() got unexpected arguments: {', '.join(kwargs)}")
        bs = cfgmod._positive_int(batch_size, "batch_size") if batch_size else self.batch_size
        thr = threshold if threshold is not None else self.threshold
        if thr is not None and self.model.label_list:
            threshold_vector(thr, len(self.model.label_list))
        return self._predict(expand_inputs(input), thr, bs)

    __call__ = predict

    def _chunks(self, items: Iterable[Sample | InputError], size: int):
        chunk: list[tuple[Sample | InputError, Future | None]] = []
        for item in items:
            fut = (self._pool.submit(self._load, item)
                   if self._pool is not None and isinstance(item, Sample) else None)
            chunk.append((item, fut))
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _predict(self, items, threshold, batch_size) -> Iterator[BaseResult]:
        chunks = self._chunks(items, batch_size)
        loading: deque = deque()
        running: deque = deque()
        turn = 0

        def refill() -> None:
            while len(loading) < len(self.predictors) + 1:  # decoded ahead of the running
                nxt = next(chunks, None)
                if nxt is None:
                    return
                loading.append(nxt)

        refill()
        if len(loading) > 1:  # more than one batch: the streams have work
            self.open_streams()
            refill()
        n = len(self.predictors)
        while loading or running:
            while loading and len(running) < n:
                chunk = loading.popleft()
                refill()
                outcomes = []
                for item, fut in chunk:
                    if not isinstance(item, Sample):
                        outcomes.append((item, None, item))
                        continue
                    try:
                        # A load no loader has started yet is done here rather than waited
                        # for: this thread would only sit idle until a loader got to it.
                        image, prepared = (self._load(item) if fut is None or fut.cancel()
                                           else fut.result())
                        outcomes.append((item, (image, prepared), None))
                    except Exception as exc:  # one bad input must not stop the others
                        outcomes.append((item, None, exc))
                good = [o[1][1] for o in outcomes if o[1] is not None]
                run = self._start(turn % n, good) if good else None
                running.append((outcomes, run, turn % n))
                turn += 1
            outcomes, run, which = running.popleft()
            yield from self._results(outcomes, run, which, threshold)

    def _results(self, outcomes, run: Future | None, which: int, threshold):
        rows = None
        batch_error = None
        if run is not None:
            try:
                rows = self.postprocessor(run.result(), threshold)
            except Exception as exc:
                batch_error = exc
                log.error("inference failed on a batch: %s", _error_text(exc))
        device = self.placements[which].device
        k = 0
        for item, loaded, error in outcomes:
            path = item.input_path if isinstance(item, Sample) else getattr(item, "source", None)
            index = item.index if isinstance(item, Sample) else 0
            if loaded is None or batch_error is not None:
                exc = error if loaded is None else batch_error
                label = item.label if isinstance(item, Sample) else path
                text = _error_text(exc)
                log.error("%s: %s", label, text)
                # An input without a path (array, bytes...) is named in the error instead;
                # a page of a PDF or TIFF says which page.
                page = item.page_index if isinstance(item, Sample) else None
                where = f"page {page}: " if path and page is not None else ""
                yield FailedResult(path, f"{where}{text}" if path else f"{label}: {text}",
                                   index)
                continue
            pred = rows[k]
            k += 1
            yield MultiLabelClsResult({
                "input_path": path, "page_index": item.page_index,
                "class_ids": pred.class_ids,
                "scores": pred.scores, "label_names": pred.label_names, "device": device,
                "engine": self.engine_name,
            }, image=loaded[0], index=index, subdir=item.subdir)

    def close(self) -> None:
        for predictor in getattr(self, "predictors", ()):
            try:
                # an engine that fails to let go is charged for it; the other predictors and
                # the pools are still released
                self._call("close", predictor.close)
            except MlclsError as exc:
                log.warning("%s", exc)
        for pool in ("_pool", "_runners"):
            if getattr(self, pool, None) is not None:
                getattr(self, pool).shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> MultiLabelClassificationPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_pipeline(pipeline: str | dict | None = None, device: str | None = None, *,
                    config: str | dict | None = None, model: str | None = None,
                    model_dir: str | os.PathLike | None = None, batch_size: int | None = None,
                    threshold: Any = None, fallback: bool | None = None,
                    device_options: dict[str, Any] | None = None, use_hpip: bool = False,
                    engine: str | None = None, hpi_config: dict[str, Any] | None = None,
                    **kwargs: Any) -> MultiLabelClassificationPipeline:
    """Build the pipeline. ``pipeline`` is ``multi_label_image_classification`` (or
    ``image_multilabel_classification``) or a pipeline YAML path; ``config`` is accepted as an
    alias. Arguments given here win over the YAML, which wins over the model's inference.yml.
    ``device`` is ``auto`` (default), ``cpu``, ``gpu:0``, ``gpu:1,2``, ``npu:0``...;
    ``engine`` is ``auto`` (default: devices.yaml's preference for the type) or an engine's
    name (``paddle``...); ``device_options`` override the chosen engine's options for the
    type (and the type's pipeline settings, such as ``loaders``). PaddleX's ``use_hpip`` and
    ``hpi_config`` (``backend``, ``backend_config``) map onto ``engine`` and its options
    (``mlcls.hpi``); with ``engine`` auto, an engine ``mlcls tune`` recorded as fastest for
    this model, device type and batch size is taken first."""
    if kwargs:
        raise TypeError(f"create_pipeline() got unexpected arguments: {', '.join(kwargs)}")
    if pipeline is not None and config is not None:
        raise TypeError("pass either pipeline or config, not both")
    settings = cfgmod.settings_from_config(cfgmod.load_pipeline_config(
        config if config is not None else pipeline))
    if model is not None and model_dir is None:
        settings.model_dir = None  # a model named in the call replaces the YAML's directory
    settings = cfgmod.merge(settings, model_name=model,
                            model_dir=str(model_dir) if model_dir else None,
                            batch_size=batch_size, threshold=threshold, device=device,
                            engine=engine)
    choice = hpi.engine_choice(use_hpip or settings.use_hpip,
                               hpi_config if hpi_config is not None else settings.hpi_config)
    settings.engine, device_options = hpi.apply(choice, settings.engine, device_options)
    spec = resolve_model(settings.model_name, settings.model_dir)
    resolution = resolve_device(settings.device, model=spec, fallback=fallback,
                                engine=settings.engine)
    reason = ""
    if devices.check_engine_name(settings.engine) == devices.AUTO:
        resolution, reason = tuning.prefer_recorded(resolution, spec, settings.batch_size,
                                                    fallback)
    pipe = MultiLabelClassificationPipeline(spec, resolution, batch_size=settings.batch_size,
                                            threshold=settings.threshold,
                                            device_options=device_options, fallback=fallback)
    pipe.engine_reason = reason or tuning.default_reason(resolution, settings.engine)
    return pipe
