"""SPEC §4 rules of the rebuilt URL one at a time: hostname limits, first forwarded value,
``allowedHosts`` entries, the callback base, and the ``publicUrl`` port Twilio may have signed.

Host parsing is memoised, so each test starts from an empty memo: a verdict remembered from
an earlier test must not stand in for the rule under test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from voicecall.domain import signed_url
from voicecall.domain.signed_url import (
    UrlTrustSettings,
    callback_base_url,
    is_loopback,
    is_valid_hostname,
    reconstruct_public_url,
    twilio_url_variants,
)
from voicecall.domain.webhook import WebhookRequest

PROXY = "10.0.0.5"
TRUST_PROXY = UrlTrustSettings(trust_forwarding_headers=True, trusted_proxy_ips=(PROXY,))


@pytest.fixture(autouse=True)
def _fresh_host_memo() -> Iterator[None]:
    signed_url._parse_host_port.cache_clear()
    yield
    signed_url._parse_host_port.cache_clear()


def request(
    headers: dict[str, str], *, path: str = "/voice/webhook", query: str = ""
) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        path=path,
        query=query,
        headers=tuple(headers.items()),
        body=b"",
        peer=PROXY,
    )


def name_of_length(length: int) -> str:
    """A dotted name of exactly ``length`` characters, every label valid (at most 63)."""
    labels = []
    remaining = length
    while remaining > 0:
        size = min(63, remaining)
        labels.append("a" * size)
        remaining -= size + 1
    name = ".".join(labels)
    if len(name) > length:  # the last label only had room for the dot
        name = name[: length - 1] + "b"
    assert len(name) == length
    return name


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("a", id="one-character"),
        pytest.param("example.com", id="dotted"),
        pytest.param("a-b.example.com:8443", id="with-port"),
        pytest.param(name_of_length(253), id="253-characters"),
    ],
)
def test_hostnames_within_rfc1123_limits_are_valid(host: str) -> None:
    assert is_valid_hostname(host)


@pytest.mark.parametrize(
    "host",
    [
        pytest.param(name_of_length(254), id="254-characters"),
        pytest.param("example..com", id="empty-label"),
        pytest.param("-a.example.com", id="leading-hyphen"),
        pytest.param("a" * 64 + ".com", id="64-character-label"),
    ],
)
def test_hostnames_beyond_rfc1123_limits_are_invalid(host: str) -> None:
    assert not is_valid_hostname(host)


def test_rebuilt_url_uses_a_253_character_host_but_not_254() -> None:
    ok, too_long = name_of_length(253), name_of_length(254)
    assert reconstruct_public_url(request({"host": ok}), UrlTrustSettings()).startswith(
        f"https://{ok}/"
    )
    assert reconstruct_public_url(request({"host": too_long}), UrlTrustSettings()) == (
        "https://localhost/voice/webhook"
    )


def test_only_the_first_forwarded_value_counts() -> None:
    headers = {
        "host": "internal:8080",
        "x-forwarded-proto": "http, https, https",
        "x-forwarded-host": "public.example.com, proxy1.example, proxy2.example",
    }
    assert reconstruct_public_url(request(headers), TRUST_PROXY) == (
        "http://public.example.com/voice/webhook"
    )


def test_any_allowed_hosts_entry_admits_the_forwarded_host() -> None:
    settings = UrlTrustSettings(
        allowed_hosts=("other.example", "public.example.com"), trusted_proxy_ips=(PROXY,)
    )
    headers = {"host": "internal:8080", "x-forwarded-host": "public.example.com"}
    assert reconstruct_public_url(request(headers), settings) == (
        "https://public.example.com/voice/webhook"
    )


def test_callback_base_drops_the_query() -> None:
    req = request({"host": "example.com"}, query="CallSid=CA1&x=y")
    assert reconstruct_public_url(req, UrlTrustSettings()).endswith("?CallSid=CA1&x=y")
    assert callback_base_url(req, UrlTrustSettings()) == "https://example.com/voice/webhook"


def test_callback_base_without_a_query_has_no_question_mark() -> None:
    req = request({"host": "example.com"})
    assert callback_base_url(req, UrlTrustSettings()) == "https://example.com/voice/webhook"


def test_callback_base_drops_a_fragment_in_the_received_path() -> None:
    req = request({"host": "example.com"}, path="/voice/webhook#part", query="a=1")
    assert callback_base_url(req, UrlTrustSettings()) == "https://example.com/voice/webhook"


def test_twilio_variants_add_the_public_url_port() -> None:
    # Twilio may have dialled publicUrl with its port; the rebuilt URL lacks it here.
    settings = UrlTrustSettings(public_url="https://example.com:9443")
    variants = twilio_url_variants(
        "https://example.com/hook", request({"host": "127.0.0.1:3334"}), settings
    )
    assert variants == ("https://example.com/hook", "https://example.com:9443/hook")


def test_twilio_variants_public_url_without_port_adds_nothing() -> None:
    settings = UrlTrustSettings(public_url="https://example.com")
    variants = twilio_url_variants(
        "https://example.com:8443/hook", request({"host": "127.0.0.1:3334"}), settings
    )
    assert variants == ("https://example.com:8443/hook", "https://example.com/hook")


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        pytest.param(None, False, id="none"),
        pytest.param("", False, id="empty"),
        pytest.param("localhost", True, id="localhost"),
        pytest.param("LocalHost", True, id="localhost-any-case"),
        pytest.param("127.0.0.1", True, id="ipv4"),
        pytest.param("127.8.9.10", True, id="ipv4-anywhere-in-127"),
        pytest.param("[::1]", True, id="ipv6"),
        pytest.param("::ffff:127.0.0.1", True, id="ipv4-mapped"),
        pytest.param("10.0.0.5", False, id="private"),
        pytest.param("example.com", False, id="a-name"),
        pytest.param("localhost.example.com", False, id="a-name-starting-localhost"),
    ],
)
def test_is_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_settings_refuse_a_non_sequence_and_say_what_came() -> None:
    with pytest.raises(TypeError, match=r"^expected a sequence of strings, got int$"):
        UrlTrustSettings(trusted_proxy_ips=5)  # type: ignore[arg-type]
