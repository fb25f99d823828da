"""Normalised call events: every carrier's webhooks become these (SPEC §3).

Each event carries a dedupe key. Carriers retry webhooks, so an event whose key was applied
before changes nothing.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from voicecall.domain.call import CallDirection, CallState

__all__ = [
    "CallActive",
    "CallAnswered",
    "CallDtmf",
    "CallEnded",
    "CallErrored",
    "CallEvent",
    "CallInitiated",
    "CallRinging",
    "CallSilence",
    "CallSpeaking",
    "CallSpeech",
    "SpeechCut",
    "SpeechPlayed",
    "SpeechStarted",
    "StreamStopped",
]


@attrs.frozen(kw_only=True)
class CallEvent:
    """Fields every event has.

    Attributes:
        call_id: our call id when the carrier echoed it back (status callback query,
            client_state); None when only the carrier's id is known.
        provider_call_id: the carrier's id for the call.
        dedupe_key: identifies this event across carrier retries; empty means "derive one".
    """

    type: ClassVar[str] = "call.event"

    call_id: str | None = None
    provider_call_id: str | None = None
    dedupe_key: str = ""

    def key(self) -> str:
        """The dedupe key, derived from the event's content when the carrier gave none."""
        if self.dedupe_key:
            return self.dedupe_key
        fields = attrs.asdict(self, recurse=False)
        fields.pop("dedupe_key")
        body = ",".join(f"{name}={fields[name]!r}" for name in sorted(fields))
        return f"{self.type}|{body}"


@attrs.frozen(kw_only=True)
class CallInitiated(CallEvent):
    """The carrier created the call. For inbound calls this is the first we hear of it."""

    type: ClassVar[str] = "call.initiated"
    direction: CallDirection = CallDirection.OUTBOUND
    from_number: str | None = None
    to_number: str | None = None


@attrs.frozen(kw_only=True)
class CallRinging(CallEvent):
    type: ClassVar[str] = "call.ringing"


@attrs.frozen(kw_only=True)
class CallAnswered(CallEvent):
    type: ClassVar[str] = "call.answered"


@attrs.frozen(kw_only=True)
class CallActive(CallEvent):
    type: ClassVar[str] = "call.active"


@attrs.frozen(kw_only=True)
class CallSpeaking(CallEvent):
    """The bot's words are being played to the caller."""

    type: ClassVar[str] = "call.speaking"
    text: str = ""


@attrs.frozen(kw_only=True)
class CallSpeech(CallEvent):
    """Something the caller said, as recognised; only a final result ends a turn."""

    type: ClassVar[str] = "call.speech"
    transcript: str = ""
    is_final: bool = True
    confidence: float | None = None
    heard_after: str | None = None
    """The bot utterance the listen that caught this went with or followed, when the carrier's
    recogniser was used; it tells which prompt the words answer."""
    started_at: float | None = None
    """When the caller started saying it (media streams), in clock-port time."""


@attrs.frozen(kw_only=True)
class SpeechStarted(CallEvent):
    """The carrier began playing one of our utterances to the caller."""

    type: ClassVar[str] = "speech.started"
    utterance_id: str = ""


@attrs.frozen(kw_only=True)
class SpeechPlayed(CallEvent):
    """The caller has heard one of our utterances whole (and so every one before it)."""

    type: ClassVar[str] = "speech.played"
    utterance_id: str = ""


@attrs.frozen(kw_only=True)
class CallSilence(CallEvent):
    type: ClassVar[str] = "call.silence"
    duration_ms: int = 0


@attrs.frozen(kw_only=True)
class CallDtmf(CallEvent):
    type: ClassVar[str] = "call.dtmf"
    digits: str = ""


@attrs.frozen(kw_only=True)
class CallEnded(CallEvent):
    """The call is over; ``reason`` is the terminal state it ends in."""

    type: ClassVar[str] = "call.ended"
    reason: CallState = CallState.COMPLETED
    detail: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.reason.is_terminal:
            raise ValueError(f"call.ended needs a terminal reason, not {self.reason.value!r}")


@attrs.frozen(kw_only=True)
class CallErrored(CallEvent):
    """The carrier reported trouble with the call; a non-retryable error ends it."""

    type: ClassVar[str] = "call.error"
    error: str = ""
    retryable: bool = False


@attrs.frozen(kw_only=True)
class SpeechCut(CallEvent):
    """Playback of an utterance stopped before its end.

    A barge-in (``rest=True``) also drops every line queued after it: the bot stops talking
    and listens. A media stream that dropped (``rest=False``) cuts only the line in flight;
    the queued ones play on the next stream.
    """

    type: ClassVar[str] = "speech.cut"
    utterance_id: str = ""
    heard_ms: int | None = None
    rest: bool = True


@attrs.frozen(kw_only=True)
class StreamStopped(CallEvent):
    """The call's media stream ended while the call may still be up (Twilio runs the verbs
    after ``<Connect>`` when the socket closes); the service reconnects or goes native."""

    type: ClassVar[str] = "stream.stopped"
    reason: str = ""
    native: bool = False
    """Go on with the carrier's native voice at once, without reconnecting (the stream's
    synthesiser failed mid-call, so the caller would otherwise hear silence)."""
