"""Rebuilding the URL a carrier signed: one row per rule of SPEC §4, hostile rows included."""

from __future__ import annotations

import attrs
import pytest

from voicecall.domain.signed_url import (
    FALLBACK_HOST,
    UrlTrustSettings,
    forwarding_headers_trusted,
    is_valid_hostname,
    normalize_peer,
    reconstruct_public_url,
    twilio_url_variants,
)
from voicecall.domain.webhook import WebhookRequest

PATH = "/voice/webhook"
PROXY = "10.0.0.5"
STRANGER = "203.0.113.9"
LONG_HOST = ("a" * 60 + ".") * 4 + "a" * 56  # 300 characters, every label valid
assert len(LONG_HOST) == 300


def request(
    headers: dict[str, str] | None = None,
    peer: str | None = PROXY,
    path: str = PATH,
    query: str = "",
) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        path=path,
        query=query,
        headers=tuple((headers or {}).items()),
        body=b"",
        peer=peer,
    )


TRUST_PROXY = UrlTrustSettings(trust_forwarding_headers=True, trusted_proxy_ips=(PROXY,))
ALLOW_PUBLIC = UrlTrustSettings(allowed_hosts=("public.example.com",), trusted_proxy_ips=(PROXY,))
NGROK = UrlTrustSettings(
    trust_forwarding_headers=True,
    tunnel_provider="ngrok",
    allow_ngrok_free_tier_loopback_bypass=True,
    serve_bind="127.0.0.1",
)


@attrs.frozen
class Row:
    id: str
    settings: UrlTrustSettings
    headers: dict[str, str]
    expected: str
    peer: str | None = PROXY
    path: str = PATH
    query: str = ""


