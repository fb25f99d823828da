"""Inbound and outbound call policies (SPEC §3)."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Final

import attrs

from voicecall.domain.call import CallMode
from voicecall.domain.errors import CallerError, ConcurrencyLimitReached

__all__ = [
    "E164_PATTERN",
    "InboundDecision",
    "InboundPolicy",
    "InboundPolicyMode",
    "OutboundPolicy",
    "is_e164",
]

E164_PATTERN: Final = re.compile(r"\+[1-9]\d{1,14}")


def is_e164(number: object) -> bool:
    """Exactly an E.164 number: ``+``, a non-zero digit, then 1 to 14 digits. Nothing else."""
    return isinstance(number, str) and E164_PATTERN.fullmatch(number) is not None


class InboundPolicyMode(enum.StrEnum):
    DISABLED = "disabled"
    ALLOWLIST = "allowlist"
    PAIRING = "pairing"
    OPEN = "open"


@attrs.frozen
class InboundDecision:
    """``pair``: not accepted on its own, but the caller may pair (``inboundPolicy: pairing``)."""

    accept: bool
    reason: str
    pair: bool = False


def _number_set(numbers: Iterable[str]) -> frozenset[str]:
    return frozenset(numbers)


@attrs.frozen
class InboundPolicy:
    """Who may call in.

    ``allowlist`` compares the caller ID exactly against ``allow_from``; a withheld, empty or
    malformed caller ID never matches, whatever the list holds. ``pairing`` is ``allowlist``
    whose unknown (but well-formed) callers may pair; whether one was approved already is the
    pairing service's to say.
    """

    mode: InboundPolicyMode = InboundPolicyMode.DISABLED
    allow_from: frozenset[str] = attrs.field(default=frozenset(), converter=_number_set)

    def decide(self, caller: str | None) -> InboundDecision:
        if self.mode is InboundPolicyMode.DISABLED:
            return InboundDecision(False, "inbound calls are disabled (inboundPolicy: disabled)")
        if self.mode is InboundPolicyMode.OPEN:
            return InboundDecision(True, "inbound policy is open")
        if not is_e164(caller):
            return InboundDecision(False, "caller ID is withheld or not an E.164 number")
        if caller in self.allow_from:
            return InboundDecision(True, "caller is in allowFrom")
        if self.mode is InboundPolicyMode.PAIRING:
            return InboundDecision(False, "caller is not in allowFrom: pairing", pair=True)
        return InboundDecision(False, "caller is not in allowFrom")


@attrs.frozen
class OutboundPolicy:
    """Rules for placing calls: concurrency, the default mode, the notify hang-up pause."""

    max_concurrent_calls: int = 1
    default_mode: CallMode = CallMode.NOTIFY
    notify_hangup_delay_sec: float = 3.0
    default_to: str | None = None

    def resolve_callee(self, to: str | None) -> str:
        """The number to dial: ``to`` or the configured default; refuses a non-E.164 number."""
        number = to if to else self.default_to
        if not number:
            raise CallerError("no number to call: pass 'to' or set toNumber in the config")
        if not is_e164(number):
            raise CallerError(f"{number!r} is not an E.164 number like +15551234567")
        return number

    def resolve_mode(self, mode: str | None) -> CallMode:
        if mode is None or mode == "":
            return self.default_mode
        try:
            return CallMode(mode)
        except ValueError:
            raise CallerError(f"mode must be 'notify' or 'conversation', not {mode!r}") from None

    def check_capacity(self, live_calls: Iterable[object]) -> None:
        live = sum(1 for _ in live_calls)
        if live >= self.max_concurrent_calls:
            raise ConcurrencyLimitReached(
                f"{live} live call(s) already, and maxConcurrentCalls is "
                f"{self.max_concurrent_calls}; end one first"
            )
