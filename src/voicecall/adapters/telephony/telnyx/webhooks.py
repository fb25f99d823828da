"""How we read Telnyx's webhooks: Call Control events -> normalised call events.

A webhook is ``{"data": {"event_type", "id", "occurred_at", "payload": {...}}, "meta": {...}}``.
A retried delivery keeps ``data.id`` (only ``meta.attempt`` changes), so the id is the dedupe
key. ``payload.client_state`` carries our call id (see ``documents``).

**Which utterance a speak webhook is about.** ``call.speak.started`` / ``call.speak.ended``
carry neither the speak's ``command_id`` nor anything else naming the command
(https://developers.telnyx.com/api-reference/callbacks/call-speak-ended: ``call_control_id``,
``call_leg_id``, ``call_session_id``, ``client_state``, ``connection_id``, ``status``), and
``client_state`` is the call's latest, not the speak's. What Telnyx does promise is the order:
"If multiple speak text commands are issued consecutively, the audio files will be placed in
a queue awaiting playback" (https://developers.telnyx.com/api-reference/call-commands/speak-text).
So ``SpeakLedger`` keeps, per call, the utterance ids of the speaks Telnyx accepted, in the
order it accepted them; the n-th ``call.speak.started`` of the call is the n-th speak, and so
is the n-th ``call.speak.ended``. Started and ended are counted apart: Telnyx "often, though
not always" delivers webhooks in order
(https://developers.telnyx.com/docs/voice/programmable-voice/sending-commands), and one line's
``ended`` and the next one's ``started`` happen at the same moment. A retried webhook (same
id) gives the same answer again rather than counting twice.

**Which line a transcript answers.** ``call.transcription`` carries no timing of the caller's
words, so ``heard_after`` is the utterance most recently played whole (``call.speak.ended``
with ``status: completed``) when the final transcript arrived: what the caller had heard last
when they answered.

**Who hung up.** ``call.hangup`` has ``hangup_source``, "The party who ended the call
(callee, caller, unknown)" (https://developers.telnyx.com/api-reference/callbacks/call-hangup).
We are the caller of a call we dialled and the callee of one we answered, so the other side
hanging up is ``hangup-user``.

**A stream that ended.** ``streaming.stopped`` (payload: ``call_control_id``, ``client_state``,
``stream_url``; https://developers.telnyx.com/api-reference/callbacks/streaming-stopped) says
the call's media stream is over; while the call lives, that is a stream to open again
(``StreamStopped``). ``streaming.started`` needs nothing. ``streaming.failed`` (``failure_reason``
such as ``connection_failed``; https://developers.telnyx.com/api-reference/callbacks/streaming-failed)
is a stream that ended before it began: it is reported as ``StreamStopped`` too, and the service
retries a few times, then carries the call on with the native voice and recogniser.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from voicecall.adapters.telephony.telnyx.documents import decode_client_state
from voicecall.domain.call import CallDirection, CallState
from voicecall.domain.errors import CallerError
from voicecall.domain.events import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallInitiated,
    CallSpeech,
    SpeechPlayed,
    SpeechStarted,
    StreamStopped,
)
from voicecall.domain.webhook import WebhookRequest

__all__ = ["HANGUP_CAUSE_STATES", "Leg", "SpeakLedger", "hangup_reason", "read_webhook"]

log = logging.getLogger(__name__)

HANGUP_CAUSE_STATES: Final[Mapping[str, CallState]] = {
    "normal_clearing": CallState.COMPLETED,
    # The originator gave up before the callee answered (which side: see hangup_reason).
    "originator_cancel": CallState.HANGUP_BOT,
    "user_busy": CallState.BUSY,
    "call_rejected": CallState.BUSY,
    "no_answer": CallState.NO_ANSWER,
    # ``timeout_secs`` on the dial elapsed while it rang.
    "timeout": CallState.NO_ANSWER,
    "machine_detected": CallState.VOICEMAIL,
    # Telnyx's own ``time_limit_secs`` cap (4 h by default) ended the call.
    "time_limit": CallState.TIMEOUT,
    "not_found": CallState.FAILED,
    "unspecified": CallState.FAILED,
}
"""``call.hangup`` ``hangup_cause`` -> terminal state. Causes not listed end ``completed``: a
hang-up we cannot classify is still an ordinary end, and calling it a failure would alarm."""

# Causes that mean "somebody put the phone down", where hangup_source says who.
_PUT_DOWN: Final = frozenset({"normal_clearing", "originator_cancel"})


def hangup_reason(
    cause: str | None, source: str | None, direction: CallDirection | None
) -> CallState:
    """The terminal state of a ``call.hangup``.

    ``source`` is Telnyx's ``hangup_source`` (``caller``/``callee``/``unknown``); ``direction``
    is which way the call went, when we know it.
    """
    if cause in _PUT_DOWN and direction is not None and source in ("caller", "callee"):
        them = "callee" if direction is CallDirection.OUTBOUND else "caller"
        if source == them:
            return CallState.HANGUP_USER
    return HANGUP_CAUSE_STATES.get(cause or "", CallState.COMPLETED)


@attrs.define
class Leg:
    """What we know of one Telnyx call leg while it lives (in memory only).

    Attributes:
        direction: which way the call went; None after a restart, until a webhook says.
        sent: utterance ids of the speaks Telnyx accepted, in the order it accepted them.
        started: how many ``call.speak.started`` of the call were read.
        ended: how many ``call.speak.ended`` were read.
        last_played: the utterance most recently played whole.
        speak_events: Telnyx event id -> the utterance it was read as (retries repeat it).
        transcribing: whether we started transcription; None when we do not know (restart).
    """

    direction: CallDirection | None = None
    sent: list[str] = attrs.Factory(list)
    started: int = 0
    ended: int = 0
    last_played: str | None = None
    speak_events: dict[str, str | None] = attrs.Factory(dict)
    transcribing: bool | None = None


class SpeakLedger:
    """Per call leg: the speaks we sent, so speak webhooks can be told apart by their order."""

    def __init__(self) -> None:
        self._legs: dict[str, Leg] = {}

    def leg(self, pid: str) -> Leg:
        leg = self._legs.get(pid)
        if leg is None:
            leg = self._legs[pid] = Leg()
        return leg

    def known(self, pid: str) -> Leg | None:
        return self._legs.get(pid)

    def forget(self, pid: str) -> None:
        self._legs.pop(pid, None)

    def clear(self) -> None:
        self._legs.clear()

    def speak_started(self, pid: str, event_id: str) -> str | None:
        """The utterance a ``call.speak.started`` is about; None when we cannot tell."""
        leg = self._legs.get(pid)
        if leg is None:
            return None
        if event_id not in leg.speak_events:
            position, leg.started = leg.started, leg.started + 1
            leg.speak_events[event_id] = leg.sent[position] if position < len(leg.sent) else None
        return leg.speak_events[event_id]

    def speak_ended(self, pid: str, event_id: str, whole: bool) -> str | None:
        """The utterance a ``call.speak.ended`` is about; None when we cannot tell or it was
        not played whole."""
        leg = self._legs.get(pid)
        if leg is None:
            return None
        if event_id not in leg.speak_events:
            position, leg.ended = leg.ended, leg.ended + 1
            utterance = leg.sent[position] if position < len(leg.sent) else None
            leg.speak_events[event_id] = utterance if whole else None
            if whole and utterance is not None:
                leg.last_played = utterance
        return leg.speak_events[event_id]


@attrs.frozen
class _Common:
    """The fields every event of one webhook shares."""

    event_id: str
    call_id: str | None
    provider_call_id: str

    def fields(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "provider_call_id": self.provider_call_id,
            "dedupe_key": f"telnyx:{self.event_id}",
        }


def read_webhook(request: WebhookRequest, ledger: SpeakLedger) -> list[CallEvent]:
    """Normalised events from a verified Telnyx webhook; ``CallerError`` when malformed."""
    try:
        document = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CallerError("Telnyx webhook: the body is not JSON") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise CallerError('Telnyx webhook: expected {"data": {...}}')
    event_type = data.get("event_type")
    event_id = data.get("id")
    payload = data.get("payload")
    if not isinstance(event_type, str) or not event_type:
        raise CallerError("Telnyx webhook: data.event_type is missing")
    if not isinstance(event_id, str) or not event_id:
        raise CallerError("Telnyx webhook: data.id is missing")
    if not isinstance(payload, dict):
        raise CallerError("Telnyx webhook: data.payload is missing")
    builder = _EVENT_BUILDERS.get(event_type)
    if builder is None:
        # Well-formed but of no interest (call.bridged, recordings, ...): acknowledge it
        # so Telnyx does not retry, and change nothing.
        return []
    pid = payload.get("call_control_id")
    if not isinstance(pid, str) or not pid:
        raise CallerError("Telnyx webhook: data.payload.call_control_id is missing")
    common = _Common(
        event_id=event_id,
        call_id=decode_client_state(payload.get("client_state")),
        provider_call_id=pid,
    )
    return builder(common, payload, ledger)


def _optional_str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CallerError(f"Telnyx webhook: data.payload.{key} must be a string")
    return value or None


def _initiated(common: _Common, payload: Mapping[str, Any], ledger: SpeakLedger) -> list[CallEvent]:
    direction = payload.get("direction")
    if direction not in ("incoming", "outgoing"):
        raise CallerError('Telnyx webhook: data.payload.direction must be "incoming" or "outgoing"')
    way = CallDirection.INBOUND if direction == "incoming" else CallDirection.OUTBOUND
    ledger.leg(common.provider_call_id).direction = way
    return [
        CallInitiated(
            **common.fields(),
            direction=way,
            from_number=_optional_str(payload, "from"),
            to_number=_optional_str(payload, "to"),
        )
    ]


def _answered(common: _Common, payload: Mapping[str, Any], ledger: SpeakLedger) -> list[CallEvent]:
    return [CallAnswered(**common.fields())]


def _hangup(common: _Common, payload: Mapping[str, Any], ledger: SpeakLedger) -> list[CallEvent]:
    cause = _optional_str(payload, "hangup_cause")
    source = payload.get("hangup_source")
    source = source if isinstance(source, str) and source else None
    leg = ledger.known(common.provider_call_id)
    reason = hangup_reason(cause, source, leg.direction if leg is not None else None)
    detail = f"hangup_cause={cause or 'none'}"
    sip_cause = payload.get("sip_hangup_cause")
    if isinstance(sip_cause, str | int) and not isinstance(sip_cause, bool):
        detail += f", sip_hangup_cause={sip_cause}"
    if source:
        detail += f", hangup_source={source}"
    ledger.forget(common.provider_call_id)
    return [CallEnded(**common.fields(), reason=reason, detail=detail)]


def _speak_started(
    common: _Common, payload: Mapping[str, Any], ledger: SpeakLedger
) -> list[CallEvent]:
    utterance = ledger.speak_started(common.provider_call_id, common.event_id)
    if utterance is None:
        return []
    return [SpeechStarted(**common.fields(), utterance_id=utterance)]


def _speak_ended(
    common: _Common, payload: Mapping[str, Any], ledger: SpeakLedger
) -> list[CallEvent]:
    # status: "completed" is a line played whole; "call_hangup" (and "cancelled_amd") cut it,
    # and the call.hangup that follows cuts it in our queue too.
    whole = payload.get("status", "completed") == "completed"
    utterance = ledger.speak_ended(common.provider_call_id, common.event_id, whole)
    if utterance is None:
        return []
    return [SpeechPlayed(**common.fields(), utterance_id=utterance)]


def _transcription(
    common: _Common, payload: Mapping[str, Any], ledger: SpeakLedger
) -> list[CallEvent]:
    data = payload.get("transcription_data")
    if not isinstance(data, dict):
        raise CallerError("Telnyx webhook: data.payload.transcription_data is missing")
    transcript = data.get("transcript")
    if not isinstance(transcript, str):
        raise CallerError("Telnyx webhook: transcription_data.transcript must be a string")
    is_final = data.get("is_final", True)
    if not isinstance(is_final, bool):
        raise CallerError("Telnyx webhook: transcription_data.is_final must be true or false")
    confidence = data.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        confidence = None
    leg = ledger.known(common.provider_call_id)
    return [
        CallSpeech(
            **common.fields(),
            transcript=transcript,
            # We ask for finals only (interim_results false); engines that omit the flag
            # then send nothing but finals.
            is_final=is_final,
            confidence=float(confidence) if confidence is not None else None,
            heard_after=leg.last_played if leg is not None else None,
        )
    ]


def _streaming_stopped(
    common: _Common, payload: Mapping[str, Any], ledger: SpeakLedger
) -> list[CallEvent]:
    return [StreamStopped(**common.fields(), reason="streaming.stopped")]


def _streaming_failed(
    common: _Common, payload: Mapping[str, Any], ledger: SpeakLedger
) -> list[CallEvent]:
    reason = payload.get("failure_reason")
    log.warning(
        "Telnyx media stream for %s failed: %s",
        common.provider_call_id,
        reason if isinstance(reason, str) else "no failure_reason",
    )
    detail = reason if isinstance(reason, str) else "no failure_reason"
    return [StreamStopped(**common.fields(), reason=f"streaming.failed: {detail}")]


_Builder = Callable[[_Common, Mapping[str, Any], SpeakLedger], list[CallEvent]]

_EVENT_BUILDERS: Final[Mapping[str, _Builder]] = {
    "call.initiated": _initiated,
    "call.answered": _answered,
    "call.hangup": _hangup,
    "call.speak.started": _speak_started,
    "call.speak.ended": _speak_ended,
    "call.transcription": _transcription,
    "streaming.stopped": _streaming_stopped,
    "streaming.failed": _streaming_failed,
}
