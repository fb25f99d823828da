"""Plivo Voice API: calls placed over REST, driven with Plivo XML, verified by V3 signatures.

How a Plivo call is driven (wire facts from Plivo's Voice API and XML reference, and the
plivo-python SDK):

* ``POST /v1/Account/{auth_id}/Call/`` (HTTP basic auth, JSON) places a call. Plivo answers with
  a ``request_uuid``; the call's own ``CallUUID`` arrives with the first webhook (ring, answer or
  hang-up), and the service adopts it then.
* Every callback URL is our ``publicUrl`` with a query naming our call id and the callback kind,
  so each webhook resolves to its call without a lookup and the V3 signature covers both.
* Plivo runs one XML document per call at a time. It asks for one when the call is answered
  (``answer_url``), after ``<GetInput>`` hears the caller (its ``action``), at a ``<Redirect>``,
  and when we transfer the live call to a new URL (``POST /Call/{uuid}/`` with ``legs=aleg``).
  ``speak``/``listen`` therefore queue what to say and whether to listen; the queue is served
  as XML by whichever of those fetches comes next. Inside a webhook that expects XML the fetch
  is already under way; outside one we transfer the call to our own URL to make Plivo fetch.
* Served documents never run out: an empty ``<Response>`` hangs the call up, so every document
  ends in a ``<Redirect>`` back to us (after speech: to hear what comes next; after a
  ``<GetInput>`` with no input: to listen again) or in a keep-alive ``<Wait>`` + ``<Redirect>``.
* An inbound call is rejected by answering its ``answer_url`` with ``<Hangup reason="rejected"/>``;
  a call is hung up with ``DELETE /Call/{uuid}/`` (404 = already over); its status is read from
  ``GET /Call/{uuid}/?status=live`` (404 = not live), then the CDR ``GET /Call/{uuid}/``.

Operators point the Plivo application's Answer URL and Hangup URL (method POST) at
``publicUrl`` itself; webhooks that arrive without our query are told apart by their fields.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import httpx
from plivo.utils import validate_signature, validate_v3_signature
from plivo.xml import (
    GetInputElement,
    HangupElement,
    RedirectElement,
    ResponseElement,
    SpeakElement,
    WaitElement,
)

from voicecall.config import AppConfig, url_trust_settings
from voicecall.domain.call import Call, CallDirection, CallState
from voicecall.domain.errors import CallerError, CarrierRejected, TransientError, VoiceCallError
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
)
from voicecall.domain.ports import (
    CarrierStatus,
    CarrierStatusKind,
    Clock,
    DialRequest,
    DialResult,
    EventSink,
)
from voicecall.domain.signed_url import (
    UrlTrustSettings,
    Verification,
    reconstruct_public_url,
    signature_headers_present,
)
from voicecall.domain.webhook import WebhookRequest, WebhookResponse

__all__ = [
    "PLIVO_VOICES",
    "PlivoSignatureVerifier",
    "PlivoTelephony",
    "WebhookKind",
    "native_voice",
]

log = logging.getLogger(__name__)

_V3_SIGNATURE: Final = "x-plivo-signature-v3"
_V3_NONCE: Final = "x-plivo-signature-v3-nonce"
_V2_SIGNATURE: Final = "x-plivo-signature-v2"
_V2_NONCE: Final = "x-plivo-signature-v2-nonce"
_FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_SIGNED_METHODS: Final = frozenset({"GET", "POST"})

FormParams = dict[str, str | list[str]]


def _form_params(body: str) -> FormParams:
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    # The SDK signs a repeated field as each value in sorted order, a single one as itself.
    return {key: values[0] if len(values) == 1 else values for key, values in grouped.items()}


def _media_type(request: WebhookRequest) -> str:
    return (request.header("content-type") or "").split(";", 1)[0].strip().lower()


class PlivoSignatureVerifier:
    """Checks Plivo's V3 signature, falling back to V2 only when no V3 headers came.

    V3 (``X-Plivo-Signature-V3`` + ``-V3-Nonce``) is HMAC-SHA256 over the URL, the sorted POST
    fields and the nonce; the header may carry several comma-separated signatures (one per
    active auth token) and any one matching passes. Verification uses the Plivo SDK's
    ``validate_v3_signature``.

    V2 (``X-Plivo-Signature-V2`` + ``-V2-Nonce``) is HMAC-SHA256 over the URL without its
    query, plus the nonce; it covers neither the query nor the body, so a captured V2 header
    stays valid for any body. It is used only when the V3 headers are absent (a present but
    wrong V3 signature is final), and can be switched off with ``accept_v2=False``.
    """

    required_headers: tuple[str, ...] = (_V3_SIGNATURE, _V3_NONCE, _V2_SIGNATURE, _V2_NONCE)
    """Every header Plivo may sign with; either the V3 pair or the V2 pair suffices, so use
    ``has_signature_headers`` rather than requiring them all."""

    def __init__(
        self, auth_token: str, settings: UrlTrustSettings, *, accept_v2: bool = True
    ) -> None:
        self._auth_token = auth_token
        self._settings = settings
        self._accept_v2 = accept_v2
        self.header_sets: tuple[tuple[str, ...], ...] = (
            ((_V3_SIGNATURE, _V3_NONCE), (_V2_SIGNATURE, _V2_NONCE))
            if accept_v2
            else ((_V3_SIGNATURE, _V3_NONCE),)
        )
        """Header groups of which one must be complete for the request to be verifiable."""

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        """Whether the V3 pair (or, if accepted, the V2 pair) is present, before the body."""
        return signature_headers_present(self.header_sets, header_names)

    def verify(self, request: WebhookRequest) -> Verification:
        """Verify one request; never raises."""
        v3_signatures = request.header(_V3_SIGNATURE)
        v3_nonce = request.header(_V3_NONCE)
        v2_signature = request.header(_V2_SIGNATURE)
        v2_nonce = request.header(_V2_NONCE)
        if not (v3_signatures and v3_nonce) and not (self._accept_v2 and v2_signature and v2_nonce):
            return Verification(ok=False, reason="missing Plivo signature headers")
        if not self._auth_token:
            return Verification(ok=False, reason="no Plivo auth token configured")

        url = reconstruct_public_url(request, self._settings)
        if v3_signatures and v3_nonce:
            return self._verify_v3(request, url, v3_signatures, v3_nonce)
        return self._verify_v2(url, v2_signature or "", v2_nonce or "")

    def _verify_v3(
        self, request: WebhookRequest, url: str, signatures: str, nonce: str
    ) -> Verification:
        method = request.method.upper()
        if method not in _SIGNED_METHODS:
            return Verification(ok=False, reason="method not signed by Plivo", checked_urls=(url,))
        params: FormParams = {}
        if method == "POST" and request.body:
            if _media_type(request) != _FORM_CONTENT_TYPE:
                return Verification(
                    ok=False, reason="body not covered by the signature", checked_urls=(url,)
                )
            try:
                params = _form_params(request.body.decode("utf-8"))
            except UnicodeDecodeError:
                return Verification(ok=False, reason="body is not UTF-8", checked_urls=(url,))
        # Check each signature alone so the one that matched, not the whole header (which
        # could be padded with junk), identifies the request for replay protection.
        for candidate in (part.strip() for part in signatures.split(",")):
            if not candidate:
                continue
            try:
                valid = validate_v3_signature(
                    method, url, nonce, self._auth_token, candidate, dict(params)
                )
            except Exception:
                valid = False
            if valid:
                return Verification(
                    ok=True,
                    reason="valid Plivo V3 signature",
                    checked_urls=(url,),
                    replay_key=f"plivo-v3:{nonce}:{candidate}",
                )
        return Verification(ok=False, reason="bad Plivo V3 signature", checked_urls=(url,))

    def _verify_v2(self, url: str, signature: str, nonce: str) -> Verification:
        try:
            valid = validate_signature(url, nonce, signature.strip(), self._auth_token)
        except Exception:
            valid = False
        if not valid:
            return Verification(ok=False, reason="bad Plivo V2 signature", checked_urls=(url,))
        return Verification(
            ok=True,
            reason="valid Plivo V2 signature",
            checked_urls=(url,),
            replay_key=f"plivo-v2:{nonce}:{signature.strip()}",
        )


# --------------------------------------------------------------------------------------------
# The telephony adapter
# --------------------------------------------------------------------------------------------


class WebhookKind:
    """The ``kind`` query parameter on every callback URL we hand Plivo."""

    ANSWER: Final = "answer"
    RING: Final = "ring"
    HANGUP: Final = "hangup"
    XML: Final = "xml"
    """A transfer (``aleg_url``) or ``<Redirect>`` fetch: serve the call's pending XML."""
    INPUT: Final = "input"
    """``<GetInput>``'s action: the caller's recognised speech (or digits, or nothing)."""
    PARTIAL: Final = "partial"
    """``interimSpeechResultsCallback``: unstable speech while the caller is still talking."""

    ALL: Final = frozenset({ANSWER, RING, HANGUP, XML, INPUT, PARTIAL})
    SERVES_XML: Final = frozenset({ANSWER, XML, INPUT})


