"""HTTP serving of the pipeline (``mlcls --serve``): PaddleX's API with dynamic batching.

FastAPI and uvicorn (the ``serve`` extra) are imported only when serving starts, so
``import mlcls`` and the CLI work without them.
"""

from __future__ import annotations

import argparse

from .settings import ServeSettings, add_serve_arguments

__all__ = ["ServeSettings", "add_serve_arguments", "create_app", "serve_from_args"]


def _missing_extra(exc: ImportError):
    from ..errors import UsageError

    return UsageError(f"serving needs FastAPI and uvicorn ({exc.name} is missing): "
                      "pip install 'mlcls[serve]'")


def serve_from_args(args: argparse.Namespace) -> int:
    try:
        from .runner import serve_from_args as run
    except ImportError as exc:
        raise _missing_extra(exc) from exc
    return run(args)


def create_app(pipeline, settings: ServeSettings | None = None):
    """The FastAPI app serving ``pipeline`` (see ``mlcls.serving.app.create_app``)."""
    try:
        from .app import create_app as make
    except ImportError as exc:
        raise _missing_extra(exc) from exc
    return make(pipeline, settings)
