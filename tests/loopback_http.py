"""A real HTTP server on 127.0.0.1 for tests of code that downloads (models, image URLs).

Each route is a function that receives the live request handler, so a test decides exactly
what goes over the wire: a status, a body, a lying Content-Length, a stall, a closed socket.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[BaseHTTPRequestHandler], None]


def send(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200,
         content_type: str = "application/octet-stream", length: int | None = None) -> None:
    """Answer with ``body``; ``length`` overrides the announced Content-Length."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def send_cut(handler: BaseHTTPRequestHandler, body: bytes, keep: int) -> None:
    """Announce all of ``body`` but send only ``keep`` bytes, then drop the connection."""
    send(handler, body[:keep], length=len(body))
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


class LoopbackServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                route = server.routes.get(self.path)
                if route is None:
                    send(self, b"not here", status=404, content_type="text/plain")
                else:
                    route(self)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def closed_port_url(path: str = "/") -> str:
    """A loopback URL where nothing listens: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