_CALL_ID_PARAM: Final = "callId"
_KIND_PARAM: Final = "kind"
_TURN_PARAM: Final = "turn"

# Plivo's CallStatus values once a call is over (hang-up URL and late answer fetches).
_ENDED_STATUSES: Final = frozenset(
    {"completed", "busy", "failed", "timeout", "no-answer", "cancel"}
)
# HangupSource values that mean the person on the phone ended the call.
_PERSON_SOURCES: Final = frozenset({"caller", "callee", "call recipient"})
_BOT_SOURCES: Final = frozenset({"api request", "answer xml"})

_TRANSFER_FETCH_WINDOW_S: Final = 15.0
"""How long after a transfer (or while a webhook that expects XML is in flight) new speech
is only queued: Plivo is about to fetch the document anyway."""
_SPEECH_CHARS_PER_S: Final = 14.0
_SPEECH_MARGIN_S: Final = 10.0
_MAX_LINES: Final = 2000

PLIVO_VOICES: Final[Mapping[str, str]] = {
    # OpenAI voice -> the Amazon Polly voice Plivo's <Speak> offers that sounds closest.
    "alloy": "Polly.Joanna",
    "ash": "Polly.Matthew",
    "ballad": "Polly.Brian",
    "coral": "Polly.Salli",
    "echo": "Polly.Joey",
    "fable": "Polly.Brian",
    "nova": "Polly.Kimberly",
    "onyx": "Polly.Matthew",
    "sage": "Polly.Kendra",
    "shimmer": "Polly.Kendra",
    "verse": "Polly.Joey",
}


