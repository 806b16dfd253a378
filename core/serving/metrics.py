"""``GET /metrics`` in the Prometheus text format, with the prometheus-client library (the
``serve`` extra): requests and their latency by endpoint and status, errors by status, the
queue's depth, and the sizes of the batches run. Each app has its own registry, so several
apps in one process (tests, embedding) do not mix their counts.

Without prometheus-client the endpoint is simply absent.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Response
from starlette.routing import Match

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _route_of(app: FastAPI, scope: dict) -> str:
    """The route's template (``/health``), never the raw path: a client cannot create new
    label values, and so new time series, by asking for made-up paths."""
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "other")
    return "other"


class _MetricsMiddleware:
    def __init__(self, app: Any, owner: FastAPI, requests: Any, latency: Any, errors: Any):
        self.app = app
        self.owner = owner
        self.requests = requests
        self.latency = latency
        self.errors = errors

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def observe(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            path = _route_of(self.owner, scope)
            code = str(status["code"])
            self.requests.labels(path, code).inc()
            self.latency.labels(path).observe(time.perf_counter() - started)
            if status["code"] >= 400:
                self.errors.labels(code).inc()


def install_metrics(app: FastAPI, batcher: Any, dependencies: list | None = None) -> bool:
    """Add the metrics middleware and ``GET /metrics``; False when prometheus-client is not
    installed."""
    try:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            generate_latest,
        )
    except ImportError:
        return False
    registry = CollectorRegistry()
    requests = Counter("mlcls_http_requests", "HTTP requests answered, by route and status",
                       ["path", "code"], registry=registry)
    latency = Histogram("mlcls_http_request_duration_seconds", "Time to answer, by route",
                        ["path"], buckets=LATENCY_BUCKETS, registry=registry)
    errors = Counter("mlcls_http_errors", "Answers with an error status, by status",
                     ["code"], registry=registry)
    depth = Gauge("mlcls_queue_depth", "Images waiting for a predictor", registry=registry)
    depth.set_function(lambda: batcher.depth)
    capacity = Gauge("mlcls_queue_capacity", "Images the queue holds", registry=registry)
    capacity.set_function(lambda: batcher.capacity)
    sizes = Histogram("mlcls_batch_size", "Images per batch run", registry=registry,
                      buckets=(1, 2, 4, 8, 16, 32, 64, 128))
    images = Counter("mlcls_images", "Images classified", registry=registry)

    def on_batch(size: int) -> None:
        sizes.observe(size)
        images.inc(size)

    batcher.on_batch = on_batch
    app.add_middleware(_MetricsMiddleware, owner=app, requests=requests, latency=latency,
                       errors=errors)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=True,
             response_class=Response, dependencies=dependencies or [])
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return True
