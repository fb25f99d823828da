"""Telnyx Call Control v2: the telephony adapter and its webhook signature verifier.

Wire facts this module relies on (Telnyx Call Control v2 API reference and the
``team-telnyx/telnyx-python`` SDK types):

- REST is JSON with ``Authorization: Bearer <apiKey>``. ``POST /calls`` dials; every other
  command is ``POST /calls/{call_control_id}/actions/<name>``; ``GET /calls/{call_control_id}``
  reports ``is_alive``.
- Errors come back as ``{"errors": [{"code": "90018", "title": ..., "detail": ...}]}``;
  ``90018`` means "call has already ended" (seen with 404 and 422).
- Webhooks are ``{"data": {"event_type", "id", "occurred_at", "payload": {...}}}``, signed with
  Ed25519 over ``"{telnyx-timestamp}|{raw body}"``. A retried delivery keeps the event ``id``
  (its ``meta.attempt`` changes, so its bytes and signature do not repeat).
- ``client_state`` is base64 and is echoed on every later webhook of the call: it carries our
  call id so webhooks resolve to the call without a lookup by the carrier's id.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import httpx
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from voicecall.config import AppConfig
from voicecall.domain.call import Call, CallDirection, CallState
from voicecall.domain.errors import CallerError, CarrierRejected, TransientError
from voicecall.domain.events import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallInitiated,
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
from voicecall.domain.signed_url import Verification, signature_headers_present
from voicecall.domain.webhook import WebhookRequest, WebhookResponse

__all__ = [
    "ALREADY_ENDED_CODE",
    "DEFAULT_TELNYX_VOICE",
    "HANGUP_CAUSE_STATES",
    "OPENAI_TO_TELNYX_VOICE",
    "TelnyxApiError",
    "TelnyxSignatureVerifier",
    "TelnyxTelephony",
    "decode_client_state",
    "encode_client_state",
    "telnyx_voice",
]

log = logging.getLogger(__name__)

_SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
_TIMESTAMP_HEADER: Final = "telnyx-timestamp"
_KEY_BYTES: Final = 32
_SIGNATURE_BYTES: Final = 64
_MAX_TIMESTAMP_DIGITS: Final = 12


def _strict_b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _load_key(public_key_b64: str) -> VerifyKey | None:
    raw = _strict_b64decode(public_key_b64) if public_key_b64 else None
    if raw is None or len(raw) != _KEY_BYTES:
        return None
    try:
        return VerifyKey(raw)
    except (CryptoError, ValueError, TypeError):
        return None


class TelnyxSignatureVerifier:
    """Checks Telnyx's Ed25519 signature over ``"{telnyx-timestamp}|{raw body}"``.

    The public key is the base64 key from the Telnyx portal (``telnyx.publicKey``). A
    timestamp more than ``tolerance_s`` seconds away from ``clock_now()`` in either direction
    is refused, which bounds how long a captured request stays replayable. A malformed key,
    header or signature gives ``ok=False``; nothing here raises.
    """

    required_headers: tuple[str, ...] = (_SIGNATURE_HEADER, _TIMESTAMP_HEADER)
    header_sets: tuple[tuple[str, ...], ...] = (required_headers,)
    """Header groups of which one must be complete for the request to be verifiable."""

    def __init__(
        self,
        public_key_b64: str,
        clock_now: Callable[[], float],
        tolerance_s: float = 300,
    ) -> None:
        self._key = _load_key(public_key_b64)
        self._now = clock_now
        self._tolerance = tolerance_s

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        """Whether the headers needed to verify at all are present (checked before the body)."""
        return signature_headers_present(self.header_sets, header_names)

    def verify(self, request: WebhookRequest) -> Verification:
        """Verify one request; never raises."""
        signature_b64 = request.header(_SIGNATURE_HEADER)
        timestamp = request.header(_TIMESTAMP_HEADER)
        if not signature_b64 or not timestamp:
            return Verification(ok=False, reason="missing Telnyx signature headers")
        if self._key is None:
            return Verification(ok=False, reason="Telnyx public key is missing or malformed")
        # ASCII digits only: str.isdigit alone would admit other scripts' digits.
        if not (
            timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS
        ):
            return Verification(ok=False, reason="malformed telnyx-timestamp")
        if abs(self._now() - int(timestamp)) > self._tolerance:
            return Verification(ok=False, reason="telnyx-timestamp outside tolerance")
        signature = _strict_b64decode(signature_b64)
        if signature is None or len(signature) != _SIGNATURE_BYTES:
            return Verification(ok=False, reason="malformed Telnyx signature")
        # The raw bytes as received: decoding and re-encoding the body could change it.
        message = timestamp.encode("ascii") + b"|" + request.body
        try:
            self._key.verify(message, signature)
        except (CryptoError, ValueError, TypeError):
            return Verification(ok=False, reason="bad Telnyx signature")
        canonical = base64.b64encode(signature).decode("ascii")
        return Verification(
            ok=True,
            reason="valid Telnyx signature",
            replay_key=f"telnyx:{timestamp}:{canonical}",
        )


# --------------------------------------------------------------------------------------------
# The telephony adapter
# --------------------------------------------------------------------------------------------

ALREADY_ENDED_CODE: Final = "90018"
"""Telnyx's error code for a command sent to a call that is no longer active."""

