"""Dynamic batching: images from concurrent requests are gathered into batches and run
through the pipeline by one worker thread.

A batch is cut when it holds ``max_batch_size`` images per predictor, or ``max_wait`` after
its first image arrived. The pipeline spreads a call's batches over its predictors in turn,
so the batch is split into one part per predictor and every device id works on it at once.
Requests asking for different thresholds in the same window are run as separate calls (the
pipeline applies one threshold per call), so every answer is what the offline pipeline gives.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..inputs import Sample
from ..results import BaseResult

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """More images are waiting than the queue holds."""


class ShuttingDownError(Exception):
    """The batcher stopped before this image ran."""


@dataclass
class Job:
    image: np.ndarray  # RGB uint8 HWC
    threshold: Any
    source: str
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    batches: int = 0
    images: int = 0
    largest: int = 0
    cancelled: int = 0  # requests that timed out before their batch began


_STOP = object()


def _threshold_key(threshold: Any) -> str:
    return json.dumps(threshold, sort_keys=True, default=str)


class DynamicBatcher:
    """Feeds the pipeline from a bounded queue; ``submit`` returns a future of the result."""

    def __init__(self, pipeline: Any, *, max_batch_size: int = 8, max_wait: float = 0.005,
                 max_queue: int = 128):
        self.pipeline = pipeline
        # A server has work for every stream the pipeline may open: open them now, and split
        # each batch over all the predictors.
        open_streams = getattr(pipeline, "open_streams", None)
        if open_streams is not None:
            open_streams()
        self.lanes = max(1, len(getattr(pipeline, "predictors", ())) or 1)
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.stats = BatchStats()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.on_batch: Callable[[int], None] | None = None  # the metrics' batch-size hook

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def capacity(self) -> int:
        return self._queue.maxsize

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mlcls-batcher",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, fail what still waits, and end the worker."""
        self._stopping = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, Job) and job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDownError("the server is shutting down"))
        if self._thread is not None:
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                log.error("the batching worker did not take the stop signal")
            self._thread.join(timeout)

    def submit(self, image: np.ndarray, threshold: Any = None, source: str = "image") -> Future:
        if self._stopping:
            raise ShuttingDownError("the server is shutting down")
        job = Job(image, threshold, source)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"{self._queue.maxsize} images are already waiting") from None
        return job.future

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        batch = [first]
        limit = self.max_batch_size * self.lanes
        deadline = time.monotonic() + self.max_wait
        while len(batch) < limit:
            remaining = deadline - time.monotonic()
            try:
                job = (self._queue.get(timeout=remaining) if remaining > 0
                       else self._queue.get_nowait())
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            batch.append(job)
        return batch, False

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            self.stats.cancelled += len(batch) - len(live)
            try:
                groups: dict[str, list[Job]] = {}
                for job in live:
                    groups.setdefault(_threshold_key(job.threshold), []).append(job)
                for jobs in groups.values():
                    self._run(jobs)
            except Exception as exc:  # answer every request, then carry on
                log.exception("the batching worker failed on a batch")
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
            if stop:
                return

    def _parts(self, n: int) -> list[tuple[int, int, int]]:
        """(start, count, batch size) of the calls that run ``n`` images. With several
        predictors, one call split evenly over them. With one, powers of two (7 = 4 + 2 + 1):
        an engine keeps buffers and kernels for every batch shape it has seen (oneDNN's
        cache holds ten), so eight shapes from 1 to 8 cost far more memory than four; the
        pieces run back to back on the same predictor."""
        if self.lanes > 1:
            return [(0, n, math.ceil(n / self.lanes))] if n else []
        parts, start = [], 0
        while n - start:
            size = 1 << ((n - start).bit_length() - 1)
            parts.append((start, size, size))
            start += size
        return parts

    def _run(self, jobs: list[Job]) -> None:
        self.stats.batches += 1
        self.stats.images += len(jobs)
        self.stats.largest = max(self.stats.largest, len(jobs))
        if self.on_batch is not None:
            self.on_batch(len(jobs))
        samples = [Sample(job.source, lambda img=job.image: img) for job in jobs]
        try:
            results: list[BaseResult] = []
            for start, count, size in self._parts(len(jobs)):
                results += self.pipeline.predict(samples[start:start + count],
                                                 threshold=jobs[0].threshold, batch_size=size)
            if len(results) != len(jobs):
                raise RuntimeError(f"the pipeline gave {len(results)} results for "
                                   f"{len(jobs)} images")
        except Exception as exc:  # the worker must outlive any one batch
            log.exception("a batch of %d image(s) failed", len(jobs))
            for job in jobs:
                job.future.set_exception(exc)
            return
        for job, result in zip(jobs, results):
            job.future.set_result(result)
