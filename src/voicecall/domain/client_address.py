"""Who sent a webhook, for per-client limits and logs, under the same trust as the URL.

Behind ngrok, Tailscale or a reverse proxy every request, the carrier's included, comes from
the proxy's address, so a per-peer limit would put an attacker and the carrier in one bucket.
When the request's forwarding headers are trusted (``forwarding_headers_trusted``: forwarding
switched on *and* the TCP peer a trusted proxy), the client is the rightmost
``X-Forwarded-For`` hop that is not itself a trusted proxy: each proxy appends the address it
saw on the right, so everything left of the first hop our own proxies wrote is the client's
to invent. Otherwise the client is the TCP peer, and ``X-Forwarded-For`` is ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from voicecall.domain.signed_url import (
    UrlTrustSettings,
    forwarding_headers_trusted,
    is_loopback,
    normalize_peer,
)
from voicecall.domain.webhook import WebhookRequest

__all__ = ["FORWARDED_FOR_HEADER", "client_address"]

FORWARDED_FOR_HEADER: Final = "x-forwarded-for"


def client_address(request: WebhookRequest, settings: UrlTrustSettings) -> str | None:
    """The client's address: the TCP peer, or the rightmost untrusted forwarded hop."""
    peer = normalize_peer(request.peer)
    if not forwarding_headers_trusted(request, settings):
        return peer
    hops = [
        hop.strip()
        for name, value in request.headers
        if name.lower() == FORWARDED_FOR_HEADER
        for hop in value.split(",")
    ]
    trusted = {normalize_peer(ip) for ip in settings.trusted_proxy_ips}
    for raw in reversed(hops):
        hop = normalize_peer(_strip_port(raw))
        if hop is None or not _is_ip(hop):
            # Our own proxy wrote something that is not an address: do not let it name a
            # bucket of its own; the request counts against the proxy.
            return peer
        if hop in trusted or (settings.tunnel_provider == "ngrok" and is_loopback(hop)):
            continue
        return hop
    return peer


def _strip_port(hop: str) -> str:
    # "203.0.113.9:4711" and "[2001:db8::1]:4711" are written by some proxies.
    if hop.startswith("[") and "]" in hop:
        return hop[1 : hop.index("]")]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