def native_voice(voice: str | None) -> str | None:
    """The Plivo ``<Speak voice>`` for an OpenAI voice name; None keeps Plivo's default.

    A name that already looks native (``WOMAN``, ``MAN``, ``Polly.*``) is passed through.
    """
    if not voice:
        return None
    if voice in ("WOMAN", "MAN") or voice.startswith("Polly."):
        return voice
    return PLIVO_VOICES.get(voice.lower())


@attrs.define
class _Line:
    """What we keep per live Plivo call (by CallUUID) to serve it the right XML."""

    provider_call_id: str
    call_id: str | None = None
    speech: list[tuple[str, str | None]] = attrs.Factory(list)
    listening: bool = False
    gather_token: str | None = None
    fetch_due_until: float = 0.0
    rejected: bool = False
    answer_doc: bytes | None = None
    touched_at: float = 0.0


@attrs.frozen
class _Webhook:
    """One Plivo webhook, read from its query and form body."""

    kind: str
    call_id: str | None
    turn: str | None
    form: Mapping[str, str]

    @property
    def call_uuid(self) -> str:
        return self.form.get("CallUUID", "")

    def field(self, name: str) -> str:
        return self.form.get(name, "").strip()


def _read_webhook(request: WebhookRequest) -> _Webhook:
    """Parse query and form body; ``CallerError`` when anything needed is missing or bad."""
    try:
        query = parse_qs(request.query, keep_blank_values=True, strict_parsing=False)
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallerError("the Plivo webhook body is not UTF-8") from None
    media = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if text and media not in ("", _FORM_CONTENT_TYPE):
        raise CallerError(f"expected a form-encoded Plivo webhook, got {media!r}")
    form: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        form.setdefault(key, value)
    call_id = (query.get(_CALL_ID_PARAM) or [""])[0] or None
    turn = (query.get(_TURN_PARAM) or [""])[0] or None
    kind = (query.get(_KIND_PARAM) or [""])[0] or _infer_kind(form)
    if kind not in WebhookKind.ALL:
        raise CallerError(f"unknown Plivo webhook kind {kind!r}")
    if not form.get("CallUUID", "").strip():
        raise CallerError("the Plivo webhook has no CallUUID")
    direction = form.get("Direction", "").strip()
    if direction and direction not in ("inbound", "outbound"):
        raise CallerError(f"unknown Plivo call direction {direction!r}")
    form["CallUUID"] = form["CallUUID"].strip()
    return _Webhook(kind=kind, call_id=call_id, turn=turn, form=form)


