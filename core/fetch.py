"""Downloading from http(s) URLs with one deadline for the whole transfer.

A socket timeout alone bounds each read, not the transfer: an origin that sends one byte every
few seconds (even inside the response headers) would hold the caller for as long as it likes.
Here a timer shuts the connection's socket down when the deadline passes, wherever the
transfer is blocked (connect, TLS, headers, body), so the call returns within the deadline.
Redirects are followed to http(s) URLs only. An optional ``guard`` vets every address a
connection is made to, at the moment it is made (the server uses it to refuse its own
network); with a guard, environment proxies are ignored, because a proxy would resolve and
connect where the guard cannot see.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

Guard = Callable[[str], "str | None"]  # an IP address -> why it is refused, or None
_CHUNK = 64 * 1024
MAX_REDIRECTS = 10


class FetchError(Exception):
    """A download that failed; ``reason`` says why without naming the URL."""

    def __init__(self, reason: str, received: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.received = received


class BlockedAddressError(OSError):
    """A connection the guard refused."""


def check_url(url: str) -> None:
    """Raise ``FetchError`` unless ``url`` is an http(s) URL with a host and a valid port."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError when out of 0..65535 or not a number
    except ValueError as exc:
        raise FetchError(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError(f"not an http(s) URL (scheme {parts.scheme!r})")
    if not parts.hostname:
        raise FetchError("not a valid URL (no host)")
    if port == 0:
        raise FetchError("not a valid URL (port 0)")


class _Transfer:
    """The sockets of one download, and the timer that shuts them down at the deadline."""

    def __init__(self, deadline: float, stall: float, guard: Guard | None):
        self.deadline = deadline
        self.stall = stall
        self.guard = guard
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def connect(self, address: tuple[str, int], timeout: Any = None,
                source_address: Any = None, **_: Any) -> socket.socket:
        host, port = address
        wait = max(0.001, min(self.stall, self.remaining()))
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if self.guard is not None:
            for *_, sockaddr in infos:
                why = self.guard(sockaddr[0])
                if why:
                    where = f"{host} is {why}" if host == sockaddr[0] else \
                        f"{host} resolves to {sockaddr[0]}, {why}"
                    raise BlockedAddressError(
                        f"{where}; the server does not fetch from addresses that are not "
                        "public (start it with --allow_private_urls to allow this)")
        last: OSError | None = None
        for family, kind, proto, _name, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            with self._lock:
                if self.expired:
                    sock.close()
                    raise TimeoutError("deadline passed")
                self._socks.append(sock)
            try:
                sock.settimeout(wait)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)  # the vetted address itself, not the name again
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"{host}: no address to connect to")


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urljoin(req.full_url, newurl)
        try:
            check_url(target)
        except FetchError as exc:
            raise FetchError(f"redirected to {target[:200]!r}, which is {exc.reason}; only "
                             "http(s) redirects are followed") from None
        return super().redirect_request(req, fp, code, msg, headers, target)


def _opener(transfer: _Transfer) -> urllib.request.OpenerDirector:
    class Connection(http.client.HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = transfer.connect

    class TLSConnection(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = transfer.connect

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Connection, req)

    class TLSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(TLSConnection, req, context=self._context)

    proxies = urllib.request.ProxyHandler({} if transfer.guard is not None else None)
    opener = urllib.request.OpenerDirector()
    for handler in (proxies, Handler(), TLSHandler(), _RedirectHandler(),
                    urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def stream(url: str, sink: Callable[[bytes], None], *, deadline: float, stall: float | None =
           None, max_bytes: int, guard: Guard | None = None,
           on_start: Callable[[int | None], None] | None = None) -> tuple[int, int | None]:
    """Send the body of ``url`` to ``sink`` in chunks; return (bytes received, bytes announced
    or None). All of it happens within ``deadline`` seconds; no single wait lasts more than
    ``stall`` seconds (default: the deadline). ``on_start`` hears the announced size first.
    Failures raise ``FetchError``; what ``sink`` raises passes through."""
    check_url(url)
    transfer = _Transfer(time.monotonic() + deadline, stall or deadline, guard)
    timer = threading.Timer(deadline, transfer.expire)
    timer.daemon = True
    late = f"no complete answer within {deadline:g} s"
    quiet = late if stall is None else f"no data for {stall:g} s"
    received = 0
    announced: int | None = None
    timer.start()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "mlcls"})
        with _opener(transfer).open(request, timeout=stall or deadline) as response:
            header = response.headers.get("Content-Length")
            announced = int(header) if header and header.isascii() and header.isdigit() \
                else None
            if announced is not None and announced > max_bytes:
                raise FetchError(f"the server announces {announced} bytes, over the limit of "
                                 f"{max_bytes}")
            if on_start is not None:
                on_start(announced)
            read = getattr(response, "read1", response.read)
            while chunk := read(_CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise FetchError(f"more than {max_bytes} bytes, over the limit", received)
                if transfer.expired:
                    raise FetchError(f"{late}; {received} bytes had arrived", received)
                sink(chunk)
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise FetchError(f"the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, FetchError):
            raise reason from None
        if transfer.expired or isinstance(reason, TimeoutError):
            raise FetchError(late if transfer.expired else quiet) from None
        raise FetchError(f"cannot reach it ({reason})") from None
    except http.client.IncompleteRead as exc:
        if transfer.expired:
            raise FetchError(f"{late}; {received} bytes had arrived", received) from None
        raise FetchError(f"the connection closed after {received + len(exc.partial)} of "
                         f"{announced} bytes", received) from None
    except (OSError, http.client.HTTPException) as exc:
        if transfer.expired:
            raise FetchError(f"{late}; {received} bytes had arrived", received) from None
        if isinstance(exc, TimeoutError):
            raise FetchError(quiet, received) from None
        raise FetchError(f"download failed ({exc})", received) from None
    except ValueError as exc:  # urllib's verdict on a malformed URL (bad host, IDNA...)
        raise FetchError(f"not a valid URL ({exc})") from None
    finally:
        timer.cancel()
    if transfer.expired:
        raise FetchError(f"{late}; {received} bytes had arrived", received)
    if announced is not None and received < announced:
        raise FetchError(f"the connection closed after {received} of {announced} bytes",
                         received)
    return received, announced
