"""Which addresses the server may fetch image URLs from: public ones only, unless
``--allow_private_urls``.

The check runs where each connection is made (``mlcls.fetch``), on the address actually
used, so neither a redirect nor a DNS answer that changes between check and connect gets
around it. Everything that is not globally routable is refused: loopback, private, link-local
(cloud metadata at 169.254.169.254), shared address space (100.64.0.0/10, where some clouds
answer metadata too), documentation, benchmarking and reserved ranges, multicast, and the
same inside IPv4-mapped, 6to4 and Teredo IPv6 addresses.
"""

from __future__ import annotations

import ipaddress

from ..fetch import Guard


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def refusal(address: str) -> str | None:
    """Why ``address`` may not be contacted, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = refusal(str(inner))
            return f"{why} (inside {ip})" if why else None
    # Most specific first: 0.0.0.0 and 127.0.0.1 also count as "private" to ipaddress.
    for kind, flag in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                       ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                       ("private", ip.is_private), ("reserved", ip.is_reserved)):
        if flag:
            return f"a {kind} address"
    if not ip.is_global:
        return "not a public address"
    return None


def url_guard(allow_private: bool) -> Guard | None:
    """The guard the server fetches with: ``refusal``, or none when private URLs are allowed."""
    return None if allow_private else refusal
