"""Request-level guards: the body size limit (an ASGI middleware, so an oversized body is
refused before it is read into memory) and the optional API key."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi import HTTPException, Request

from ..limits import printable
from .errors import ServingError
from .handlers import error_response, log, new_log_id


class BodyLimitMiddleware:
    """Answers 413 for a declared Content-Length over the limit, and stops reading a
    streamed (chunked) body as soon as it passes the limit."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> str:
        return (f"the request body is {size}, over the limit of {self.max_bytes} bytes "
                "(--max_body_bytes)")

    @staticmethod
    async def _refuse(scope: dict, receive: Any, send: Any, status: int, message: str,
                      headers: dict[str, str] | None = None) -> None:
        ident = new_log_id()
        log.warning("%s %s -> %d: %s [logId %s]", scope.get("method", "?"),
                    printable(scope.get("path", "?")), status, message, ident)
        await error_response(status, message, ident, headers)(scope, receive, send)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await self._refuse(scope, receive, send, 400,
                                   f"bad Content-Length header {declared!r}")
                return
            if length > self.max_bytes:
                await self._refuse(scope, receive, send, 413,
                                   self._too_large(f"{length} bytes"), {"Connection": "close"})
                return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes FastAPI's body reader unchanged.
                    raise HTTPException(413, self._too_large(f"more than {self.max_bytes} "
                                                             "bytes"))
            return message

        await self.app(scope, limited_receive, send)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def api_key_dependency(expected: str):
    """A FastAPI dependency that wants the key in ``X-API-Key`` or ``Authorization: Bearer``.
    Both sides are hashed first, so the comparison takes the same time whatever the lengths."""
    want = _digest(expected)

    async def check_api_key(request: Request) -> None:
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is None:
            raise ServingError(401, "an API key is required: send it in the X-API-Key header "
                                    "or as 'Authorization: Bearer <key>'",
                               {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(_digest(given), want):
            raise ServingError(401, "the API key is not valid", {"WWW-Authenticate": "Bearer"})

    return check_api_key
