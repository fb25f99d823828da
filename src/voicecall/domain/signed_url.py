"""Which URL a carrier signed, rebuilt from a request without trusting what it should not (SPEC §4).

Carriers sign the public URL they dialled. Behind a proxy or tunnel the server sees another
host, port and scheme, so the public URL is rebuilt from, in order of preference:

1. ``publicUrl`` when configured: its scheme, host and port, with the request's path and query
   exactly as received.
2. Forwarding headers (``X-Forwarded-Proto``, ``X-Forwarded-Host``, ``X-Original-Host``,
   ``ngrok-forwarded-host``), but only when forwarding is switched on (a non-empty
   ``allowedHosts`` or ``trustForwardingHeaders``) *and* the TCP peer is a trusted proxy.
3. The ``Host`` header, with scheme ``https``.

Every host that comes from a header is validated; anything doubtful is dropped rather than
repaired. A missing or invalid ``Host`` header becomes ``localhost``: the rebuilt URL then
matches no carrier signature, so the request fails closed instead of being checked against a
URL an attacker chose.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import attrs

from voicecall.domain.webhook import WebhookRequest

__all__ = [
    "FALLBACK_HOST",
    "FORWARDED_HOST_HEADERS",
    "UrlTrustSettings",
    "Verification",
    "callback_base_url",
    "forwarding_headers_trusted",
    "is_loopback",
    "is_valid_hostname",
    "normalize_peer",
    "reconstruct_public_url",
    "signature_headers_present",
    "twilio_url_variants",
]

FALLBACK_HOST: Final = "localhost"
"""Used when the Host header is missing or invalid; no carrier ever signs a URL on it."""

FORWARDED_HOST_HEADERS: Final = ("x-forwarded-host", "x-original-host", "ngrok-forwarded-host")
"""Consulted in this order; the first one present decides (see ``_forwarded_host``)."""

_FORWARDED_PROTO_HEADER: Final = "x-forwarded-proto"
_SCHEMES: Final = frozenset({"http", "https"})
_DEFAULT_SCHEME: Final = "https"
_MAX_HOSTNAME_LENGTH: Final = 253
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT: Final = re.compile(r"[1-9][0-9]{0,4}")
# Everything a host[:port] may contain; rejects '@', '/', '%', whitespace and non-ASCII up front.
_HOST_CHARS: Final = re.compile(r"[A-Za-z0-9.\-:\[\]]+")


@attrs.frozen
class _HostPort:
    host: str  # lower-cased; an IPv6 literal keeps its brackets
    port: int | None

    def render(self, port: int | None) -> str:
        return self.host if port is None else f"{self.host}:{port}"

    def __str__(self) -> str:
        return self.render(self.port)


@functools.lru_cache(maxsize=512)
def _parse_host_port(value: str) -> _HostPort | None:
    """Parse ``host[:port]`` strictly; None when anything about it is off."""
    if not value or _HOST_CHARS.fullmatch(value) is None:
        return None
    port_text: str | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        literal, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return None
        host = f"[{literal.lower()}]"
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    else:
        if "[" in value or "]" in value or value.count(":") > 1:
            return None  # an unbracketed IPv6 literal cannot be told apart from host:port
        name, sep, after = value.partition(":")
        if sep:
            port_text = after
        host = name.lower()
        if not _is_rfc1123_name(host):
            return None
    port: int | None = None
    if port_text is not None:
        if _PORT.fullmatch(port_text) is None:
            return None
        port = int(port_text)
        if port > 65535:
            return None
    return _HostPort(host, port)


def _is_rfc1123_name(name: str) -> bool:
    if not 0 < len(name) <= _MAX_HOSTNAME_LENGTH:
        return False
    return all(_LABEL.fullmatch(label) is not None for label in name.split("."))


def is_valid_hostname(host: str) -> bool:
    """Whether ``host`` is an acceptable ``host[:port]`` for a rebuilt URL.

    RFC 1123 labels (letters, digits, inner hyphens, 1-63 chars each), at most 253 chars,
    no ``@`` or any other URL punctuation, a bracketed IPv6 literal (``[::1]:8443``) allowed,
    and an optional port 1-65535 written without leading zeros.
    """
    return _parse_host_port(host) is not None


def normalize_peer(peer: str | None) -> str | None:
    """A peer address in canonical form; an IPv4-mapped IPv6 address becomes its IPv4 form.

    ``::ffff:127.0.0.1`` -> ``127.0.0.1``; ``[::1]`` -> ``::1``. Something that is not an IP
    address comes back stripped but otherwise unchanged, and only ever equals itself.
    """
    if peer is None:
        return None
    text = peer.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_loopback(address: str | None) -> bool:
    """A loopback address or ``localhost`` (IPv4-mapped forms included); None is not."""
    normalized = normalize_peer(address)
    if normalized is None:
        return False
    if normalized.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(normalized).is_loopback
    except ValueError:
        return False


def _check_public_url(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme.lower() not in _SCHEMES or _parse_host_port(parts.netloc) is None:
        raise ValueError(f"publicUrl must be an http(s) URL with a valid host: {value!r}")


def _to_str_tuple(values: object) -> tuple[str, ...]:
    if isinstance(values, str):
        return (values,)
    if isinstance(values, list | tuple | set | frozenset):
        return tuple(str(item) for item in values)
    raise TypeError(f"expected a sequence of strings, got {type(values).__name__}")


@attrs.frozen
class UrlTrustSettings:
    """What the operator configured about proxies, tunnels and the public URL.

    Built by the caller from config (``publicUrl``, ``webhookSecurity.*``, ``tunnel.*``,
    ``serve.bind``). ``public_url`` must be an http(s) URL with a valid host (ValueError).
    """

    public_url: str | None = attrs.field(default=None, validator=_check_public_url)
    allowed_hosts: tuple[str, ...] = attrs.field(default=(), converter=_to_str_tuple)
    trust_forwarding_headers: bool = False
    trusted_proxy_ips: tuple[str, ...] = attrs.field(default=(), converter=_to_str_tuple)
    tunnel_provider: str | None = None
    allow_ngrok_free_tier_loopback_bypass: bool = False
    serve_bind: str = "127.0.0.1"


@attrs.frozen
class Verification:
    """The outcome of checking one request's carrier signature.

    Attributes:
        ok: whether the signature is valid for this exact request.
        reason: short and safe to log; never holds a secret.
        checked_urls: the URLs the signature was checked against, for the operator's log.
        replay_key: signature material identifying this exact request; set when ``ok``.
    """

    ok: bool
    reason: str
    checked_urls: tuple[str, ...] = ()
    replay_key: str | None = None


def _first_value(raw: str | None) -> str | None:
    if raw is None:
        return None
    first = raw.split(",", 1)[0].strip()
    return first or None


def _ngrok_bypass_applies(peer: str | None, settings: UrlTrustSettings) -> bool:
    return (
        settings.allow_ngrok_free_tier_loopback_bypass
        and settings.tunnel_provider == "ngrok"
        and is_loopback(settings.serve_bind)
        and is_loopback(peer)
    )


def forwarding_headers_trusted(request: WebhookRequest, settings: UrlTrustSettings) -> bool:
    """Whether this request's forwarding headers may shape the rebuilt URL.

    Forwarding must be switched on (a non-empty ``allowed_hosts`` or
    ``trust_forwarding_headers``) and the peer must be a trusted proxy. The ngrok free-tier
    bypass (``tunnel_provider == "ngrok"``, a loopback ``serve_bind`` and a loopback peer)
    counts the peer as a trusted proxy; nothing else. No peer address means untrusted.
    """
    if not (settings.allowed_hosts or settings.trust_forwarding_headers):
        return False
    peer = normalize_peer(request.peer)
    if peer is None:
        return False
    trusted = {normalize_peer(ip) for ip in settings.trusted_proxy_ips}
    return peer in trusted or _ngrok_bypass_applies(peer, settings)


def _host_allowed(candidate: _HostPort, allowed_hosts: tuple[str, ...]) -> bool:
    if not allowed_hosts:
        return True
    for entry in allowed_hosts:
        allowed = _parse_host_port(entry.strip())
        if allowed is None or allowed.host != candidate.host:
            continue
        # An entry without a port admits the host on any port; with one, only that port.
        if allowed.port is None or allowed.port == candidate.port:
            return True
    return False


def _forwarded_host(request: WebhookRequest, settings: UrlTrustSettings) -> _HostPort | None:
    # The first forwarding header present decides; if its value is invalid or not allowed the
    # forwarded host is ignored altogether rather than hunting through the others.
    for name in FORWARDED_HOST_HEADERS:
        raw = request.header(name)
        if raw is None:
            continue
        value = _first_value(raw)
        parsed = _parse_host_port(value) if value is not None else None
        if parsed is None or not _host_allowed(parsed, settings.allowed_hosts):
            return None
        return parsed
    return None


def _host_header(request: WebhookRequest) -> _HostPort | None:
    raw = request.header("host")
    return _parse_host_port(raw.strip()) if raw is not None else None


def reconstruct_public_url(request: WebhookRequest, settings: UrlTrustSettings) -> str:
    """The public URL the carrier most likely signed for this request (see module docstring)."""
    if settings.public_url is not None:
        parts = urlsplit(settings.public_url)
        public = _parse_host_port(parts.netloc)
        if public is not None:  # always, UrlTrustSettings validated it
            return f"{parts.scheme.lower()}://{public}{request.path_and_query}"

    scheme = _DEFAULT_SCHEME
    host: _HostPort | None = None
    if forwarding_headers_trusted(request, settings):
        proto = _first_value(request.header(_FORWARDED_PROTO_HEADER))
        if proto is not None and proto.lower() in _SCHEMES:
            scheme = proto.lower()
        host = _forwarded_host(request, settings)
    if host is None:
        host = _host_header(request)
    rendered = str(host) if host is not None else FALLBACK_HOST
    return f"{scheme}://{rendered}{request.path_and_query}"


def callback_base_url(request: WebhookRequest, settings: UrlTrustSettings) -> str:
    """Where the carrier should call back about this (verified) request: the URL it signed,
    without the query. With no ``publicUrl`` and no tunnel (inbound-only behind a proxy), the
    documents we answer with point their callbacks here."""
    parts = urlsplit(reconstruct_public_url(request, settings))
    return urlunsplit(parts._replace(query="", fragment=""))


def _with_port(url: str, port: int | None) -> str | None:
    parts = urlsplit(url)
    parsed = _parse_host_port(parts.netloc)
    if parsed is None:
        return None
    return urlunsplit(parts._replace(netloc=parsed.render(port)))


def _port_of(url: str) -> int | None:
    parsed = _parse_host_port(urlsplit(url).netloc)
    return parsed.port if parsed is not None else None


def twilio_url_variants(
    url: str, request: WebhookRequest, settings: UrlTrustSettings
) -> tuple[str, ...]:
    """URLs to try a Twilio signature against, most likely first, without repeats.

    Twilio signs the URL exactly as it dialled it, so the rebuilt ``url`` is tried as is, then
    without its port, then with the port of ``publicUrl`` (when set) or else of the Host
    header. (The Twilio SDK itself also tries each with and without the scheme's default port.)
    """
    variants = [url, _with_port(url, None)]
    if settings.public_url is not None:
        port = _port_of(settings.public_url)
    else:
        host = _host_header(request)
        port = host.port if host is not None else None
    if port is not None:
        variants.append(_with_port(url, port))
    return tuple(dict.fromkeys(v for v in variants if v is not None))


def signature_headers_present(
    header_sets: tuple[tuple[str, ...], ...], header_names: Iterable[str]
) -> bool:
    """Whether one complete group of a carrier's signature headers is among ``header_names``.

    Checked before a request's body is read, so a request that cannot be verified at all is
    refused without reading it. Names compare case-insensitively.
    """
    present = {name.lower() for name in header_names}
    return any(all(name in present for name in group) for group in header_sets)
