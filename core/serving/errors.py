"""The error a request handler raises: an HTTP status and a message for the client."""

from __future__ import annotations


class ServingError(Exception):
    """Answered as ``{logId, errorCode: status, errorMsg: message}`` with that HTTP status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> ServingError:
    return ServingError(400, message)
