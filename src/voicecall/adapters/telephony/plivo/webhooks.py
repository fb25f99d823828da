"""How we read Plivo's webhooks: query and form body in, normalised call events out.

Wire facts:

* Parameters of every XML request (``CallUUID``, ``From``, ``To``, ``CallStatus``,
  ``Direction``, ``HangupCause``…): https://docs.plivo.com/docs/voice/xml/request
* ``<GetInput>`` action parameters (``InputType``, ``Speech``, ``Digits``,
  ``SpeechConfidenceScore``) and interim results (``StableSpeech``, ``UnstableSpeech``,
  ``SequenceNumber``): https://plivo.com/docs/voice/xml/getinput
* Who hung up, in the hang-up callback's ``HangupSource`` (Caller, Call recipient, Plivo,
  Carrier, API Request, Answer XML, Error, Unknown), and the ``HangupCauseName`` values:
  https://docs.plivo.com/docs/voice/troubleshooting/hangup-causes

Every callback URL we hand Plivo carries our call id, the callback kind and, for documents we
serve, the token of the document it came from and the utterance it follows. Plivo signs the
whole URL with V3, so these query parameters are as trustworthy as the body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs, parse_qsl

import attrs

from voicecall.domain.call import CallDirection, CallState
from voicecall.domain.errors import CallerError
from voicecall.domain.events import (
    CallActive,
    CallAnswered,
    CallDtmf,
    CallEnded,
    CallEvent,
    CallInitiated,
    CallRinging,
    CallSilence,
    CallSpeech,
    SpeechPlayed,
    SpeechStarted,
    StreamStopped,
)
from voicecall.domain.webhook import WebhookRequest

from .verify import FORM_CONTENT_TYPE

__all__ = [
    "Webhook",
    "WebhookKind",
    "active_event",
    "answer_events",
    "cdr_end_state",
    "confidence",
    "e164",
    "end_state",
    "ended_events",
    "input_events",
    "partial_events",
    "played_event",
    "read_webhook",
    "ring_events",
    "silence_event",
    "started_event",
    "stream_stopped_event",
]

CALL_ID_PARAM: Final = "callId"
KIND_PARAM: Final = "kind"
DOC_PARAM: Final = "doc"
"""The token of the document the URL was served in (or of the transfer that asked for it)."""
PLAYED_PARAM: Final = "played"
"""The utterance whose ``<Speak>`` ran just before this URL was requested: now it is played."""
AFTER_PARAM: Final = "after"
"""The utterance the listen went with or followed (``heard_after``)."""
SILENCE_PARAM: Final = "silence"
"""Set on the ``<Redirect>`` after a ``<GetInput>``: reached only when nobody spoke."""
STREAM_PARAM: Final = "stream"
"""Set (``ended``) on the ``<Redirect>`` after a ``<Stream keepCallAlive>``: reached only once
the stream has disconnected while the call goes on."""


class WebhookKind:
    """The ``kind`` query parameter on every callback URL we hand Plivo."""

    ANSWER: Final = "answer"
    RING: Final = "ring"
    HANGUP: Final = "hangup"
    XML: Final = "xml"
    """A transfer (``aleg_url``) or ``<Redirect>`` fetch: serve the call's next document."""
    INPUT: Final = "input"
    """``<GetInput>``'s action: the caller's recognised speech (or digits)."""
    PARTIAL: Final = "partial"
    """``interimSpeechResultsCallback``: unstable speech while the caller is still talking."""

    ALL: Final = frozenset({ANSWER, RING, HANGUP, XML, INPUT, PARTIAL})
    SERVES_XML: Final = frozenset({ANSWER, XML, INPUT})


# Plivo's CallStatus values once a call is over (hang-up URL and late answer fetches).
ENDED_STATUSES: Final = frozenset({"completed", "busy", "failed", "timeout", "no-answer", "cancel"})
# HangupSource values (hangup-causes page): the person on the phone ended the call. "Callee"
# is what older accounts report for the called party.
_PERSON_SOURCES: Final = frozenset({"caller", "callee", "call recipient"})
_API_SOURCES: Final = frozenset({"api request"})
_XML_SOURCES: Final = frozenset({"answer xml"})


@attrs.frozen
class Webhook:
    """One Plivo webhook, read from its query and form body."""

    kind: str
    call_id: str | None
    form: Mapping[str, str]
    query: Mapping[str, str]

    @property
    def call_uuid(self) -> str:
        return self.form.get("CallUUID", "")

    @property
    def doc(self) -> str | None:
        return self.query.get(DOC_PARAM) or None

    @property
    def played(self) -> str | None:
        return self.query.get(PLAYED_PARAM) or None

    @property
    def after(self) -> str | None:
        return self.query.get(AFTER_PARAM) or None

    @property
    def silence(self) -> bool:
        return self.query.get(SILENCE_PARAM) == "1"

    @property
    def stream_ended(self) -> bool:
        return self.query.get(STREAM_PARAM) == "ended"

    def field(self, name: str) -> str:
        return self.form.get(name, "").strip()


