"""How we read Twilio's webhooks: TwiML fetches and status callbacks → normalised events.

Request parameters: https://www.twilio.com/docs/voice/twiml#request-parameters;
status callbacks: https://www.twilio.com/docs/voice/api/call-resource#statuscallback.
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import parse_qsl

import attrs

from voicecall.adapters.telephony.twilio.documents import Hook
from voicecall.domain.call import CallDirection, CallState
from voicecall.domain.errors import CallerError
from voicecall.domain.events import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallInitiated,
    CallRinging,
    CallSilence,
    CallSpeech,
    SpeechPlayed,
    StreamStopped,
)
from voicecall.domain.webhook import WebhookRequest

__all__ = [
    "END_STATES",
    "LIVE_STATUSES",
    "TwilioWebhook",
    "fetch_events",
    "read_webhook",
    "status_events",
]

log = logging.getLogger(__name__)

LIVE_STATUSES: Final = frozenset({"queued", "initiated", "ringing", "in-progress"})
END_STATES: Final[dict[str, CallState]] = {
    "completed": CallState.COMPLETED,
    "busy": CallState.BUSY,
    "failed": CallState.FAILED,
    "no-answer": CallState.NO_ANSWER,
    "canceled": CallState.HANGUP_BOT,
}
# <Gather input="speech"> waits 5 s for speech to start unless told otherwise.
_GATHER_DEFAULT_TIMEOUT_MS: Final = 5000


@attrs.frozen
class TwilioWebhook:
    """A parsed Twilio request: form fields (first value of each) and our query parameters.

    Attributes:
        utterance_id: ``u``: for a Redirect, the line just said; for a Gather action, the line
            the Gather carried or followed (the caller's words are heard after it).
        turn: the Gather's token, so a retry of one request dedupes and a later turn does not.
    """

    hook: Hook
    call_sid: str
    call_id: str | None
    turn: str | None
    utterance_id: str | None
    form: dict[str, str]

    @property
    def key(self) -> str:
        return f"twilio:{self.call_sid}"

    @property
    def is_fetch(self) -> bool:
        """Twilio waits for TwiML in the answer (everything but a status callback)."""
        return self.hook is not Hook.STATUS

    @property
    def has_speech(self) -> bool:
        return bool(self.form.get("SpeechResult", "").strip())


def read_webhook(request: WebhookRequest) -> TwilioWebhook:
    """Parse one Twilio request; ``CallerError`` when it is not one."""
    try:
        body = request.body.decode("utf-8")
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body))
        query = dict(parse_qsl(request.query, keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise CallerError("the Twilio webhook body is not a form") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    sid = form.get("CallSid", "")
    if not sid or len(sid) > 64 or not sid.isalnum():
        raise CallerError("the Twilio webhook has no valid CallSid")
    raw_hook = query.get("hook")
    if raw_hook is None:
        # The number's own status callback has no hook of ours but says what it is.
        is_status = form.get("CallbackSource") == "call-progress-events"
        hook = Hook.STATUS if is_status else Hook.VOICE
    else:
        try:
            hook = Hook(raw_hook)
        except ValueError:
            raise CallerError(f"unknown webhook hook {raw_hook!r}") from None
        if hook is Hook.VOICE:
            raise CallerError("unknown webhook hook 'voice'")
    return TwilioWebhook(
        hook=hook,
        call_sid=sid,
        call_id=query.get("callId") or None,
        turn=query.get("turn") or None,
        utterance_id=query.get("u") or None,
        form=form,
    )


def fetch_events(hook: TwilioWebhook) -> list[CallEvent]:
    """What a TwiML fetch tells us: a call arrived or was answered, a line was said, the
    caller spoke or was silent, or the call's media stream ended."""
    sid, form, key = hook.call_sid, hook.form, hook.key
    if hook.hook is Hook.VOICE:
        if form.get("Direction", "inbound") != "inbound":
            raise CallerError("a Twilio voice request without our hook must be inbound")
        return [
            CallInitiated(
                provider_call_id=sid,
                direction=CallDirection.INBOUND,
                from_number=form.get("From") or None,
                to_number=form.get("To") or None,
                dedupe_key=f"{key}:initiated",
            ),
            # Answering the voice request with TwiML is what picks the call up; a refused
            # call is already over when this applies, so then it changes nothing.
            CallAnswered(provider_call_id=sid, dedupe_key=f"{key}:answered"),
        ]
    if hook.hook is Hook.ANSWER:
        return [
            CallAnswered(call_id=hook.call_id, provider_call_id=sid, dedupe_key=f"{key}:answered")
        ]
    if hook.hook is Hook.STREAM:
        # Twilio runs the verb after <Connect><Stream> only once the stream's WebSocket has
        # ended and the call is still up (a hang-up runs no more TwiML).
        return [
            StreamStopped(
                call_id=hook.call_id,
                provider_call_id=sid,
                reason="the media stream ended; Twilio went on past <Connect>",
                dedupe_key=f"{key}:stream-stopped:{hook.turn or 'none'}",
            )
        ]
    events: list[CallEvent] = []
    if hook.utterance_id:
        # Twilio came back after the line: it has been said whole (the Say inside a Gather
        # is over too once the Gather's action is requested).
        events.append(
            SpeechPlayed(
                call_id=hook.call_id,
                provider_call_id=sid,
                utterance_id=hook.utterance_id,
                dedupe_key=f"{key}:played:{hook.utterance_id}",
            )
        )
    if hook.hook is Hook.GATHER:
        turn = hook.turn or "none"
        speech = form.get("SpeechResult", "").strip()
        if speech:
            events.append(
                CallSpeech(
                    call_id=hook.call_id,
                    provider_call_id=sid,
                    transcript=speech,
                    is_final=True,
                    confidence=_confidence(form.get("Confidence")),
                    heard_after=hook.utterance_id,
                    dedupe_key=f"{key}:speech:{turn}",
                )
            )
        else:
            # actionOnEmptyResult: the caller said nothing.
            events.append(
                CallSilence(
                    call_id=hook.call_id,
                    provider_call_id=sid,
                    duration_ms=_GATHER_DEFAULT_TIMEOUT_MS,
                    dedupe_key=f"{key}:silence:{turn}",
                )
            )
    return events


def status_events(hook: TwilioWebhook, *, ended_by_us: bool) -> list[CallEvent]:
    """A status callback as events.

    Twilio's ``completed`` does not say who hung up; a call we did not end (no REST
    ``Status=completed``, no ``<Hangup>`` served) was hung up by the caller.
    """
    sid, key, call_id = hook.call_sid, hook.key, hook.call_id
    raw = hook.form.get("CallStatus")
    if not raw:
        raise CallerError("Twilio status callback without CallStatus")
    if raw in ("queued", "initiated"):
        # Never an inbound "initiated": only the voice request may create an inbound call.
        return [CallInitiated(call_id=call_id, provider_call_id=sid, dedupe_key=f"{key}:initiated")]
    if raw == "ringing":
        return [CallRinging(call_id=call_id, provider_call_id=sid, dedupe_key=f"{key}:ringing")]
    if raw == "in-progress":
        return [CallAnswered(call_id=call_id, provider_call_id=sid, dedupe_key=f"{key}:answered")]
    end_state = END_STATES.get(raw)
    if end_state is None:
        log.warning("Twilio status callback with unknown CallStatus %r ignored", raw)
        return []
    if end_state is CallState.COMPLETED and not ended_by_us:
        end_state = CallState.HANGUP_USER
    code = hook.form.get("ErrorCode")
    detail = f"Twilio {raw}" + (f" (error {code})" if code else "")
    return [
        CallEnded(
            call_id=call_id,
            provider_call_id=sid,
            reason=end_state,
            detail=detail,
            dedupe_key=f"{key}:ended",
        )
    ]


def _confidence(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and 0.0 <= value <= 1.0 else None
