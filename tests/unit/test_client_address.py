"""Who sent a webhook (per-client limits and logs), under the same trust as the rebuilt URL.

Trusted forwarding: the client is the rightmost ``X-Forwarded-For`` hop that is not one of our
own proxies. Otherwise it is the TCP peer and ``X-Forwarded-For`` is ignored. A hop that is not
an address makes the request count against the proxy.
"""

from __future__ import annotations

import pytest

from voicecall.domain.client_address import client_address
from voicecall.domain.signed_url import UrlTrustSettings
from voicecall.domain.webhook import WebhookRequest

PROXY = "10.0.0.5"
INNER_PROXY = "10.0.0.6"
CLIENT = "203.0.113.9"
TRUST = UrlTrustSettings(trust_forwarding_headers=True, trusted_proxy_ips=(PROXY, INNER_PROXY))
NGROK = UrlTrustSettings(
    trust_forwarding_headers=True,
    tunnel_provider="ngrok",
    allow_ngrok_free_tier_loopback_bypass=True,
    serve_bind="127.0.0.1",
)


def request(*forwarded_for: str, peer: str | None = PROXY) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        path="/voice/webhook",
        query="",
        headers=tuple(("X-Forwarded-For", value) for value in forwarded_for),
        body=b"",
        peer=peer,
    )


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        pytest.param((CLIENT,), CLIENT, id="one-hop"),
        pytest.param((f"198.51.100.7, {CLIENT}",), CLIENT, id="rightmost-hop"),
        pytest.param((f"198.51.100.7, {CLIENT}, {INNER_PROXY}",), CLIENT, id="own-proxy-skipped"),
        pytest.param(("198.51.100.7", f"{CLIENT},{INNER_PROXY}"), CLIENT, id="repeated-header"),
        pytest.param((f"{CLIENT}:4711",), CLIENT, id="ipv4-with-port"),
        pytest.param(("[2001:db8::1]:4711",), "2001:db8::1", id="bracketed-ipv6-with-port"),
        pytest.param(("[2001:db8::1]",), "2001:db8::1", id="bracketed-ipv6"),
        pytest.param(("2001:db8::1",), "2001:db8::1", id="bare-ipv6"),
        pytest.param((f"::ffff:{CLIENT}",), CLIENT, id="ipv4-mapped"),
        pytest.param((f"  {CLIENT}  ",), CLIENT, id="spaces"),
        pytest.param((f"{INNER_PROXY}, {PROXY}",), PROXY, id="only-own-proxies"),
        pytest.param(("unknown",), PROXY, id="not-an-address"),
        pytest.param((f"{CLIENT}, unknown",), PROXY, id="not-an-address-right-of-client"),
        pytest.param(("2001:db8::1]",), PROXY, id="stray-bracket"),
        pytest.param(("",), PROXY, id="empty-hop"),
        pytest.param((), PROXY, id="no-header"),
    ],
)
def test_trusted_forwarding_names_the_rightmost_untrusted_hop(
    forwarded_for: tuple[str, ...], expected: str
) -> None:
    assert client_address(request(*forwarded_for), TRUST) == expected


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert client_address(request(CLIENT, peer="198.51.100.7"), TRUST) == "198.51.100.7"


def test_forwarding_switched_off_means_the_peer_is_the_client() -> None:
    settings = UrlTrustSettings(trusted_proxy_ips=(PROXY,))
    assert client_address(request(CLIENT), settings) == PROXY


def test_no_peer_and_no_trust_is_no_address() -> None:
    assert client_address(request(CLIENT, peer=None), TRUST) is None


def test_behind_ngrok_loopback_hops_are_the_tunnel_not_the_client() -> None:
    req = request(f"{CLIENT}, 127.0.0.1", peer="127.0.0.1")
    assert client_address(req, NGROK) == CLIENT


def test_loopback_hops_count_as_clients_without_ngrok() -> None:
    settings = UrlTrustSettings(trust_forwarding_headers=True, trusted_proxy_ips=(PROXY,))
    assert client_address(request(f"{CLIENT}, 127.0.0.1"), settings) == "127.0.0.1"
