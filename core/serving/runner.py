"""Running the service with uvicorn: in the foreground for ``mlcls --serve``, or on a
background thread for tests, benchmarks and embedding."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import platform
import signal
import socket
import sys
import threading
from typing import Any

import uvicorn

from ..errors import MlclsError, UsageError
from .app import create_app
from .settings import ServeSettings, settings_from_args


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before uvicorn starts, so a busy port is a clear error here and port 0 works."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: not an address this machine has ({exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise MlclsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, except for what follows the drain on SIGTERM: uvicorn re-raises the
    signal, which kills the process before the pipeline is closed and makes a clean stop
    exit with 143. Here ``run`` returns, the caller closes what it owns and exits 0 (Ctrl-C
    still ends as KeyboardInterrupt, status 130, once drained)."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may install handlers (a BackgroundServer)
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if signal.SIGINT in self._captured_signals:
            raise KeyboardInterrupt  # Ctrl-C keeps its exit status (130), after the drain


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _server(app: Any, settings: ServeSettings, **config: Any) -> uvicorn.Server:
    return _Server(uvicorn.Config(app, log_level=settings.log_level, timeout_keep_alive=5,
                                  **config))


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas. glibc gives each thread that allocates its own arena (up
    to eight per core), and the server's request, decoding and inference threads each pass
    megabyte-sized images through theirs: freed memory stays spread over many arenas instead
    of being reused, and resident memory climbs under load (docs/serving.md has the figures).
    ``MALLOC_ARENA_MAX`` in the environment wins. False where the C library is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


_M_ARENA_MAX = -8  # from glibc's malloc.h


def serve(pipeline: Any, settings: ServeSettings) -> None:
    """Serve ``pipeline`` until interrupted (SIGINT/SIGTERM shut down gracefully)."""
    limit_malloc_arenas()
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    engine = getattr(pipeline, "engine_name", None)
    where = f"{pipeline.device}, engine {engine}" if engine else pipeline.device
    print(f"mlcls: serving on http://{host}:{port} on {where} (API docs at /docs)",
          file=sys.stderr, flush=True)
    if settings.host in ("127.0.0.1", "localhost", "::1"):
        print("mlcls: only this machine can connect; to accept other hosts, pass --host "
              "0.0.0.0 (and consider --api_key)", file=sys.stderr, flush=True)
    try:
        _server(create_app(pipeline, settings), settings).run(sockets=[sock])
    finally:
        sock.close()


def _serving_section(pipeline: Any) -> Any:
    """The pipeline YAML's ``Serving:`` section (None for a pipeline name)."""
    from ..config import load_pipeline_config

    return load_pipeline_config(pipeline).get("Serving")


def serve_from_args(args: argparse.Namespace) -> int:
    """``mlcls --serve``: load the model first, then open the port."""
    from ..pipeline import create_pipeline

    if not args.pipeline:
        raise UsageError("--serve needs --pipeline: multi_label_image_classification or a YAML")
    settings = settings_from_args(args, _serving_section(args.pipeline))
    limit_malloc_arenas()  # before the engine starts its threads
    pipeline = create_pipeline(args.pipeline, device=args.device, model=args.model,
                               model_dir=args.model_dir, batch_size=args.batch_size,
                               threshold=args.threshold, fallback=args.fallback,
                               engine=getattr(args, "engine", None),
                               use_hpip=bool(getattr(args, "use_hpip", False)))
    try:
        serve(pipeline, settings)
    finally:
        pipeline.close()
    return 0


class BackgroundServer:
    """The service on a daemon thread; ``url`` is its base address once started.

        with BackgroundServer(pipeline, ServeSettings(port=0)) as server:
            requests.post(server.url + "/multilabel-image-classification", json=...)
    """

    def __init__(self, pipeline: Any, settings: ServeSettings | None = None):
        self.settings = settings or ServeSettings(port=0)
        self.app = create_app(pipeline, self.settings)
        self._sock = bind_socket(self.settings.host, self.settings.port)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{self.settings.host}:{self.port}"
        self._server = _server(self.app, self.settings)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="mlcls-server", daemon=True)

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        self._thread.join(0.01)
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread ended before it started serving")
            if waited > timeout:
                raise RuntimeError(f"the server did not start within {timeout:g} s")
            self._thread.join(0.02)
            waited += 0.02
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
