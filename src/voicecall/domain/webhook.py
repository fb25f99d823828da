"""A carrier's HTTP request as the webhook listener received it, before anything trusts it."""

from __future__ import annotations

import attrs

__all__ = ["WebhookRequest", "WebhookResponse"]


def _lower_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((name.lower(), value) for name, value in headers)


@attrs.frozen
class WebhookRequest:
    """One inbound webhook request, exactly as the server saw it.

    Attributes:
        method: HTTP method, upper case.
        path: the request path exactly as received (not normalised).
        query: the raw query string without the leading ``?`` ("" when none).
        headers: header pairs, names lower-cased, in arrival order; repeats kept.
        body: the raw body bytes.
        peer: the TCP peer address, or None when the server could not tell.
    """

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...] = attrs.field(converter=_lower_headers)
    body: bytes
    peer: str | None

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    @property
    def path_and_query(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@attrs.frozen
class WebhookResponse:
    """What the listener answers the carrier (TwiML, XML, JSON or an empty body)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
