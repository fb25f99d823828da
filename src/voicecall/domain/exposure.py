"""Where the carrier reaches us: ``publicUrl``, a tunnel's URL, or nothing yet (SPEC §2, §4).

One :class:`PublicAddress` per gateway holds the webhook URL as it is known now. Carriers are
told it on every call and check signatures against it; the media-stream URL follows it. With a
tunnel it arrives after start, can drop, and (an ngrok tunnel without a reserved domain) can come
back as a different URL; each change is pushed to the subscribers (the carrier adapter).

New outbound calls need a settled URL, because the carrier would otherwise have nowhere (or a
stale place) to call back; inbound calls and live calls never depend on it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import attrs

from voicecall.domain.errors import CallerError

__all__ = ["NO_PUBLIC_URL", "NotReachable", "PublicAddress", "Reachability"]

NO_PUBLIC_URL = "no public webhook URL: set publicUrl or tunnel.provider"


class NotReachable(CallerError):
    """A new outbound call is refused: the carrier would have nowhere to call back.

    Its own RPC code (``not_reachable``) so scripts can tell it from bad input; the CLI exits 1.
    """

    code = "not_reachable"


class Reachability(enum.StrEnum):
    NONE = "none"
    """No publicUrl and no tunnel: inbound behind a proxy only."""
    STATIC = "static"
    """``publicUrl``."""
    PENDING = "pending"
    """A tunnel is configured and has not reported its URL yet."""
    UP = "up"
    DOWN = "down"
    """The tunnel dropped; it is being re-established."""
    SETTLING = "settling"
    """The tunnel came back with a different URL; new outbound calls wait."""


def _join(base: str, path: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@attrs.define
class PublicAddress:
    """The public webhook URL and whether new outbound calls may rely on it.

    Args:
        webhook_path: ``serve.path``; a tunnel's base URL gets it appended.
        stream_path: ``streaming.streamPath`` with streaming on, else None.
        required: False for the offline mock, which needs no URL to place calls.
        local_stream_url: the stream URL to use while no public URL is known (local dev).
    """

    webhook_path: str
    stream_path: str | None = None
    required: bool = True
    local_stream_url: str | None = None
    url: str | None = None
    state: Reachability = Reachability.NONE
    detail: str = ""
    _subscribers: list[Callable[[str], None]] = attrs.field(factory=list, alias="_subscribers")

    @classmethod
    def static(cls, public_url: str, **kwargs: object) -> PublicAddress:
        address = cls(**kwargs)  # type: ignore[arg-type]
        address.url, address.state = public_url, Reachability.STATIC
        return address

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(url)`` now if a URL is known, and on every change after."""
        self._subscribers.append(callback)
        if self.url is not None:
            callback(self.url)

    def adopt_base(self, base_url: str) -> bool:
        """A tunnel reports ``base_url`` (scheme and host). Returns whether the URL changed
        from one it had before (then the address is SETTLING, not UP)."""
        url = _join(base_url, self.webhook_path)
        changed = self.url is not None and url != self.url
        self.url = url
        self.state = Reachability.SETTLING if changed else Reachability.UP
        self.detail = ""
        for callback in self._subscribers:
            callback(url)
        return changed

    def settle(self) -> None:
        if self.state is Reachability.SETTLING:
            self.state = Reachability.UP

    def drop(self, reason: str) -> None:
        self.state = Reachability.DOWN
        self.detail = reason

    @property
    def stream_url(self) -> str | None:
        """Where carriers open media streams: the public host over ``wss`` (``ws`` for http)."""
        if self.stream_path is None:
            return None
        if self.url is None:
            return self.local_stream_url
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, self.stream_path, "", ""))

    def check_outbound(self) -> None:
        """Refuse a new outbound call the carrier could not call back about.

        Raises:
            NotReachable: no URL at all, a tunnel not up yet or down, or a URL change not
                settled.
        """
        if not self.required or self.state in (Reachability.STATIC, Reachability.UP):
            return
        if self.state is Reachability.NONE:
            raise NotReachable(NO_PUBLIC_URL)
        if self.state is Reachability.PENDING:
            raise NotReachable("the tunnel has not reported its public URL yet; try again shortly")
        if self.state is Reachability.DOWN:
            raise NotReachable(
                f"the tunnel is down ({self.detail}); it is being re-established, and new "
                "outbound calls are refused until it is back"
            )
        raise NotReachable(
            f"the tunnel's public URL changed to {self.url}; new outbound calls wait until it "
            "has settled (set tunnel.ngrokDomain for a URL that survives reconnects)"
        )
