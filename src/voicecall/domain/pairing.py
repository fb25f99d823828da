"""Pairing: how an unknown caller becomes an allowed one (``inboundPolicy: "pairing"``).

An unknown caller hears a six-digit code and the call ends; the operator approves (or denies)
that code with ``voicecall pairing approve CODE``, and the number may call from then on. The
operator decides, never the model answering the calls, so nothing here is a tool action.

The rules are pure: times are passed in, the code comes from a ``draw`` function, and the book
is a plain entity the service loads and saves through the ``PairingStore`` port.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Final

import attrs

from voicecall.domain.errors import CallerError

__all__ = [
    "CODE_DIGITS",
    "ApprovedNumber",
    "PairingBook",
    "PairingCodeUnknown",
    "PairingLimits",
    "PairingRefused",
    "PairingRequest",
    "draw_code",
    "spoken_code",
]

CODE_DIGITS: Final = 6


def draw_code() -> str:
    """Six random digits from the OS's CSPRNG (leading zeros kept)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def spoken_code(code: str) -> str:
    """What the unknown caller hears: the code read slowly, twice, one digit at a time.

    The digits are separated by commas so every voice (a carrier's ``<Say>`` or a TTS model)
    pauses between them instead of reading "one hundred twenty-three thousand…".
    """
    digits = ", ".join(code)
    return (
        "This number is not yet allowed to call. "
        f"Your pairing code is: {digits}. "
        f"Again, your pairing code is: {digits}. "
        "Give it to the operator to be let in. Goodbye."
    )


class PairingRefused(CallerError):
    """No code is issued to this caller now (a limit); ``rule`` names which."""

    code = "pairing_refused"

    def __init__(self, detail: str, rule: str) -> None:
        super().__init__(detail)
        self.rule = rule


class PairingCodeUnknown(CallerError):
    """No pending request has this code (never issued, expired, or already decided)."""

    code = "pairing_code_unknown"

    def __init__(self, code: str) -> None:
        super().__init__(
            f"no pending pairing request has code {code!r} "
            "(it may have expired or been decided already; see 'voicecall pairing list')"
        )
        self.pairing_code = code


@attrs.frozen
class PairingLimits:
    """How many codes, how long they live, and how often one caller may ask."""

    ttl_s: float = 3600.0
    """A code expires this long after it was issued."""
    per_caller: int = 3
    """Pending codes one number may hold at once."""
    total: int = 50
    """Pending codes in all."""
    min_interval_s: float = 60.0
    """A number gets at most one new code per this many seconds."""
    per_caller_per_day: int = 10
    """A number gets at most this many codes in any 24 hours (denied and expired ones count)."""


@attrs.frozen
class PairingRequest:
    """One issued code, waiting for the operator."""

    code: str
    number: str
    issued_at: float
    expires_at: float
    call_id: str | None = None

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at


@attrs.frozen
class ApprovedNumber:
    """A number the operator let in, and when."""

    number: str
    approved_at: float
    code: str | None = None


_DAY_S: Final = 86400.0


@attrs.define
class PairingBook:
    """Pending requests, approved numbers and each number's recent codes (for rate limits).

    Every method that takes ``now`` first drops expired requests; the service asks for them
    with ``expire`` so each expiry is reported once.
    """

    pending: list[PairingRequest] = attrs.Factory(list)
    approved: dict[str, ApprovedNumber] = attrs.Factory(dict)
    issued: dict[str, list[float]] = attrs.Factory(dict)
    """Per number, when its codes were issued within the last day."""

    def is_approved(self, number: str) -> bool:
        return number in self.approved

    def expire(self, now: float) -> list[PairingRequest]:
        """Remove and return the requests whose hour is up; forget issue times over a day old."""
        gone = [r for r in self.pending if r.is_expired(now)]
        self.pending = [r for r in self.pending if not r.is_expired(now)]
        for number in list(self.issued):
            recent = [at for at in self.issued[number] if now - at < _DAY_S]
            if recent:
                self.issued[number] = recent
            else:
                del self.issued[number]
        return gone

    def issue(
        self,
        number: str,
        now: float,
        limits: PairingLimits,
        *,
        call_id: str | None = None,
        draw: Callable[[], str] = draw_code,
    ) -> PairingRequest:
        """A new code for ``number``, or ``PairingRefused`` naming the limit it hits.

        Call ``expire(now)`` first: expired requests do not count against the limits.
        """
        mine = [r for r in self.pending if r.number == number]
        if len(mine) >= limits.per_caller:
            raise PairingRefused(
                f"{number} already has {len(mine)} pending pairing codes "
                f"(at most {limits.per_caller})",
                "per_caller",
            )
        if len(self.pending) >= limits.total:
            raise PairingRefused(
                f"{len(self.pending)} pairing codes are pending already (at most {limits.total})",
                "total",
            )
        history = [at for at in self.issued.get(number, []) if now - at < _DAY_S]
        if history and now - max(history) < limits.min_interval_s:
            wait = limits.min_interval_s - (now - max(history))
            raise PairingRefused(
                f"{number} was given a pairing code {now - max(history):.0f} s ago; "
                f"it may ask again in {wait:.0f} s",
                "rate",
            )
        if len(history) >= limits.per_caller_per_day:
            raise PairingRefused(
                f"{number} was given {len(history)} pairing codes in the last 24 hours "
                f"(at most {limits.per_caller_per_day})",
                "daily",
            )
        taken = {r.code for r in self.pending}
        code = draw()
        for _ in range(100):
            if code not in taken:
                break
            code = draw()
        else:
            raise RuntimeError("could not draw an unused pairing code")  # pragma: no cover
        request = PairingRequest(code, number, now, now + limits.ttl_s, call_id)
        self.pending.append(request)
        self.issued[number] = [*history, now]
        return request

    def _take(self, code: str, now: float) -> PairingRequest:
        for request in self.pending:
            if request.code == code and not request.is_expired(now):
                return request
        raise PairingCodeUnknown(code)

    def approve(self, code: str, now: float) -> PairingRequest:
        """Let the code's number in; the code and the number's other codes are used up."""
        request = self._take(code, now)
        self.pending = [r for r in self.pending if r.number != request.number]
        self.approved[request.number] = ApprovedNumber(request.number, now, request.code)
        return request

    def deny(self, code: str, now: float) -> PairingRequest:
        """Refuse the code's request; the number's other pending codes go with it."""
        request = self._take(code, now)
        self.pending = [r for r in self.pending if r.number != request.number]
        return request

    def revoke(self, number: str) -> ApprovedNumber | None:
        """Forget an approval; the number is unknown again."""
        return self.approved.pop(number, None)
