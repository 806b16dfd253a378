"""The FastAPI application: PaddleX's ``POST /multilabel-image-classification`` plus
liveness and readiness, over a pipeline that is already loaded."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from .. import __version__
from ..errors import UsageError
from ..inputs import is_url
from ..postprocess import threshold_vector
from ..results import BaseResult
from .batcher import DynamicBatcher, QueueFullError, ShuttingDownError
from .errors import ServingError, bad_request
from .handlers import error_response, install_error_handlers, log_id
from .images import ImageLimits, decode_request, request_bytes
from .limits import BodyLimitMiddleware, api_key_dependency
from .metrics import install_metrics
from .schemas import ErrorResponse, InferRequest, InferResponse, StatusResponse
from .settings import ServeSettings
from .urlguard import url_guard

INFER_PATH = "/multilabel-image-classification"
FETCH_WORKERS = 16  # image URLs fetched at once (each holds at most --url_max_bytes)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": what} for code, what in {
        400: "Bad input: not base64, not an image, unreachable URL, bad parameter",
        401: "Missing or wrong API key (when the server requires one)",
        413: "Body, image or aspect ratio over the limit",
        422: "The body is not JSON or does not match the schema",
        500: "A fault of the server", 503: "Queue full or shutting down",
        504: "No result within the request timeout"}.items()}


def choose_threshold(body: InferRequest) -> Any:
    inner = body.inferenceParams.threshold if body.inferenceParams else None
    if inner is not None and body.threshold is not None and inner != body.threshold:
        raise bad_request("threshold: given both at the top level and in inferenceParams, "
                          "with different values; give it once")
    return inner if inner is not None else body.threshold


def render(result: BaseResult, top_k: int | None, visualize: bool, quality: int) -> dict:
    """The response's ``result`` for one pipeline result (drawing is slow: off the loop)."""
    categories = [{"id": cid, "name": name, "score": score} for cid, name, score in
                  zip(result["class_ids"], result["label_names"], result["scores"])]
    image = None
    if visualize:
        buf = io.BytesIO()
        result.img["res"].convert("RGB").save(buf, format="JPEG", quality=quality)
        image = base64.b64encode(buf.getvalue()).decode("ascii")
    return {"categories": categories[:top_k] if top_k else categories, "image": image,
            "device": result.get("device")}


def create_app(pipeline: Any, settings: ServeSettings | None = None) -> FastAPI:
    """The service for ``pipeline`` (loaded by the caller, closed by the caller)."""
    settings = settings or ServeSettings()
    batcher = DynamicBatcher(pipeline, max_batch_size=settings.max_batch_size,
                             max_wait=settings.max_wait_ms / 1000.0,
                             max_queue=settings.max_queue)
    limits = ImageLimits(settings.max_pixels, settings.max_aspect_ratio, settings.url_timeout,
                         settings.url_max_bytes, url_guard(settings.allow_private_urls),
                         settings.max_pages)
    labels = getattr(pipeline.model, "label_list", None)
    workers: dict[str, anyio.CapacityLimiter] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Decoding holds whole images in memory: bound how many decode at once.
        workers["decode"] = anyio.CapacityLimiter(settings.workers_for_decoding)
        workers["fetch"] = anyio.CapacityLimiter(FETCH_WORKERS)
        batcher.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(batcher.stop)

    app = FastAPI(title="mlcls multi-label image classification", version=__version__,
                  description="PaddleX-compatible serving of the multi_label_image_"
                              "classification pipeline.", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_metrics(app, batcher, [Depends(api_key_dependency(settings.api_key))]
                    if settings.api_key else None)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization", "X-API-Key"])
    guard = [Depends(api_key_dependency(settings.api_key))] if settings.api_key else []

    @app.post(INFER_PATH, response_model=InferResponse, responses=_ERRORS, dependencies=guard,
              summary="Classify an image (PaddleX's infer operation)")
    async def infer(body: InferRequest, request: Request) -> JSONResponse:
        started = time.monotonic()
        threshold = choose_threshold(body)
        if threshold is not None and labels:
            try:
                threshold_vector(threshold, len(labels))
            except UsageError as exc:
                raise bad_request(str(exc)) from None
        params = body.inferenceParams
        top_k = params.topK if params else None
        visualize = settings.visualize if body.visualize is None else body.visualize
        # Fetching waits on the network, decoding holds whole images: separate pools, so
        # slow origins cannot keep the decoders from the requests that carry their image.
        data, source = await anyio.to_thread.run_sync(
            request_bytes, body.image, limits,
            limiter=workers["fetch"] if is_url(body.image) else workers["decode"])
        images, source, paged = await anyio.to_thread.run_sync(
            decode_request, data, source, limits, limiter=workers["decode"])
        del data
        futures = []
        try:
            for page, pixels in enumerate(images):
                futures.append(batcher.submit(pixels, threshold,
                                              f"{source} page {page}" if paged else source))
        except QueueFullError as exc:
            for future in futures:
                future.cancel()
            raise ServingError(503, f"the server is busy ({exc}); retry later",
                               {"Retry-After": "1"}) from None
        except ShuttingDownError as exc:
            raise ServingError(503, str(exc)) from None
        del images  # the batcher holds the pixels now; the request need not
        remaining = settings.request_timeout - (time.monotonic() - started)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), max(remaining, 1e-3))
        except asyncio.TimeoutError:
            for future in futures:
                future.cancel()
            raise ServingError(504, f"no result within {settings.request_timeout:g} s "
                                    "(--request_timeout): the server is overloaded") from None
        except ShuttingDownError as exc:
            raise ServingError(503, str(exc)) from None
        except UsageError as exc:
            raise bad_request(str(exc)) from None
        for result in results:
            if not result.ok:
                raise ServingError(500, f"inference failed: {result['error']}")
        rendered = [await anyio.to_thread.run_sync(render, result, top_k, visualize,
                                                   settings.jpeg_quality)
                    for result in results]
        payload = dict(rendered[0])
        if paged:
            payload["pages"] = [{"pageIndex": i, "categories": r["categories"],
                                 "image": r["image"]} for i, r in enumerate(rendered)]
        return JSONResponse({"logId": log_id(request), "errorCode": 0, "errorMsg": "Success",
                             "result": payload})

    @app.get("/health", response_model=StatusResponse, summary="Liveness")
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"logId": log_id(request), "errorCode": 0, "errorMsg": "Healthy"})

    @app.get("/ready", response_model=StatusResponse, responses={503: {"model": ErrorResponse}},
             summary="Readiness: the model is loaded and the queue has room")
    async def ready(request: Request) -> JSONResponse:
        ident = log_id(request)
        if not batcher.running:
            return error_response(503, "not ready: the batching worker is not running", ident)
        if batcher.depth >= batcher.capacity:
            return error_response(503, f"not ready: the queue is full ({batcher.capacity} "
                                       "images waiting)", ident)
        stats = batcher.stats
        return JSONResponse({"logId": ident, "errorCode": 0, "errorMsg": "Ready", "result": {
            "status": "ready", "device": pipeline.device, "queued": batcher.depth,
            "queueCapacity": batcher.capacity, "batches": stats.batches,
            "images": stats.images}})

    return app
