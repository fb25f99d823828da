"""One error root, split by who must act on it.

Entrypoints map these to HTTP codes, CLI exit codes and the tool's ``{"error": …}``; nothing else
should reach a user.
"""

from __future__ import annotations

__all__ = [
    "CallNotFound",
    "CallerError",
    "CarrierRejected",
    "ConcurrencyLimitReached",
    "InvalidCallState",
    "TransientError",
    "VoiceCallError",
]


class VoiceCallError(Exception):
    """Root of every error voicecall raises on purpose.

    Attributes:
        detail: one human sentence saying what went wrong and, where possible, what to do.
        code: a short stable machine code for RPC answers.
    """

    code = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CallerError(VoiceCallError):
    """The caller must act: bad input, an unknown call, a refused request."""

    code = "invalid_request"


class CallNotFound(CallerError):
    """No call with that id is known."""

    code = "call_not_found"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"no call with id {call_id!r}")
        self.call_id = call_id


class InvalidCallState(CallerError):
    """The call is not in a state that allows the request (e.g. already ended)."""

    code = "invalid_call_state"


class ConcurrencyLimitReached(CallerError):
    """``maxConcurrentCalls`` live calls already exist."""

    code = "concurrency_limit"


class CarrierRejected(VoiceCallError):
    """The carrier refused the request; retrying the same request will not help."""

    code = "carrier_rejected"


class TransientError(VoiceCallError):
    """Temporary trouble (timeout, 5xx, connection reset); the same request may succeed later."""

    code = "transient"