ROWS = [
    # publicUrl
    Row(
        "public-url-scheme-host-port-with-request-path-and-query",
        UrlTrustSettings(public_url="https://Voice.Example.com:8443/ignored/path?x=1"),
        {"host": "127.0.0.1:3334"},
        "https://voice.example.com:8443/voice/webhook?a=1&b=%20c",
        query="a=1&b=%20c",
    ),
    Row(
        "public-url-wins-over-trusted-forwarding-headers",
        attrs.evolve(TRUST_PROXY, public_url="http://voice.example.com"),
        {"host": "internal:3334", "x-forwarded-host": "other.example.com"},
        "http://voice.example.com/voice/webhook",
    ),
    Row(
        "path-kept-exactly-as-received",
        UrlTrustSettings(),
        {"host": "example.com"},
        "https://example.com//voice/%7Ewebhook/?q=%41",
        path="//voice/%7Ewebhook/",
        query="q=%41",
    ),
    # Host header
    Row(
        "plain-host-header-defaults-to-https",
        UrlTrustSettings(),
        {"host": "example.com"},
        "https://example.com/voice/webhook",
    ),
    Row(
        "host-header-port-kept-and-lower-cased",
        UrlTrustSettings(),
        {"host": "Example.COM:8443"},
        "https://example.com:8443/voice/webhook",
    ),
    Row(
        "host-header-bracketed-ipv6",
        UrlTrustSettings(),
        {"host": "[::1]:3334"},
        "https://[::1]:3334/voice/webhook",
    ),
    Row(
        "missing-host-header-falls-back-to-localhost",
        UrlTrustSettings(),
        {},
        f"https://{FALLBACK_HOST}/voice/webhook",
    ),
    Row(
        "host-header-with-userinfo-falls-back-to-localhost",
        UrlTrustSettings(),
        {"host": "user@example.com"},
        f"https://{FALLBACK_HOST}/voice/webhook",
    ),
    Row(
        "host-header-300-chars-falls-back-to-localhost",
        UrlTrustSettings(),
        {"host": LONG_HOST},
        f"https://{FALLBACK_HOST}/voice/webhook",
    ),
    Row(
        "host-header-bad-port-falls-back-to-localhost",
        UrlTrustSettings(),
        {"host": "example.com:70000"},
        f"https://{FALLBACK_HOST}/voice/webhook",
    ),
    # Who may send forwarding headers
    Row(
        "trusted-proxy-forwarded-host-and-proto-used",
        TRUST_PROXY,
        {
            "host": "internal:3334",
            "x-forwarded-host": "public.example.com",
            "x-forwarded-proto": "http",
        },
        "http://public.example.com/voice/webhook",
    ),
    Row(
        "forwarded-host-injection-from-untrusted-peer-ignored",
        TRUST_PROXY,
        {"host": "example.com", "x-forwarded-host": "evil.example.net"},
        "https://example.com/voice/webhook",
        peer=STRANGER,
    ),
    Row(
        "forwarded-proto-from-untrusted-peer-ignored",
        TRUST_PROXY,
        {"host": "example.com", "x-forwarded-proto": "http"},
        "https://example.com/voice/webhook",
        peer=STRANGER,
    ),
    Row(
        "no-peer-address-means-untrusted",
        TRUST_PROXY,
        {"host": "example.com", "x-forwarded-host": "public.example.com"},
        "https://example.com/voice/webhook",
        peer=None,
    ),
    Row(
        "trusted-peer-but-forwarding-not-enabled-ignored",
        UrlTrustSettings(trusted_proxy_ips=(PROXY,)),
        {"host": "example.com", "x-forwarded-host": "public.example.com"},
        "https://example.com/voice/webhook",
    ),
    Row(
        "forwarding-enabled-but-no-trusted-proxies-ignored",
        UrlTrustSettings(trust_forwarding_headers=True),
        {"host": "example.com", "x-forwarded-host": "public.example.com"},
        "https://example.com/voice/webhook",
    ),
    Row(
        "ipv4-mapped-ipv6-peer-matches-ipv4-trusted-proxy",
        UrlTrustSettings(trust_forwarding_headers=True, trusted_proxy_ips=("127.0.0.1",)),
        {"host": "internal", "x-forwarded-host": "public.example.com"},
        "https://public.example.com/voice/webhook",
        peer="::ffff:127.0.0.1",
    ),
    Row(
        "ipv4-peer-matches-ipv4-mapped-trusted-proxy-entry",
        UrlTrustSettings(trust_forwarding_headers=True, trusted_proxy_ips=("::ffff:10.0.0.5",)),
        {"host": "internal", "x-forwarded-host": "public.example.com"},
        "https://public.example.com/voice/webhook",
    ),
    Row(
        "ipv4-mapped-peer-not-in-list-still-untrusted",
        UrlTrustSettings(trust_forwarding_headers=True, trusted_proxy_ips=("127.0.0.1",)),
        {"host": "example.com", "x-forwarded-host": "public.example.com"},
        "https://example.com/voice/webhook",
        peer="::ffff:203.0.113.9",
    ),
    # allowedHosts
    Row(
        "allowed-host-accepted-case-insensitively",
        ALLOW_PUBLIC,
        {"host": "internal", "x-forwarded-host": "PUBLIC.example.com"},
        "https://public.example.com/voice/webhook",
    ),
    Row(
        "forwarded-host-outside-allowed-hosts-falls-back-to-host-header",
        ALLOW_PUBLIC,
        {"host": "internal:3334", "x-forwarded-host": "evil.example.net"},
        "https://internal:3334/voice/webhook",
    ),
    Row(
        "allowed-host-entry-with-port-admits-only-that-port",
        UrlTrustSettings(allowed_hosts=("public.example.com:8443",), trusted_proxy_ips=(PROXY,)),
        {"host": "internal", "x-forwarded-host": "public.example.com:9999"},
        "https://internal/voice/webhook",
    ),
    Row(
        "allowed-host-entry-without-port-admits-any-port",
        ALLOW_PUBLIC,
        {"host": "internal", "x-forwarded-host": "public.example.com:8443"},
        "https://public.example.com:8443/voice/webhook",
    ),
    # Header values
    Row(
        "comma-separated-forwarded-host-first-value-trimmed",
        TRUST_PROXY,
        {"host": "internal", "x-forwarded-host": "  public.example.com , evil.example.net"},
        "https://public.example.com/voice/webhook",
    ),
    Row(
        "comma-separated-forwarded-host-first-value-must-be-allowed",
        ALLOW_PUBLIC,
        {"host": "internal", "x-forwarded-host": "evil.example.net, public.example.com"},
        "https://internal/voice/webhook",
    ),
    Row(
        "comma-separated-forwarded-proto-first-value",
        TRUST_PROXY,
        {"host": "example.com", "x-forwarded-proto": " HTTP , https"},
        "http://example.com/voice/webhook",
    ),
    Row(
        "bad-forwarded-proto-ignored",
        TRUST_PROXY,
        {"host": "example.com", "x-forwarded-proto": "javascript"},
        "https://example.com/voice/webhook",
    ),
    Row(
        "forwarded-proto-alone-keeps-host-header",
        TRUST_PROXY,
        {"host": "example.com:8080", "x-forwarded-proto": "http"},
        "http://example.com:8080/voice/webhook",
    ),
    Row(
        "forwarded-host-with-userinfo-ignored",
        TRUST_PROXY,
        {"host": "example.com", "x-forwarded-host": "public.example.com@evil.example.net"},
        "https://example.com/voice/webhook",
    ),
    Row(
        "forwarded-host-300-chars-ignored",
        TRUST_PROXY,
        {"host": "example.com", "x-forwarded-host": LONG_HOST},
        "https://example.com/voice/webhook",
    ),
    Row(
        "forwarded-host-with-path-ignored",
        TRUST_PROXY,
        {"host": "example.com", "x-forwarded-host": "evil.example.net/x?"},
        "https://example.com/voice/webhook",
    ),
    Row(
        "forwarded-bracketed-ipv6-with-port",
        TRUST_PROXY,
        {"host": "internal", "x-forwarded-host": "[2001:DB8::1]:8443"},
        "https://[2001:db8::1]:8443/voice/webhook",
    ),
    Row(
        "x-original-host-used-when-no-x-forwarded-host",
        TRUST_PROXY,
        {"host": "internal", "x-original-host": "public.example.com"},
        "https://public.example.com/voice/webhook",
    ),
    Row(
        "ngrok-forwarded-host-used",
        TRUST_PROXY,
        {"host": "internal", "ngrok-forwarded-host": "abc.ngrok-free.app"},
        "https://abc.ngrok-free.app/voice/webhook",
    ),
    Row(
        "first-forwarding-header-present-decides",
        TRUST_PROXY,
        {"host": "internal", "x-forwarded-host": "bad host", "x-original-host": "ok.example.com"},
        "https://internal/voice/webhook",
    ),
    # ngrok free-tier loopback bypass
    Row(
        "ngrok-bypass-trusts-loopback-peer",
        NGROK,
        {"host": "127.0.0.1:3334", "ngrok-forwarded-host": "abc.ngrok-free.app"},
        "https://abc.ngrok-free.app/voice/webhook",
        peer="127.0.0.1",
    ),
    Row(
        "ngrok-bypass-ipv4-mapped-loopback-peer",
        NGROK,
        {"host": "127.0.0.1:3334", "x-forwarded-host": "abc.ngrok-free.app"},
        "https://abc.ngrok-free.app/voice/webhook",
        peer="::ffff:127.0.0.1",
    ),
    Row(
        "ngrok-bypass-ipv6-loopback-bind-and-peer",
        attrs.evolve(NGROK, serve_bind="::1"),
        {"host": "[::1]:3334", "x-forwarded-host": "abc.ngrok-free.app"},
        "https://abc.ngrok-free.app/voice/webhook",
        peer="::1",
    ),
    Row(
        "ngrok-bypass-refused-with-non-loopback-bind",
        attrs.evolve(NGROK, serve_bind="0.0.0.0"),
        {"host": "127.0.0.1:3334", "x-forwarded-host": "abc.ngrok-free.app"},
        "https://127.0.0.1:3334/voice/webhook",
        peer="127.0.0.1",
    ),
    Row(
        "ngrok-bypass-refused-with-non-loopback-peer",
        NGROK,
        {"host": "example.com", "x-forwarded-host": "abc.ngrok-free.app"},
        "https://example.com/voice/webhook",
        peer=STRANGER,
    ),
    Row(
        "ngrok-bypass-refused-with-non-ngrok-provider",
        attrs.evolve(NGROK, tunnel_provider="tailscale-funnel"),
        {"host": "127.0.0.1:3334", "x-forwarded-host": "abc.ngrok-free.app"},
        "https://127.0.0.1:3334/voice/webhook",
        peer="127.0.0.1",
    ),
    Row(
        "ngrok-bypass-refused-when-flag-off",
        attrs.evolve(NGROK, allow_ngrok_free_tier_loopback_bypass=False),
        {"host": "127.0.0.1:3334", "x-forwarded-host": "abc.ngrok-free.app"},
        "https://127.0.0.1:3334/voice/webhook",
        peer="127.0.0.1",
    ),
    Row(
        "ngrok-bypass-refused-without-peer",
        NGROK,
        {"host": "127.0.0.1:3334", "x-forwarded-host": "abc.ngrok-free.app"},
        "https://127.0.0.1:3334/voice/webhook",
        peer=None,
    ),
    Row(
        "ngrok-bypass-still-filtered-by-allowed-hosts",
        attrs.evolve(NGROK, trust_forwarding_headers=False, allowed_hosts=("abc.ngrok-free.app",)),
        {"host": "127.0.0.1:3334", "x-forwarded-host": "evil.ngrok-free.app"},
        "https://127.0.0.1:3334/voice/webhook",
        peer="127.0.0.1",
    ),
    Row(
        "ngrok-bypass-admits-allowed-host",
        attrs.evolve(NGROK, trust_forwarding_headers=False, allowed_hosts=("abc.ngrok-free.app",)),
        {"host": "127.0.0.1:3334", "x-forwarded-host": "abc.ngrok-free.app"},
        "https://abc.ngrok-free.app/voice/webhook",
        peer="127.0.0.1",
    ),
    Row(
        "ngrok-bypass-needs-forwarding-enabled",
        attrs.evolve(NGROK, trust_forwarding_headers=False),
        {"host": "127.0.0.1:3334", "x-forwarded-host": "abc.ngrok-free.app"},
        "https://127.0.0.1:3334/voice/webhook",
        peer="127.0.0.1",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_reconstruct_public_url(row: Row) -> None:
    req = request(row.headers, peer=row.peer, path=row.path, query=row.query)
    assert reconstruct_public_url(req, row.settings) == row.expected


def test_rows_have_unique_ids() -> None:
    assert len({row.id for row in ROWS}) == len(ROWS)


def test_forwarding_trust_is_reported_separately() -> None:
    assert forwarding_headers_trusted(request(), TRUST_PROXY)
    assert not forwarding_headers_trusted(request(peer=STRANGER), TRUST_PROXY)
    assert forwarding_headers_trusted(request(peer="127.0.0.1"), NGROK)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "EXAMPLE.com",
        "localhost",
        "a-b.example.com",
        "xn--bcher-kva.example",
        "127.0.0.1",
        "example.com:1",
        "example.com:65535",
        "[::1]",
        "[::1]:8443",
        "[2001:db8::1]:443",
        "a" * 63 + ".com",
        ("a" * 63 + ".") * 3 + "a" * 61,  # 253 characters
    ],
)
def test_valid_hostnames(host: str) -> None:
    assert is_valid_hostname(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "user@example.com",
        "user:pass@example.com",
        LONG_HOST,
        ("a" * 63 + ".") * 3 + "a" * 62,  # 254 characters
        "a" * 64 + ".com",
        "-example.com",
        "example-.com",
        "exa_mple.com",
        "example..com",
        "example.com.",
        ".example.com",
        "example.com:0",
        "example.com:65536",
        "example.com:080",
        "example.com:",
        "example.com:http",
        "example.com:443:443",
        "::1",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[not-ipv6]",
        "[fe80::1%eth0]",
        "example.com/path",
        "example.com?x",
        "example.com#x",
        "exam ple.com",
        " example.com",
        "exämple.com",
        "example.com\r\nX-Injected: 1",
    ],
)
def test_invalid_hostnames(host: str) -> None:
    assert not is_valid_hostname(host)


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        (None, None),
        ("", None),
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::FFFF:10.0.0.5", "10.0.0.5"),
        ("::ffff:7f00:1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("2001:DB8::1", "2001:db8::1"),
        (" 10.0.0.5 ", "10.0.0.5"),
        ("testclient", "testclient"),
    ],
)
def test_normalize_peer(peer: str | None, expected: str | None) -> None:
    assert normalize_peer(peer) == expected