def read_webhook(request: WebhookRequest) -> Webhook:
    """Parse query and form body; ``CallerError`` when anything needed is missing or bad."""
    try:
        raw_query = parse_qs(request.query, keep_blank_values=True, strict_parsing=False)
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallerError("the Plivo webhook body is not UTF-8") from None
    media = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if text and media not in ("", FORM_CONTENT_TYPE):
        raise CallerError(f"expected a form-encoded Plivo webhook, got {media!r}")
    form: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        form.setdefault(key, value)
    query = {key: values[0] for key, values in raw_query.items() if values}
    call_id = query.get(CALL_ID_PARAM) or None
    kind = query.get(KIND_PARAM) or _infer_kind(form)
    if kind not in WebhookKind.ALL:
        raise CallerError(f"unknown Plivo webhook kind {kind!r}")
    if not form.get("CallUUID", "").strip():
        raise CallerError("the Plivo webhook has no CallUUID")
    direction = form.get("Direction", "").strip()
    if direction and direction not in ("inbound", "outbound"):
        raise CallerError(f"unknown Plivo call direction {direction!r}")
    form["CallUUID"] = form["CallUUID"].strip()
    return Webhook(kind=kind, call_id=call_id, form=form, query=query)


def _infer_kind(form: Mapping[str, str]) -> str:
    # The URLs we hand Plivo carry ?kind=; the application's Answer and Hangup URLs (set by
    # the operator on Plivo's console, for inbound calls) may not, so tell them apart here.
    status = form.get("CallStatus", "").strip()
    if form.get("HangupCause") or status in ENDED_STATUSES:
        return WebhookKind.HANGUP
    if "InputType" in form or "Speech" in form:
        return WebhookKind.INPUT
    if "UnstableSpeech" in form or "StableSpeech" in form:
        return WebhookKind.PARTIAL
    if status == "ringing" and form.get("Direction") == "outbound":
        return WebhookKind.RING
    return WebhookKind.ANSWER


def e164(raw: str) -> str | None:
    """Plivo writes numbers without the '+' (``14155551234``); the domain speaks E.164."""
    value = raw.strip()
    if not value:
        return None
    if re.fullmatch(r"[1-9]\d{5,14}", value):
        return f"+{value}"
    return value


