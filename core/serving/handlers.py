"""Every error leaves the service as ``{logId, errorCode, errorMsg}`` with ``errorCode`` equal
to the HTTP status, FastAPI's own 404/405/422 included."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..limits import printable
from .errors import ServingError

log = logging.getLogger("mlcls.serving")

MAX_LISTED_PROBLEMS = 5


def new_log_id() -> str:
    return str(uuid.uuid4())


def log_id(request: Request) -> str:
    """The request's id, made on first use so errors and successes carry the same one."""
    value = getattr(request.state, "log_id", None)
    if value is None:
        value = request.state.log_id = new_log_id()
    return value


def log_error(request: Request, status: int, message: str, ident: str) -> None:
    """Every error answer is logged with its logId (WARNING for 4xx, ERROR for 5xx), so a
    client's logId finds the server's account of it; echoed text is escaped."""
    log.log(logging.ERROR if status >= 500 else logging.WARNING, "%s %s -> %d: %s [logId %s]",
            request.method, printable(request.url.path), status, printable(message), ident)


def error_response(status: int, message: str, log_id: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"logId": log_id, "errorCode": status, "errorMsg": message},
                        status_code=status, headers=headers)


def _where(loc: Any) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "request body"


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """One readable line from pydantic's error list."""
    problems = []
    for err in errors:
        kind = err.get("type", "")
        where = _where(err.get("loc", ()))
        if kind == "json_invalid":
            ctx = err.get("ctx", {}).get("error", "")
            problems.append(f"the request body is not valid JSON ({ctx})".replace(" ()", ""))
        elif kind == "missing" and where == "request body":
            problems.append("the request body is missing: send a JSON object with 'image'")
        elif where == "request body":
            problems.append(f"the request body must be a JSON object ({err.get('msg')})")
        else:
            problems.append(f"{where}: {err.get('msg')}")
    unique = list(dict.fromkeys(problems))
    extra = len(unique) - MAX_LISTED_PROBLEMS
    text = "; ".join(unique[:MAX_LISTED_PROBLEMS])
    return text + (f"; and {extra} more" if extra > 0 else "")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
        ident = log_id(request)
        log_error(request, exc.status, exc.message, ident)
        return error_response(exc.status, exc.message, ident, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"Not Found: there is no endpoint at {request.url.path}"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
            message = (f"Method Not Allowed: {request.method} {request.url.path}"
                       + (f" (allowed: {allowed})" if allowed else ""))
        ident = log_id(request)
        log_error(request, exc.status_code, message, ident)
        return error_response(exc.status_code, message, ident, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = describe_validation(list(exc.errors()))
        kind = request.headers.get("content-type", "")
        if "request body" in message and "json" not in kind.lower():
            message = (f"send the body as JSON (Content-Type: application/json, not "
                       f"{kind or 'none'!r}): {message}")
        ident = log_id(request)
        log_error(request, 422, message, ident)
        return error_response(422, message, ident)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        ident = log_id(request)
        log.error("%s %s failed [%s]", request.method, request.url.path, ident, exc_info=exc)
        return error_response(500, f"internal server error ({type(exc).__name__}); the server "
                                   f"log has the details under logId {ident}", ident)