def _infer_kind(form: Mapping[str, str]) -> str:
    # The URLs we hand Plivo carry ?kind=; the application's Answer and Hangup URLs (set by
    # the operator on Plivo's console, for inbound calls) may not, so tell them apart here.
    status = form.get("CallStatus", "").strip()
    if form.get("HangupCause") or status in _ENDED_STATUSES:
        return WebhookKind.HANGUP
    if "InputType" in form or "Speech" in form:
        return WebhookKind.INPUT
    if "UnstableSpeech" in form or "StableSpeech" in form:
        return WebhookKind.PARTIAL
    if status == "ringing" and form.get("Direction") == "outbound":
        return WebhookKind.RING
    return WebhookKind.ANSWER


def _e164(raw: str) -> str | None:
    """Plivo writes numbers without the '+' (``14155551234``); the domain speaks E.164."""
    value = raw.strip()
    if not value:
        return None
    if re.fullmatch(r"[1-9]\d{5,14}", value):
        return f"+{value}"
    return value


def _plivo_number(number: str) -> str:
    return number[1:] if number.startswith("+") else number


def _confidence(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def _end_state(
    status: str, source: str, cause: str, direction: str | None
) -> tuple[CallState, str]:
    """Map Plivo's CallStatus / HangupSource / cause name to a terminal state and a detail."""
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
    if source_l in _BOT_SOURCES:
        return CallState.HANGUP_BOT, detail
    if source_l == "error":
        return CallState.ERROR, detail
    return CallState.COMPLETED, detail


def _cdr_end_state(record: Mapping[str, Any]) -> CallState:
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
    if source in _BOT_SOURCES:
        return CallState.HANGUP_BOT
    if source == "error":
        return CallState.ERROR
    return CallState.COMPLETED


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    return response.reason_phrase or f"HTTP {response.status_code}"


def _xml(response: ResponseElement) -> bytes:
    return str(response.to_string(pretty=False)).encode("utf-8")


_EMPTY_XML: Final = b"<Response/>"


class PlivoTelephony:
    """The Plivo carrier: Voice API over REST (httpx), calls driven by Plivo XML.

    Args:
        auth_id: the Plivo Auth ID (account or subaccount).
        auth_token: its Auth Token; signs REST calls (basic auth) and webhooks (V3).
        public_url: ``publicUrl``, the exact webhook URL Plivo calls.
        verifier: checks webhook signatures.
        clock: time for the fetch windows.
        http: the client for the REST API; closed by ``aclose`` only if ``owns_http``.
        api_base_url: ``plivo.apiBaseUrl`` (``https://api.plivo.com``).
        keepalive_s: how long a keep-alive ``<Wait>`` lasts before Plivo asks us again.
        listen_timeout_s: ``<GetInput executionTimeout>``: how long Plivo listens per attempt.
    """

    name = "plivo"
    signs_webhooks = True

    def __init__(
        self,
        *,
        auth_id: str,
        auth_token: str,
        public_url: str,
        verifier: PlivoSignatureVerifier,
        clock: Clock,
        http: httpx.AsyncClient,
        api_base_url: str = "https://api.plivo.com",
        owns_http: bool = False,
        keepalive_s: int = 60,
        listen_timeout_s: int = 30,
    ) -> None:
        self._auth_id = auth_id
        self._auth = (auth_id, auth_token)
        self._public_url = public_url
        self._verifier = verifier
        self._clock = clock
        self._http = http
        self._owns_http = owns_http
        self._account_url = f"{api_base_url.rstrip('/')}/v1/Account/{auth_id}/"
        self._keepalive_s = max(int(keepalive_s), 1)
        # Plivo accepts 5-60 s for executionTimeout.
        self._listen_timeout_s = min(max(int(listen_timeout_s), 5), 60)
        self._lines: dict[str, _Line] = {}
        self._sink: EventSink | None = None

    @classmethod
    def from_config(
        cls, config: AppConfig, clock: Clock, http: httpx.AsyncClient | None = None
    ) -> PlivoTelephony:
        """Build from ``plugins.entries.voice-call.config`` (credentials, publicUrl, security)."""
        voice = config.voice
        if not voice.public_url:
            raise CallerError("the Plivo carrier needs publicUrl (the URL Plivo calls)")
        settings = url_trust_settings(voice)
        auth_token = voice.plivo.auth_token or ""
        owns_http = http is None
        client = http or httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )
        return cls(
            auth_id=voice.plivo.auth_id or "",
            auth_token=auth_token,
            public_url=voice.public_url,
            verifier=PlivoSignatureVerifier(auth_token, settings),
            clock=clock,
            http=client,
            api_base_url=voice.plivo.api_base_url,
            owns_http=owns_http,
        )

    # ------------------------------------------------------------------ port: calls

    def bind(self, sink: EventSink) -> None:
        # Everything Plivo tells us arrives as webhooks; the sink is kept for symmetry.
        self._sink = sink

    async def dial(self, request: DialRequest) -> DialResult:
        body = {
            "from": _plivo_number(request.from_number),
            "to": _plivo_number(request.to_number),
            "answer_url": self._callback_url(request.call_id, WebhookKind.ANSWER),
            "answer_method": "POST",
            # Not strictly needed, but it hands us the CallUUID while the phone rings, so a
            # ringing call can be hung up by its own id.
            "ring_url": self._callback_url(request.call_id, WebhookKind.RING),
            "ring_method": "POST",
            "hangup_url": self._callback_url(request.call_id, WebhookKind.HANGUP),
            "hangup_method": "POST",
            "ring_timeout": max(round(request.ring_timeout_s), 1),
        }
        response = await self._request("POST", "Call/", json=body)
        self._raise_unless_ok(response, "place the call")
        try:
            data = response.json()
        except ValueError:
            data = None
        request_uuid = data.get("request_uuid") if isinstance(data, dict) else None
        if isinstance(request_uuid, list):
            request_uuid = request_uuid[0] if request_uuid else None
        if not isinstance(request_uuid, str) or not request_uuid:
            raise CarrierRejected("Plivo accepted the call but returned no request_uuid")
        return DialResult(provider_call_id=request_uuid)

    async def answer(self, call: Call) -> None:
        line = self._line_for(call)
        # Inside the inbound answer webhook the XML we return is the answer; otherwise move
        # the call onto our XML so Plivo asks us what to do.
        await self._deliver(call, line)

    async def reject(self, call: Call) -> None:
        line = self._line_for(call)
        line.rejected = True
        if self._fetch_due(line):
            return  # answered in the webhook's XML with <Hangup reason="rejected"/>
        await self._hangup_by_id(call.provider_call_id)

    async def speak(self, call: Call, text: str, voice: str | None) -> None:
        line = self._line_for(call)
        line.speech.append((text, native_voice(voice)))
        # Speaking ends a listening turn; the service listens again when it wants to.
        line.listening = False
        await self._deliver(call, line)

    async def listen(self, call: Call) -> None:
        line = self._line_for(call)
        line.listening = True
        await self._deliver(call, line)

    async def hangup(self, call: Call) -> None:
        await self._hangup_by_id(call.provider_call_id)
        if call.provider_call_id:
            self._lines.pop(call.provider_call_id, None)

    async def status(self, call: Call) -> CarrierStatus:
        call_uuid = call.provider_call_id
        if not call_uuid:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="no Plivo id for the call")
        try:
            live = await self._request("GET", f"Call/{call_uuid}/", params={"status": "live"})
            if live.is_success:
                return CarrierStatus(CarrierStatusKind.LIVE, detail=self._live_status(live))
            if live.status_code != 404:
                return self._unknown(live)
            record = await self._request("GET", f"Call/{call_uuid}/")
            if record.is_success:
                data = record.json()
                if not isinstance(data, dict):
                    return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="unreadable CDR")
                cause = str(data.get("hangup_cause_name") or "")
                return CarrierStatus(
                    CarrierStatusKind.ENDED, end_state=_cdr_end_state(data), detail=cause
                )
            if record.status_code != 404:
                return self._unknown(record)
            # Not live and no record yet: maybe still queued under its request_uuid.
            queued = await self._request("GET", f"Call/{call_uuid}/", params={"status": "queued"})
            if queued.is_success:
                return CarrierStatus(CarrierStatusKind.LIVE, detail="queued")
            # Plivo writes the CDR shortly after a call ends, so "not found anywhere" is not
            # proof the call is over: leave the decision to a later check.
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="Plivo has no record yet")
        except VoiceCallError as err:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail=err.detail)
        except ValueError:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="unreadable answer from Plivo")

    # ------------------------------------------------------------------ port: webhooks

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        return self._verifier.has_signature_headers(header_names)

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return self._verifier.verify(request)

    async def parse_webhook(self, request: WebhookRequest) -> Sequence[CallEvent]:
        hook = _read_webhook(request)
        call_uuid = hook.call_uuid
        now = self._clock.now()
        if hook.kind in WebhookKind.SERVES_XML:
            # Plivo waits for this request's answer to know what to run next: until we have
            # answered, speech is queued for it rather than pushed with a transfer.
            line = self._lines.get(call_uuid) or self._new_line(call_uuid, hook.call_id)
            line.fetch_due_until = now + _TRANSFER_FETCH_WINDOW_S
            line.touched_at = now
        if hook.kind == WebhookKind.RING:
            return [
                CallRinging(
                    call_id=hook.call_id,
                    provider_call_id=call_uuid,
                    dedupe_key=f"plivo:{call_uuid}:ringing",
                )
            ]
        if hook.kind == WebhookKind.HANGUP:
            self._lines.pop(call_uuid, None)
            direction = hook.field("Direction") or None
            reason, detail = _end_state(
                hook.field("CallStatus"),
                hook.field("HangupSource"),
                hook.field("HangupCauseName") or hook.field("HangupCause"),
                direction,
            )
            return [
                CallEnded(
                    call_id=hook.call_id,
                    provider_call_id=call_uuid,
                    reason=reason,
                    detail=detail,
                    dedupe_key=f"plivo:{call_uuid}:ended",
                )
            ]
        if hook.kind == WebhookKind.ANSWER:
            return self._answer_events(hook)
        if hook.kind == WebhookKind.PARTIAL:
            return self._partial_events(hook)
        # xml / input: the call is running our XML, so it is active; the event also lets the
        # service hand this call to webhook_response.
        events: list[CallEvent] = [
            CallActive(
                call_id=hook.call_id,
                provider_call_id=call_uuid,
                dedupe_key=f"plivo:{call_uuid}:active",
            )
        ]
        if hook.kind == WebhookKind.INPUT:
            events.extend(self._input_events(hook))
        return events

    def webhook_response(self, request: WebhookRequest, calls: Sequence[Call]) -> WebhookResponse:
        try:
            hook = _read_webhook(request)
        except CallerError:
            return WebhookResponse(200, _EMPTY_XML, "application/xml")
        if hook.kind not in WebhookKind.SERVES_XML:
            # Notifications (ring, hang-up, interim speech): Plivo ignores the body.
            return WebhookResponse(200, _EMPTY_XML, "application/xml")
        call_uuid = hook.call_uuid
        line = self._lines.get(call_uuid)
        call = next(
            (
                c
                for c in calls
                if c.provider_call_id == call_uuid or (hook.call_id and c.call_id == hook.call_id)
            ),
            None,
        )
        if call is None or not call.is_live:
            # A call we do not drive (unknown, or already over on our side) must not be left
            # running on Plivo; a rejected inbound call hears the rejection.
            if line is not None:
                line.fetch_due_until = 0.0
            rejected = line is not None and line.rejected
            doc = ResponseElement().add(HangupElement(reason="rejected" if rejected else None))
            return WebhookResponse(200, _xml(doc), "application/xml")
        if line is None:
            line = self._new_line(call_uuid, call.call_id)
        line.call_id = call.call_id
        if hook.kind == WebhookKind.ANSWER and line.answer_doc is not None and not line.speech:
            # Plivo retried the answer URL (our first answer never reached it): the call is
            # still waiting for its first document, so serve that again rather than a pause.
            return WebhookResponse(200, line.answer_doc, "application/xml")
        body = self._render(line)
        if hook.kind == WebhookKind.ANSWER:
            line.answer_doc = body
        return WebhookResponse(200, body, "application/xml")

    async def aclose(self) -> None:
        self._lines.clear()
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ webhook details

    def _answer_events(self, hook: _Webhook) -> list[CallEvent]:
        call_uuid = hook.call_uuid
        status = hook.field("CallStatus")
        if hook.field("Direction") == "inbound" and hook.call_id is None:
            # Plivo fetches the application's Answer URL when a call comes in; the XML we
            # return answers it (or rejects it), so the call is picked up by this very answer.
            return [
                CallInitiated(
                    provider_call_id=call_uuid,
                    direction=CallDirection.INBOUND,
                    from_number=_e164(hook.field("From")),
                    to_number=_e164(hook.field("To")),
                    dedupe_key=f"plivo:{call_uuid}:initiated",
                ),
                CallAnswered(provider_call_id=call_uuid, dedupe_key=f"plivo:{call_uuid}:answered"),
            ]
        if status in _ENDED_STATUSES:
            reason, detail = _end_state(
                status, hook.field("HangupSource"), hook.field("HangupCause"), None
            )
            return [
                CallEnded(
                    call_id=hook.call_id,
                    provider_call_id=call_uuid,
                    reason=reason,
                    detail=detail,
                    dedupe_key=f"plivo:{call_uuid}:ended",
                )
            ]
        return [
            CallAnswered(
                call_id=hook.call_id,
                provider_call_id=call_uuid,
                dedupe_key=f"plivo:{call_uuid}:answered",
            )
        ]

    def _input_events(self, hook: _Webhook) -> list[CallEvent]:
        call_uuid = hook.call_uuid
        # The turn token is in the action URL we gave this <GetInput>, so a retry of the same
        # action has the same key while every new listening attempt has its own.
        turn = hook.turn or "-"
        line = self._lines.get(call_uuid)
        speech = hook.field("Speech")
        digits = hook.field("Digits")
        if speech or digits:
            if line is not None and (hook.turn is None or hook.turn == line.gather_token):
                line.listening = False
        if speech:
            return [
                CallSpeech(
                    call_id=hook.call_id,
                    provider_call_id=call_uuid,
                    transcript=speech,
                    is_final=True,
                    confidence=_confidence(hook.field("SpeechConfidenceScore")),
                    dedupe_key=f"plivo:{call_uuid}:input:{turn}",
                )
            ]
        if digits:
            return [
                CallDtmf(
                    call_id=hook.call_id,
                    provider_call_id=call_uuid,
                    digits=digits,
                    dedupe_key=f"plivo:{call_uuid}:input:{turn}",
                )
            ]
        return [
            CallSilence(
                call_id=hook.call_id,
                provider_call_id=call_uuid,
                duration_ms=self._listen_timeout_s * 1000,
                dedupe_key=f"plivo:{call_uuid}:input:{turn}",
            )
        ]

    def _partial_events(self, hook: _Webhook) -> list[CallEvent]:
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
                dedupe_key=f"plivo:{hook.call_uuid}:partial:{hook.turn or '-'}:{sequence}",
            )
        ]

    # ------------------------------------------------------------------ XML

    def _render(self, line: _Line) -> bytes:
        """The document for this fetch: queued speech, then listening or a way back to us."""
        now = self._clock.now()
        call_id = line.call_id or ""
        next_url = self._callback_url(call_id, WebhookKind.XML)
        speech, line.speech = line.speech, []
        doc = ResponseElement()
        if line.listening:
            token = uuid.uuid4().hex[:16]
            line.gather_token = token
            gather = GetInputElement(
                action=self._callback_url(call_id, WebhookKind.INPUT, turn=token),
                method="POST",
                input_type="speech",
                execution_timeout=self._listen_timeout_s,
                redirect=True,
            )
            # Nested, so the caller can talk over the prompt.
            for text, voice in speech:
                gather.add(SpeakElement(text, voice=voice))
            doc.add(gather)
            # Plivo falls through to here when nobody spoke; we listen again from there.
            doc.add(RedirectElement(next_url, method="POST"))
            line.fetch_due_until = 0.0  # new speech interrupts listening at once
        elif speech:
            for text, voice in speech:
                doc.add(SpeakElement(text, voice=voice))
            # Plivo comes back when the speech is done; what was queued meanwhile goes then.
            doc.add(RedirectElement(next_url, method="POST"))
            spoken_s = sum(len(text) for text, _ in speech) / _SPEECH_CHARS_PER_S
            line.fetch_due_until = now + spoken_s + _SPEECH_MARGIN_S
        else:
            # Nothing to say: keep the call up (an empty document would hang it up).
            doc.add(WaitElement(length=self._keepalive_s))
            doc.add(RedirectElement(next_url, method="POST"))
            line.fetch_due_until = 0.0
        line.touched_at = now
        return _xml(doc)

    async def _deliver(self, call: Call, line: _Line) -> None:
        """Make Plivo fetch the queued XML: nothing to do if a fetch is due, else transfer."""
        if self._fetch_due(line):
            return
        call_uuid = call.provider_call_id
        if not call_uuid:
            raise CarrierRejected("the call has no Plivo id yet")
        line.fetch_due_until = self._clock.now() + _TRANSFER_FETCH_WINDOW_S
        body = {
            "legs": "aleg",
            "aleg_url": self._callback_url(call.call_id, WebhookKind.XML),
            "aleg_method": "POST",
        }
        try:
            response = await self._request("POST", f"Call/{call_uuid}/", json=body)
            if response.status_code == 404:
                raise CarrierRejected("Plivo says the call is no longer live")
            self._raise_unless_ok(response, "transfer the call to new XML")
        except VoiceCallError:
            # Nothing will fetch what we queued; drop it rather than say it much later.
            line.fetch_due_until = 0.0
            line.speech.clear()
            raise

    def _fetch_due(self, line: _Line) -> bool:
        return self._clock.now() < line.fetch_due_until

    # ------------------------------------------------------------------ lines

    def _line_for(self, call: Call) -> _Line:
        call_uuid = call.provider_call_id or f"pending:{call.call_id}"
        line = self._lines.get(call_uuid) or self._new_line(call_uuid, call.call_id)
        line.call_id = call.call_id
        line.touched_at = self._clock.now()
        return line

    def _new_line(self, call_uuid: str, call_id: str | None) -> _Line:
        if len(self._lines) >= _MAX_LINES:
            oldest = min(self._lines.values(), key=lambda item: item.touched_at)
            self._lines.pop(oldest.provider_call_id, None)
        line = _Line(provider_call_id=call_uuid, call_id=call_id, touched_at=self._clock.now())
        self._lines[call_uuid] = line
        return line

    def _callback_url(self, call_id: str, kind: str, **extra: str) -> str:
        return _with_query(self._public_url, {_CALL_ID_PARAM: call_id, _KIND_PARAM: kind} | extra)

    # ------------------------------------------------------------------ REST

    async def _hangup_by_id(self, call_uuid: str | None) -> None:
        if not call_uuid:
            return  # never reached Plivo: nothing to hang up
        response = await self._request("DELETE", f"Call/{call_uuid}/")
        if response.status_code == 404:
            # Not a live call: maybe a request still queued under its request_uuid, else the
            # call is already over, which is what we wanted.
            response = await self._request("DELETE", f"Request/{call_uuid}/")
            if response.status_code == 404:
                return
        self._raise_unless_ok(response, "hang up")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        if not self._auth_id:
            raise CarrierRejected("no Plivo auth id configured (plivo.authId)")
        started = time.monotonic()
        try:
            return await self._http.request(
                method,
                self._account_url + path,
                json=json,
                params=params,
                auth=self._auth,
                headers={"Accept": "application/json"},
            )
        except httpx.TimeoutException:
            waited = time.monotonic() - started
            raise TransientError(f"Plivo did not answer within {waited:.1f} s") from None
        except httpx.HTTPError as err:
            raise TransientError(f"could not reach Plivo: {type(err).__name__}") from None

    @staticmethod
    def _raise_unless_ok(response: httpx.Response, what: str) -> None:
        if response.is_success:
            return
        detail = f"Plivo refused to {what}: {_error_detail(response)} ({response.status_code})"
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(detail)
        raise CarrierRejected(detail)

    @staticmethod
    def _unknown(response: httpx.Response) -> CarrierStatus:
        return CarrierStatus(
            CarrierStatusKind.UNKNOWN,
            detail=f"Plivo answered {response.status_code}: {_error_detail(response)}",
        )

    @staticmethod
    def _live_status(response: httpx.Response) -> str:
        try:
            data = response.json()
        except ValueError:
            return "live"
        status = data.get("call_status") if isinstance(data, dict) else None
        return str(status) if status else "live"
