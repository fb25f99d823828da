"""The pairing service: codes for unknown callers, and the operator's decisions on them.

Used by the call service (an unknown caller under ``inboundPolicy: "pairing"``) and by the
gateway's ``voicecall.pairing.*`` RPC methods. Deliberately not a ``voice_call`` tool action or
an MCP tool: who may call is the operator's decision, never the model's. Every decision goes on
the event feed: ``pairing.issued``, ``pairing.refused``, ``pairing.approved``,
``pairing.denied``, ``pairing.expired``, ``pairing.revoked``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

import attrs

from voicecall.domain.errors import CallerError
from voicecall.domain.pairing import (
    ApprovedNumber,
    PairingBook,
    PairingLimits,
    PairingRefused,
    PairingRequest,
    draw_code,
    spoken_code,
)
from voicecall.domain.policy import is_e164
from voicecall.domain.ports import Clock, PairingStore
from voicecall.services.events import EventFeed

__all__ = ["Admission", "PairingService", "approved_to_dict", "request_to_dict"]

log = logging.getLogger(__name__)

_CODE = re.compile(r"\d{6}")


@attrs.frozen
class Admission:
    """What becomes of an unknown caller under ``pairing``.

    Attributes:
        accept: answer the call.
        reason: why, in words (the call's ``endDetail`` when it is refused).
        message: when set, the caller hears this instead of the greeting and the call ends.
    """

    accept: bool
    reason: str
    message: str | None = None


def request_to_dict(request: PairingRequest) -> dict[str, Any]:
    return {
        "code": request.code,
        "from": request.number,
        "issuedAt": request.issued_at,
        "expiresAt": request.expires_at,
        "callId": request.call_id,
    }


def approved_to_dict(approved: ApprovedNumber) -> dict[str, Any]:
    return {"number": approved.number, "approvedAt": approved.approved_at}


def _normal_code(code: object) -> str:
    text = re.sub(r"[\s-]", "", code) if isinstance(code, str) else ""
    if not _CODE.fullmatch(text):
        raise CallerError(f"a pairing code is six digits, not {code!r}")
    return text


class PairingService:
    """Issues codes to unknown callers and applies the operator's approve / deny / revoke.

    Args:
        store: where the book is kept (``pairing.json`` in the store directory).
        clock: the clock port; codes expire by it.
        feed: the event feed every decision is published on.
        limits: code lifetime and the per-caller / total / rate limits.
        draw: makes a code (tests pass a predictable one).
    """

    def __init__(
        self,
        store: PairingStore,
        clock: Clock,
        feed: EventFeed,
        limits: PairingLimits | None = None,
        draw: Callable[[], str] = draw_code,
    ) -> None:
        self.store = store
        self.clock = clock
        self.feed = feed
        self.limits = limits or PairingLimits()
        self._draw = draw
        self._lock = asyncio.Lock()

    async def _open(self) -> tuple[PairingBook, float]:
        """The book with expired requests dropped (each reported once on the feed)."""
        now = self.clock.now()
        book = await self.store.load()
        for request in book.expire(now):
            await self._publish("pairing.expired", request_to_dict(request))
        return book, now

    async def _publish(self, kind: str, data: dict[str, Any], call_id: str | None = None) -> None:
        await self.feed.publish(call_id or "", kind, self.clock.now(), data)

    async def is_approved(self, number: str) -> bool:
        return (await self.store.load()).is_approved(number)

    async def admit(self, number: str, call_id: str | None = None) -> Admission:
        """An unknown caller rings: let an approved number in, else issue it a code.

        A caller over a limit is refused; the refusal names the limit on the feed.
        """
        async with self._lock:
            book, now = await self._open()
            if book.is_approved(number):
                await self.store.save(book)
                return Admission(True, "caller was approved by pairing")
            try:
                request = book.issue(number, now, self.limits, call_id=call_id, draw=self._draw)
            except PairingRefused as refused:
                await self.store.save(book)
                log.warning("pairing refused for %s: %s", number, refused.detail)
                await self._publish(
                    "pairing.refused",
                    {"from": number, "rule": refused.rule, "error": refused.detail},
                    call_id,
                )
                return Admission(False, f"pairing refused: {refused.detail}")
            await self.store.save(book)
        log.warning(
            "pairing code %s issued to %s; approve it with 'voicecall pairing approve %s'",
            request.code,
            number,
            request.code,
        )
        await self._publish("pairing.issued", request_to_dict(request), call_id)
        return Admission(True, "unknown caller: pairing code issued", spoken_code(request.code))

    async def listing(self) -> dict[str, Any]:
        """Pending requests (oldest first) and approved numbers."""
        async with self._lock:
            book, _ = await self._open()
            await self.store.save(book)
        return {
            "pending": [request_to_dict(r) for r in book.pending],
            "approved": [approved_to_dict(a) for a in book.approved.values()],
        }

    async def approve(self, code: object) -> PairingRequest:
        """Let the code's caller in from now on; ``PairingCodeUnknown`` if no such code."""
        wanted = _normal_code(code)
        async with self._lock:
            book, now = await self._open()
            try:
                request = book.approve(wanted, now)
            finally:
                await self.store.save(book)
        await self._publish("pairing.approved", request_to_dict(request), request.call_id)
        return request

    async def deny(self, code: object) -> PairingRequest:
        """Refuse the code's request (and the caller's other pending codes)."""
        wanted = _normal_code(code)
        async with self._lock:
            book, now = await self._open()
            try:
                request = book.deny(wanted, now)
            finally:
                await self.store.save(book)
        await self._publish("pairing.denied", request_to_dict(request), request.call_id)
        return request

    async def revoke(self, number: object) -> bool:
        """Forget an approved number; False when it was not approved."""
        if not is_e164(number):
            raise CallerError(f"expected an E.164 number like +15551230001, not {number!r}")
        assert isinstance(number, str)
        async with self._lock:
            book, _ = await self._open()
            gone = book.revoke(number)
            await self.store.save(book)
        if gone is not None:
            await self._publish("pairing.revoked", {"number": number})
        return gone is not None
