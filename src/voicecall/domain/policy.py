"""Inbound and outbound call policies (SPEC §3)."""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable
from typing import Final

import attrs

from voicecall.domain.call import CallMode
from voicecall.domain.errors import CallerError, ConcurrencyLimitReached

__all__ = [
    "DEFAULT_DENY_TO",
    "E164_PATTERN",
    "DestinationRefused",
    "DialLedger",
    "DialRules",
    "InboundDecision",
    "InboundPolicy",
    "InboundPolicyMode",
    "OutboundPolicy",
    "country_code",
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
    dial: DialRules = attrs.Factory(lambda: DialRules())
    max_calls_per_hour: int | None = None
    max_calls_per_day: int | None = None

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

    def check_capacity(self, live_calls: Iterable[object] | int) -> None:
        live = live_calls if isinstance(live_calls, int) else sum(1 for _ in live_calls)
        if live >= self.max_concurrent_calls:
            raise ConcurrencyLimitReached(
                f"{live} live call(s) already, and maxConcurrentCalls is "
                f"{self.max_concurrent_calls}; end one first"
            )


# Premium-rate ranges never dialled unless the operator says otherwise: in the NANP the 900
# and 976 codes are pay-per-call services (https://nationalnanpa.com/number_resource_info/).
DEFAULT_DENY_TO: Final = ("+1900", "+1976")

# ITU-T E.164 country calling codes: 1 and 7 have one digit; these have two; all others three.
_ONE_DIGIT_CODES: Final = frozenset({"1", "7"})
_TWO_DIGIT_CODES: Final = frozenset(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
    "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split()
)


def country_code(number: str) -> str:
    """The country calling code of an E.164 number, with its ``+`` (``+15551230001`` → ``+1``)."""
    digits = number.lstrip("+")
    if digits[:1] in _ONE_DIGIT_CODES:
        return "+" + digits[:1]
    if digits[:2] in _TWO_DIGIT_CODES:
        return "+" + digits[:2]
    return "+" + digits[:3]


class DestinationRefused(CallerError):
    """An outbound destination or rate refused by an ``outbound.*`` rule the operator set.

    Attributes:
        rule: the config key that refused it (``outbound.denyTo`` …).
    """

    code = "destination_refused"

    def __init__(self, detail: str, rule: str) -> None:
        super().__init__(detail)
        self.rule = rule


@attrs.frozen
class DialRules:
    """Who may be dialled: ``outbound.allowTo`` / ``outbound.denyTo`` and the home country.

    ``allow_to``, when not empty, is the only thing dialled. ``deny_to`` is never dialled,
    even when ``allow_to`` names it. A number outside ``home_country`` (the country code of
    ``fromNumber``) is refused unless ``allow_to`` names it.
    """

    allow_to: tuple[str, ...] = ()
    deny_to: tuple[str, ...] = DEFAULT_DENY_TO
    home_country: str | None = None

    def check(self, number: str) -> None:
        """Raises ``DestinationRefused`` naming the rule that refuses ``number``."""
        denied = _longest_prefix(number, self.deny_to)
        if denied is not None:
            raise DestinationRefused(
                f"{number} is refused by outbound.denyTo ({denied})", "outbound.denyTo"
            )
        if self.allow_to:
            if _longest_prefix(number, self.allow_to) is None:
                raise DestinationRefused(f"{number} is not in outbound.allowTo", "outbound.allowTo")
            return
        if self.home_country is not None and country_code(number) != self.home_country:
            raise DestinationRefused(
                f"{number} is outside fromNumber's country code {self.home_country}; name it "
                "in outbound.allowTo to dial it",
                "outbound.allowTo",
            )


def _longest_prefix(number: str, prefixes: Iterable[str]) -> str | None:
    matches = [p for p in prefixes if number.startswith(p)]
    return max(matches, key=len) if matches else None


class DialLedger:
    """When calls were placed, for ``outbound.maxCallsPerHour`` / ``maxCallsPerDay``.

    A sliding window of placement times; each check and each record costs O(1) amortised.
    """

    HOUR: Final = 3600.0
    DAY: Final = 86400.0

    def __init__(self, per_hour: int | None = None, per_day: int | None = None) -> None:
        self.per_hour = per_hour
        self.per_day = per_day
        self._hour: deque[float] = deque()
        self._day: deque[float] = deque()

    def check(self, now: float) -> None:
        """Raises ``DestinationRefused`` when one more call now would pass a cap."""
        self._expire(now)
        if self.per_hour is not None and len(self._hour) >= self.per_hour:
            raise DestinationRefused(
                f"{len(self._hour)} call(s) placed in the last hour, and "
                f"outbound.maxCallsPerHour is {self.per_hour}",
                "outbound.maxCallsPerHour",
            )
        if self.per_day is not None and len(self._day) >= self.per_day:
            raise DestinationRefused(
                f"{len(self._day)} call(s) placed in the last 24 hours, and "
                f"outbound.maxCallsPerDay is {self.per_day}",
                "outbound.maxCallsPerDay",
            )

    def record(self, at: float) -> None:
        """A call was placed at ``at`` (times recorded in order, or restored oldest first)."""
        self._hour.append(at)
        self._day.append(at)

    def _expire(self, now: float) -> None:
        while self._hour and self._hour[0] <= now - self.HOUR:
            self._hour.popleft()
        while self._day and self._day[0] <= now - self.DAY:
            self._day.popleft()
