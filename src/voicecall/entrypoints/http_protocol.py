"""uvicorn's HTTP protocol with a deadline for reading a request's headers.

uvicorn (0.54) has no header-read timeout: a connection that sends ``POST / HTTP/1.1\\r\\n``
and then one header byte a minute is held open for ever (``timeout_keep_alive`` only runs
between requests, and any byte cancels it). Each such connection costs a socket and a
parser, and a few thousand of them exhaust the process's file descriptors: the carrier can
then no longer connect at all. ``benchmarks/door_slow_headers.py`` shows both, and that the
subclass costs nothing measurable per request.

The subclass arms a timer when a connection opens and when each new request begins, and
cancels it when the headers are complete; when it fires the client gets a 408 and the
connection is closed. The body has its own deadline in the webhook door.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HEADER_TIMEOUT_S", "header_deadline_protocol"]

HEADER_TIMEOUT_S = 5.0

_TIMEOUT_BODY = b"request headers took too long\n"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _TIMEOUT_BODY
)


class _HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout_s: float = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; the door's body deadline governs it
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()


def header_deadline_protocol(timeout_s: float = HEADER_TIMEOUT_S) -> type[HttpToolsProtocol]:
    """The protocol class to pass as ``uvicorn.Config(http=…)``."""
    return type(
        "HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout_s": timeout_s}
    )
