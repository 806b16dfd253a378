"""An opener for image URLs that cannot be turned against the server's own network.

The address check happens where the socket is connected, on the address actually used, so
neither a redirect nor a DNS answer that changes between check and connect gets around it.
Only http and https are spoken; environment proxies are ignored while the check is on,
because a proxy resolves the target where it cannot be checked.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request
from typing import Any


class BlockedAddressError(OSError):
    """The URL's host resolves to an address the server refuses to contact."""


def refusal(address: str) -> str | None:
    """Why ``address`` may not be contacted, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # Most specific first: 0.0.0.0 and 127.0.0.1 also count as "private" to ipaddress.
    for kind, flag in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                       ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                       ("private", ip.is_private), ("reserved", ip.is_reserved)):
        if flag:
            return f"a {kind} address"
    return None


def _guarded_connection(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,
                        source_address: Any = None, **_: Any) -> socket.socket:
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        why = refusal(sockaddr[0])
        if why:
            where = f"{host} is {why}" if host == sockaddr[0] else \
                f"{host} resolves to {sockaddr[0]}, {why}"
            raise BlockedAddressError(
                f"{where}; the server does not fetch from its own network "
                "(start it with --allow_private_urls to allow this)")
    last: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)  # the vetted address itself, not the name again
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"{host}: no address to connect to")


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context)


def build_url_opener(allow_private: bool) -> urllib.request.OpenerDirector:
    """An opener that speaks only http(s) and follows redirects, checking each address it
    connects to unless ``allow_private``."""
    opener = urllib.request.OpenerDirector()
    if allow_private:
        handlers: list[Any] = [urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                               urllib.request.HTTPSHandler()]
    else:
        handlers = [urllib.request.ProxyHandler({}), _HTTPHandler(), _HTTPSHandler()]
    handlers += [urllib.request.HTTPRedirectHandler(), urllib.request.HTTPDefaultErrorHandler(),
                 urllib.request.HTTPErrorProcessor(), urllib.request.UnknownHandler()]
    for handler in handlers:
        opener.add_handler(handler)
    return opener