HANGUP_CAUSE_STATES: Final[Mapping[str, CallState]] = {
    "normal_clearing": CallState.COMPLETED,
    # The originator (us) gave up before the callee answered.
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

DEFAULT_TELNYX_VOICE: Final = "AWS.Polly.Joanna-Neural"

OPENAI_TO_TELNYX_VOICE: Final[Mapping[str, str]] = {
    # Amazon Polly neural voices through Telnyx, picked for a comparable register and gender.
    "alloy": "AWS.Polly.Joanna-Neural",
    "ash": "AWS.Polly.Matthew-Neural",
    "ballad": "AWS.Polly.Brian-Neural",
    "coral": "AWS.Polly.Kimberly-Neural",
    "echo": "AWS.Polly.Joey-Neural",
    "fable": "AWS.Polly.Amy-Neural",
    "nova": "AWS.Polly.Salli-Neural",
    "onyx": "AWS.Polly.Stephen-Neural",
    "sage": "AWS.Polly.Ruth-Neural",
    "shimmer": "AWS.Polly.Kendra-Neural",
    "verse": "AWS.Polly.Gregory-Neural",
}
"""OpenAI TTS voice name -> Telnyx ``speak`` voice."""

_SPEAK_LANGUAGE: Final = "en-US"
_TRANSCRIPTION_LANGUAGE: Final = "en"
_MIN_RING_S: Final = 5
_MAX_RING_S: Final = 600
_MAX_CLIENT_STATE_CHARS: Final = 256


def telnyx_voice(voice: str | None) -> str:
    """The Telnyx voice for an OpenAI voice name; a Telnyx-native name passes through."""
    if not voice:
        return DEFAULT_TELNYX_VOICE
    mapped = OPENAI_TO_TELNYX_VOICE.get(voice.strip().lower())
    if mapped is not None:
        return mapped
    # "Provider.Model.Voice" names (AWS.Polly.Joanna, Azure.en-US-AvaNeural, Telnyx.KokoroTTS.af)
    # and the legacy "male"/"female" are already Telnyx voices.
    if "." in voice or voice.lower() in ("male", "female"):
        return voice
    return DEFAULT_TELNYX_VOICE


def encode_client_state(call_id: str) -> str:
    """Our call id as Telnyx ``client_state`` (which must be base64)."""
    return base64.b64encode(call_id.encode("utf-8")).decode("ascii")


def decode_client_state(value: object) -> str | None:
    """Our call id back from ``client_state``; None when it is absent or not ours."""
    if not isinstance(value, str) or not value or len(value) > _MAX_CLIENT_STATE_CHARS:
        return None
    raw = _strict_b64decode(value)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text and text.isprintable() else None


class TelnyxApiError(CarrierRejected):
    """Telnyx answered a command with a 4xx.

    Attributes:
        status: the HTTP status.
        codes: the ``errors[].code`` values Telnyx gave, as strings.
    """

    def __init__(self, detail: str, status: int, codes: tuple[str, ...]) -> None:
        super().__init__(detail)
        self.status = status
        self.codes = codes

    @property
    def call_already_ended(self) -> bool:
        return self.status in (404, 410, 422) and ALREADY_ENDED_CODE in self.codes


class TelnyxTelephony:
    """Telnyx Call Control v2 behind the telephony port.

    Outbound calls carry ``webhook_url`` (our public URL) and ``client_state`` (our call id);
    inbound calls reach the connection's webhook URL and get our call id in ``client_state``
    when they are answered. Speech is the carrier's: ``speak`` for the bot's words and
    ``transcription_start``/``transcription_stop`` to hear the caller.

    Args:
        api_key: the Telnyx API v2 key (Bearer token).
        connection_id: the Call Control application (connection) that places calls.
        api_base_url: REST base, ``https://api.telnyx.com/v2`` in production.
        public_url: the webhook URL Telnyx is told to call; None leaves the connection's.
        verifier: checks webhook signatures.
        http: the async HTTP client for REST.
        owns_http: close ``http`` in :meth:`aclose`.
    """

    name = "telnyx"
    signs_webhooks = True

    def __init__(
        self,
        *,
        api_key: str,
        connection_id: str,
        api_base_url: str,
        public_url: str | None,
        verifier: TelnyxSignatureVerifier,
        http: httpx.AsyncClient,
        owns_http: bool = False,
    ) -> None:
        self._api_key = api_key
        self._connection_id = connection_id
        self._base = api_base_url.rstrip("/")
        self._public_url = public_url
        self._verifier = verifier
        self._http = http
        self._owns_http = owns_http
        self._sink: EventSink | None = None
        # Whether Telnyx is transcribing each call we placed or answered. In memory only: a
        # call missing here (we restarted) may still be transcribing, so the next prompt
        # stops it to be sure before the next turn starts it again.
        self._transcribing: dict[str, bool] = {}

    @classmethod
    def from_config(
        cls, config: AppConfig, clock: Clock, http: httpx.AsyncClient | None = None
    ) -> TelnyxTelephony:
        """Build the adapter from validated settings.

        Telnyx signs ``timestamp|body`` and not the URL, so the URL-trust settings
        (publicUrl, webhookSecurity, tunnel) play no part in verification here.
        """
        voice = config.voice
        settings = voice.telnyx
        verifier = TelnyxSignatureVerifier(settings.public_key or "", clock.now)
        owns_http = http is None
        if http is None:
            http = httpx.AsyncClient(
                timeout=httpx.Timeout(10.0, connect=5.0),
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            )
        return cls(
            api_key=settings.api_key or "",
            connection_id=settings.connection_id or "",
            api_base_url=settings.api_base_url,
            public_url=voice.public_url,
            verifier=verifier,
            http=http,
            owns_http=owns_http,
        )

    # ------------------------------------------------------------------ port: commands

    def bind(self, sink: EventSink) -> None:
        # Telnyx reports everything through webhooks; the sink is kept for symmetry.
        self._sink = sink

    async def dial(self, request: DialRequest) -> DialResult:
        body: dict[str, Any] = {
            "connection_id": self._connection_id,
            "to": request.to_number,
            "from": request.from_number,
            "client_state": encode_client_state(request.call_id),
            "timeout_secs": _ring_timeout_secs(request.ring_timeout_s),
            # Telnyx ignores a second dial with the same command_id, so a retried request
            # cannot ring the callee twice.
            "command_id": request.call_id,
        }
        if self._public_url:
            body["webhook_url"] = self._public_url
            body["webhook_url_method"] = "POST"
        response = await self._request("POST", "/calls", "dial", body)
        data = _json_data(response)
        provider_call_id = data.get("call_control_id") if data is not None else None
        if not isinstance(provider_call_id, str) or not provider_call_id:
            # The call may exist; retrying could ring twice, so this is not transient.
            raise CarrierRejected("Telnyx dial: the answer carried no call_control_id")
        self._transcribing[provider_call_id] = False
        return DialResult(provider_call_id=provider_call_id)

    async def answer(self, call: Call) -> None:
        # Telnyx parks an inbound call until told to answer it; nothing else picks it up.
        await self._action(call, "answer", {"client_state": encode_client_state(call.call_id)})
        self._transcribing[self._provider_id(call)] = False

    async def reject(self, call: Call) -> None:
        self._transcribing.pop(call.provider_call_id or "", None)
        try:
            await self._action(
                call,
                "reject",
                {"cause": "CALL_REJECTED", "client_state": encode_client_state(call.call_id)},
            )
        except TelnyxApiError as err:
            if not err.call_already_ended:
                raise
            # The caller gave up first: the call is refused either way.

    async def speak(self, call: Call, text: str, voice: str | None) -> None:
        pid = self._provider_id(call)
        if self._transcribing.get(pid, True):
            # Turn-based: what the caller says over our prompt is not the answer to it.
            await self._stop_transcription(call, pid)
        await self._action(
            call,
            "speak",
            {
                "payload": text,
                "payload_type": "text",
                "voice": telnyx_voice(voice),
                "language": _SPEAK_LANGUAGE,
                "client_state": encode_client_state(call.call_id),
            },
        )

    async def listen(self, call: Call) -> None:
        pid = self._provider_id(call)
        if self._transcribing.get(pid, False):
            return
        await self._action(
            call,
            "transcription_start",
            {
                "transcription_engine": "Google",
                "transcription_engine_config": {
                    "transcription_engine": "Google",
                    "language": _TRANSCRIPTION_LANGUAGE,
                    # Finals only: a partial result must never end a turn.
                    "interim_results": False,
                },
                # The caller's audio only, not our own speech played to them.
                "transcription_tracks": "inbound",
                "client_state": encode_client_state(call.call_id),
            },
        )
        self._transcribing[pid] = True

    async def hangup(self, call: Call) -> None:
        pid = call.provider_call_id
        if not pid:
            return  # never reached the carrier: nothing to end
        self._transcribing.pop(pid, None)
        try:
            await self._action(call, "hangup", {})
        except TelnyxApiError as err:
            if not err.call_already_ended:
                raise

    async def status(self, call: Call) -> CarrierStatus:
        pid = call.provider_call_id
        if not pid:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="no Telnyx call id yet")
        try:
            response = await self._request("GET", f"/calls/{_path_id(pid)}", "status", None)
        except TransientError as err:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail=err.detail)
        except TelnyxApiError as err:
            if err.call_already_ended or err.status == 404:
                # Telnyx forgets a call some time after it ends; an id it issued and no
                # longer knows is a call that is over.
                return CarrierStatus(CarrierStatusKind.ENDED, detail=err.detail)
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail=err.detail)
        except CarrierRejected as err:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail=err.detail)
        data = _json_data(response)
        alive = data.get("is_alive") if data is not None else None
        if not isinstance(alive, bool):
            return CarrierStatus(
                CarrierStatusKind.UNKNOWN, detail="Telnyx status answer had no is_alive"
            )
        if alive:
            return CarrierStatus(CarrierStatusKind.LIVE)
        # The status API does not say how it ended; the service closes it as completed.
        return CarrierStatus(CarrierStatusKind.ENDED, detail="Telnyx reports is_alive=false")

    # ------------------------------------------------------------------ port: webhooks

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        return self._verifier.has_signature_headers(header_names)

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return self._verifier.verify(request)

    async def parse_webhook(self, request: WebhookRequest) -> Sequence[CallEvent]:
        try:
            document = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
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
            call_id=decode_client_state(payload.get("client_state")),
            provider_call_id=pid,
            dedupe_key=f"telnyx:{event_id}",
        )
        events = builder(common, payload)
        if any(isinstance(event, CallEnded) for event in events):
            self._transcribing.pop(pid, None)
        return events

    def webhook_response(self, request: WebhookRequest, calls: Sequence[Call]) -> WebhookResponse:
        # Call Control drives the call through REST; the webhook only needs a quick 2xx.
        return WebhookResponse(200, b"", "text/plain")

    async def aclose(self) -> None:
        self._transcribing.clear()
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ REST

    def _provider_id(self, call: Call) -> str:
        if not call.provider_call_id:
            raise CarrierRejected("Telnyx: the call has no call_control_id")
        return call.provider_call_id

    async def _action(self, call: Call, action: str, body: dict[str, Any]) -> None:
        pid = self._provider_id(call)
        # A fresh command_id per command: Telnyx drops a repeated id as a duplicate.
        command = {**body, "command_id": str(uuid.uuid4())}
        await self._request("POST", f"/calls/{_path_id(pid)}/actions/{action}", action, command)

    async def _stop_transcription(self, call: Call, pid: str) -> None:
        self._transcribing[pid] = False
        try:
            await self._action(call, "transcription_stop", {})
        except TelnyxApiError as err:
            # Already stopped, or the call is ending: nothing left to stop.
            log.debug("Telnyx transcription_stop refused: %s", err.detail)
        except TransientError as err:
            log.warning("Telnyx transcription_stop failed: %s", err.detail)

    async def _request(
        self, method: str, path: str, what: str, body: dict[str, Any] | None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        try:
            response = await self._http.request(
                method, f"{self._base}{path}", json=body, headers=headers
            )
        except httpx.TimeoutException:
            raise TransientError(f"Telnyx {what}: timed out") from None
        except httpx.HTTPError as err:
            raise TransientError(f"Telnyx {what}: {type(err).__name__}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientError(f"Telnyx {what}: HTTP {status}")
        if status >= 400:
            codes, summary = _errors_of(response)
            detail = f"Telnyx {what}: HTTP {status}" + (f" ({summary})" if summary else "")
            raise TelnyxApiError(detail, status, codes)
        return response


def _path_id(pid: str) -> str:
    # Call control ids look like "v3:AbC-_..."; the colon is legal in a path segment.
    return quote(pid, safe=":")


def _ring_timeout_secs(ring_timeout_s: float) -> int:
    # Telnyx accepts 5..600 seconds.
    return max(_MIN_RING_S, min(_MAX_RING_S, round(ring_timeout_s)))


def _json_data(response: httpx.Response) -> dict[str, Any] | None:
    try:
        document = response.json()
    except ValueError:
        return None
    data = document.get("data") if isinstance(document, dict) else None
    return data if isinstance(data, dict) else None


def _errors_of(response: httpx.Response) -> tuple[tuple[str, ...], str]:
    """The error codes and a short safe summary from a Telnyx error body."""
    try:
        document = response.json()
    except ValueError:
        return (), ""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return (), ""
    codes: list[str] = []
    parts: list[str] = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        code = error.get("code")
        if isinstance(code, str | int) and not isinstance(code, bool):
            codes.append(str(code))
        title = error.get("title") or error.get("detail")
        if isinstance(title, str) and title:
            parts.append(f"{code}: {title}" if code is not None else title)
    return tuple(codes), "; ".join(parts)[:300]


# --------------------------------------------------------------------------------------------
# Webhook payload -> normalised events
# --------------------------------------------------------------------------------------------


class _Common:
    """The fields every event of one webhook shares."""

    __slots__ = ("call_id", "dedupe_key", "provider_call_id")

    def __init__(self, call_id: str | None, provider_call_id: str, dedupe_key: str) -> None:
        self.call_id = call_id
        self.provider_call_id = provider_call_id
        self.dedupe_key = dedupe_key

    def fields(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "provider_call_id": self.provider_call_id,
            "dedupe_key": self.dedupe_key,
        }


def _optional_str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CallerError(f"Telnyx webhook: data.payload.{key} must be a string")
    return value or None


def _initiated(common: _Common, payload: Mapping[str, Any]) -> list[CallEvent]:
    direction = payload.get("direction")
    if direction not in ("incoming", "outgoing"):
        raise CallerError('Telnyx webhook: data.payload.direction must be "incoming" or "outgoing"')
    return [
        CallInitiated(
            **common.fields(),
            direction=CallDirection.INBOUND if direction == "incoming" else CallDirection.OUTBOUND,
            from_number=_optional_str(payload, "from"),
            to_number=_optional_str(payload, "to"),
        )
    ]


def _answered(common: _Common, payload: Mapping[str, Any]) -> list[CallEvent]:
    return [CallAnswered(**common.fields())]


def _hangup(common: _Common, payload: Mapping[str, Any]) -> list[CallEvent]:
    cause = _optional_str(payload, "hangup_cause")
    reason = HANGUP_CAUSE_STATES.get(cause or "", CallState.COMPLETED)
    detail = f"hangup_cause={cause or 'none'}"
    sip_cause = payload.get("sip_hangup_cause")
    if isinstance(sip_cause, str | int) and not isinstance(sip_cause, bool):
        detail += f", sip_hangup_cause={sip_cause}"
    source = payload.get("hangup_source")
    if isinstance(source, str) and source:
        detail += f", hangup_source={source}"
    return [CallEnded(**common.fields(), reason=reason, detail=detail)]


def _acknowledged(common: _Common, payload: Mapping[str, Any]) -> list[CallEvent]:
    # call.speak.started/ended: the service marks the call speaking when it asks to speak
    # and listening right after, without waiting for playback. A speak webhook arriving
    # later would drag the state back to speaking, so these are acknowledged, not applied.
    return []


def _transcription(common: _Common, payload: Mapping[str, Any]) -> list[CallEvent]:
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
    return [
        CallSpeech(
            **common.fields(),
            transcript=transcript,
            # We ask for finals only (interim_results false); engines that omit the flag
            # then send nothing but finals.
            is_final=is_final,
            confidence=float(confidence) if confidence is not None else None,
        )
    ]


_EVENT_BUILDERS: Final[Mapping[str, Callable[[_Common, Mapping[str, Any]], list[CallEvent]]]] = {
    "call.initiated": _initiated,
    "call.answered": _answered,
    "call.hangup": _hangup,
    "call.speak.started": _acknowledged,
    "call.speak.ended": _acknowledged,
    "call.transcription": _transcription,
}