def confidence(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def end_state(status: str, source: str, cause: str, direction: str | None) -> tuple[CallState, str]:
    """Map Plivo's CallStatus / HangupSource / cause name to a terminal state and a detail.

    The person on the phone hanging up is ``hangup-user``; our ``DELETE`` (API Request) is
    ``hangup-bot`` (the service names its own reason when it asked); a ``<Hangup/>`` we served
    ends the call as planned (``completed``), except a rejection.
    """
    status = status.lower()
    source_l = source.lower()
    detail = ", ".join(part for part in (cause, source) if part) or status or "hung up"
    if status == "busy":
        return CallState.BUSY, detail
    if status == "no-answer":
        return CallState.NO_ANSWER, detail
    if status in ("failed", "timeout"):
        # Plivo uses ``timeout`` for a connection attempt that timed out in the network.
        return CallState.FAILED, detail
    if status == "cancel":
        inbound = direction == "inbound"
        return (CallState.HANGUP_USER if inbound else CallState.HANGUP_BOT), detail
    if source_l in _PERSON_SOURCES:
        return CallState.HANGUP_USER, detail
    if source_l in _API_SOURCES:
        return CallState.HANGUP_BOT, detail
    if source_l in _XML_SOURCES:
        rejected = "reject" in cause.lower()
        return (CallState.HANGUP_BOT if rejected else CallState.COMPLETED), detail
    if source_l == "error":
        return CallState.ERROR, detail
    return CallState.COMPLETED, detail


def cdr_end_state(record: Mapping[str, Any]) -> CallState:
    """A call detail record's outcome (``hangup_cause_name``, ``hangup_source``)."""
    cause = str(record.get("hangup_cause_name") or "").lower()
    source = str(record.get("hangup_source") or "").lower()
    if "busy" in cause:
        return CallState.BUSY
    if "no answer" in cause or "ring timeout" in cause:
        return CallState.NO_ANSWER
    if not record.get("answer_time") and ("reject" in cause or source == "error"):
        return CallState.FAILED
    if source in _PERSON_SOURCES:
        return CallState.HANGUP_USER
    if source in _API_SOURCES:
        return CallState.HANGUP_BOT
    if source in _XML_SOURCES:
        return CallState.HANGUP_BOT if "reject" in cause else CallState.COMPLETED
    if source == "error":
        return CallState.ERROR
    return CallState.COMPLETED


# ------------------------------------------------------------------ events


def ring_events(hook: Webhook) -> list[CallEvent]:
    uuid = hook.call_uuid
    return [
        CallRinging(call_id=hook.call_id, provider_call_id=uuid, dedupe_key=f"plivo:{uuid}:ringing")
    ]


def ended_events(hook: Webhook, status: str | None = None) -> list[CallEvent]:
    uuid = hook.call_uuid
    reason, detail = end_state(
        status if status is not None else hook.field("CallStatus"),
        hook.field("HangupSource"),
        hook.field("HangupCauseName") or hook.field("HangupCause"),
        hook.field("Direction") or None,
    )
    return [
        CallEnded(
            call_id=hook.call_id,
            provider_call_id=uuid,
            reason=reason,
            detail=detail,
            dedupe_key=f"plivo:{uuid}:ended",
        )
    ]


def answer_events(hook: Webhook) -> list[CallEvent]:
    uuid = hook.call_uuid
    status = hook.field("CallStatus")
    if hook.field("Direction") == "inbound" and hook.call_id is None:
        # Plivo fetches the application's Answer URL when a call comes in; the XML we
        # return answers it (or rejects it), so the call is picked up by this very answer.
        return [
            CallInitiated(
                provider_call_id=uuid,
                direction=CallDirection.INBOUND,
                from_number=e164(hook.field("From")),
                to_number=e164(hook.field("To")),
                dedupe_key=f"plivo:{uuid}:initiated",
            ),
            CallAnswered(provider_call_id=uuid, dedupe_key=f"plivo:{uuid}:answered"),
        ]
    if status in ENDED_STATUSES:
        return ended_events(hook, status)
    return [
        CallAnswered(
            call_id=hook.call_id, provider_call_id=uuid, dedupe_key=f"plivo:{uuid}:answered"
        )
    ]


def active_event(hook: Webhook) -> CallEvent:
    """A document fetch: the call is running our XML, so it is active."""
    uuid = hook.call_uuid
    return CallActive(
        call_id=hook.call_id, provider_call_id=uuid, dedupe_key=f"plivo:{uuid}:active"
    )


def played_event(hook: Webhook, utterance_id: str) -> CallEvent:
    uuid = hook.call_uuid
    return SpeechPlayed(
        call_id=hook.call_id,
        provider_call_id=uuid,
        utterance_id=utterance_id,
        dedupe_key=f"plivo:{uuid}:played:{utterance_id}",
    )


def started_event(call_id: str, call_uuid: str, utterance_id: str) -> CallEvent:
    return SpeechStarted(
        call_id=call_id,
        provider_call_id=call_uuid,
        utterance_id=utterance_id,
        dedupe_key=f"plivo:{call_uuid}:started:{utterance_id}",
    )


def input_events(hook: Webhook, listen_timeout_s: int) -> list[CallEvent]:
    """``<GetInput>``'s action: what the caller said (or pressed), naming the line it answers."""
    uuid = hook.call_uuid
    # The document token is in the action URL, so a retry of the same action has the same
    # key while every new listening attempt has its own.
    key = f"plivo:{uuid}:input:{hook.doc or '-'}"
    speech = hook.field("Speech")
    digits = hook.field("Digits")
    if speech:
        return [
            CallSpeech(
                call_id=hook.call_id,
                provider_call_id=uuid,
                transcript=speech,
                is_final=True,
                confidence=confidence(hook.field("SpeechConfidenceScore")),
                heard_after=hook.after,
                dedupe_key=key,
            )
        ]
    if digits:
        return [
            CallDtmf(call_id=hook.call_id, provider_call_id=uuid, digits=digits, dedupe_key=key)
        ]
    return [silence_event(hook, listen_timeout_s)]


def silence_event(hook: Webhook, listen_timeout_s: int) -> CallEvent:
    uuid = hook.call_uuid
    return CallSilence(
        call_id=hook.call_id,
        provider_call_id=uuid,
        duration_ms=listen_timeout_s * 1000,
        dedupe_key=f"plivo:{uuid}:silence:{hook.doc or '-'}",
    )


def partial_events(hook: Webhook) -> list[CallEvent]:
    text = " ".join(
        part for part in (hook.field("StableSpeech"), hook.field("UnstableSpeech")) if part
    )
    if not text:
        return []
    sequence = hook.field("SequenceNumber") or text
    return [
        CallSpeech(
            call_id=hook.call_id,
            provider_call_id=hook.call_uuid,
            transcript=text,
            is_final=False,
            heard_after=hook.after,
            dedupe_key=f"plivo:{hook.call_uuid}:partial:{hook.doc or '-'}:{sequence}",
        )
    ]


def stream_stopped_event(hook: Webhook) -> CallEvent:
    """The ``<Redirect>`` after our ``<Stream>`` was reached: the stream is gone, the call not."""
    uuid = hook.call_uuid
    return StreamStopped(
        call_id=hook.call_id,
        provider_call_id=uuid,
        reason="the Plivo stream disconnected",
        dedupe_key=f"plivo:{uuid}:stream-stopped:{hook.doc or '-'}",
    )