@pytest.mark.parametrize(
    ("settings", "host", "url", "expected"),
    [
        pytest.param(
            UrlTrustSettings(),
            "example.com",
            "https://example.com/hook?a=1",
            ("https://example.com/hook?a=1",),
            id="no-port-anywhere-single-variant",
        ),
        pytest.param(
            UrlTrustSettings(),
            "example.com:8443",
            "https://example.com:8443/hook",
            ("https://example.com:8443/hook", "https://example.com/hook"),
            id="rebuilt-with-port-then-without",
        ),
        pytest.param(
            TRUST_PROXY,
            "example.com:8443",
            "https://example.com/hook",
            ("https://example.com/hook", "https://example.com:8443/hook"),
            id="forwarded-host-without-port-gets-host-header-port",
        ),
        pytest.param(
            UrlTrustSettings(public_url="https://example.com:9443"),
            "127.0.0.1:3334",
            "https://example.com:9443/hook",
            ("https://example.com:9443/hook", "https://example.com/hook"),
            id="public-url-port-wins-over-host-header-port",
        ),
        pytest.param(
            UrlTrustSettings(),
            "[::1]:3334",
            "https://[::1]:3334/hook",
            ("https://[::1]:3334/hook", "https://[::1]/hook"),
            id="ipv6-port-removed-keeps-brackets",
        ),
        pytest.param(
            UrlTrustSettings(),
            "user@evil",
            "https://localhost/hook",
            ("https://localhost/hook",),
            id="invalid-host-header-adds-nothing",
        ),
    ],
)
def test_twilio_url_variants(
    settings: UrlTrustSettings, host: str, url: str, expected: tuple[str, ...]
) -> None:
    assert twilio_url_variants(url, request({"host": host}), settings) == expected


@pytest.mark.parametrize(
    "public_url",
    ["example.com", "ftp://example.com", "https://user@example.com", "https://", "https://a_b.com"],
)
def test_bad_public_url_is_refused_at_construction(public_url: str) -> None:
    with pytest.raises(ValueError, match="publicUrl"):
        UrlTrustSettings(public_url=public_url)


def test_settings_accept_lists_from_config() -> None:
    settings = UrlTrustSettings(allowed_hosts=["a.example"], trusted_proxy_ips=["10.0.0.1"])
    assert settings.allowed_hosts == ("a.example",)
    assert settings.trusted_proxy_ips == ("10.0.0.1",)
