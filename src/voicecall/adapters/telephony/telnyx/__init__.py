"""Telnyx Call Control v2 behind the telephony port.

The adapter composes four parts, each answering one question:

- ``rest``: how we talk to Telnyx's REST API (JSON, Bearer key, its error codes);
- ``documents``: what commands we send it (dial, answer, reject, speak, transcription);
- ``webhooks``: how we read its webhooks, and which of our utterances a speak webhook is about;
- ``verify``: how we check its Ed25519 webhook signature;
- ``stream``: how its media stream speaks (frames in and out, the token, marks and clear).

Speech: one ``speak`` command per utterance, sent as soon as it is queued. Telnyx keeps the
order itself: "If multiple speak text commands are issued consecutively, the audio files will
be placed in a queue awaiting playback"
(https://developers.telnyx.com/api-reference/call-commands/speak-text), so a later speak never
cuts an earlier one, and ``call.speak.started`` / ``call.speak.ended`` report each in turn.

Media streams (``streaming.enabled``): once the call is answered the service asks for a stream
and ``connect_stream`` sends ``actions/streaming_start``; Telnyx then opens the WebSocket to our
listener. From then on the call's speech goes over the stream and ``play`` is not used for it.
When Telnyx reports ``streaming.stopped`` while the call lives, the service asks again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import httpx

from voicecall.adapters.telephony.telnyx.documents import (
    DEFAULT_TELNYX_VOICE,
    OPENAI_TO_TELNYX_VOICE,
    answer_command,
    decode_client_state,
    dial_command,
    encode_client_state,
    reject_command,
    speak_command,
    streaming_start_command,
    telnyx_voice,
    transcription_start_command,
)
from voicecall.adapters.telephony.telnyx.rest import ALREADY_ENDED_CODE, TelnyxApiError, TelnyxRest
from voicecall.adapters.telephony.telnyx.stream import TelnyxStreamDialect
from voicecall.adapters.telephony.telnyx.verify import TelnyxSignatureVerifier
from voicecall.adapters.telephony.telnyx.webhooks import (
    HANGUP_CAUSE_STATES,
    SpeakLedger,
    read_webhook,
)
from voicecall.config import AppConfig
from voicecall.domain.call import Call, CallDirection
from voicecall.domain.errors import CarrierRejected, TransientError
from voicecall.domain.events import CallEvent
from voicecall.domain.ports import (
    CarrierStatus,
    CarrierStatusKind,
    Clock,
    DialRequest,
    DialResult,
    EventSink,
    StreamRequest,
)
from voicecall.domain.signed_url import Verification
from voicecall.domain.speech import AfterSpeech, Playback
from voicecall.domain.webhook import WebhookRequest, WebhookResponse

__all__ = [
    "ALREADY_ENDED_CODE",
    "DEFAULT_TELNYX_VOICE",
    "HANGUP_CAUSE_STATES",
    "OPENAI_TO_TELNYX_VOICE",
    "TelnyxApiError",
    "TelnyxSignatureVerifier",
    "TelnyxStreamDialect",
    "TelnyxTelephony",
    "decode_client_state",
    "encode_client_state",
    "telnyx_voice",
]

log = logging.getLogger(__name__)


class TelnyxTelephony:
    """Telnyx Call Control v2 behind the telephony port.

    Outbound calls carry ``webhook_url`` (our public URL) and ``client_state`` (our call id);
    inbound calls reach the connection's webhook URL and get our call id in ``client_state``
    when they are answered. Speech is the carrier's: ``speak`` for the bot's words and
    ``transcription_start`` to hear the caller. Commands are REST, so the webhook being
    answered (``reply_to``) plays no part: Telnyx only wants a quick 2xx.

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
        language: str = "en-US",
    ) -> None:
        self._connection_id = connection_id
        self._language = language
        self._public_url = public_url
        self._verifier = verifier
        self._rest = TelnyxRest(api_key, api_base_url, http)
        self._owns_http = owns_http
        self._sink: EventSink | None = None
        # Per call leg, in memory: the speaks Telnyx accepted (to tell its speak webhooks
        # apart), the call's direction, whether it is transcribing.
        self._ledger = SpeakLedger()

    def adopt_public_url(self, url: str) -> None:
        """The webhook URL arrived after start (a tunnel) or changed: dial with it from now on.
        (Telnyx signs timestamp and body, not the URL, so verification is unaffected.)"""
        self._public_url = url

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
            language=voice.language,
        )

    # ------------------------------------------------------------------ port: commands

    def bind(self, sink: EventSink) -> None:
        # Telnyx reports everything through webhooks; the sink is kept for symmetry.
        self._sink = sink

    async def dial(self, request: DialRequest) -> DialResult:
        data = await self._rest.dial(dial_command(request, self._connection_id, self._public_url))
        provider_call_id = data.get("call_control_id") if data is not None else None
        if not isinstance(provider_call_id, str) or not provider_call_id:
            # The call may exist; retrying could ring twice, so this is not transient.
            raise CarrierRejected("Telnyx dial: the answer carried no call_control_id")
        leg = self._ledger.leg(provider_call_id)
        leg.direction = CallDirection.OUTBOUND
        leg.transcribing = False
        return DialResult(provider_call_id=provider_call_id)

    async def answer(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        pid = _provider_id(call)
        await self._rest.action(pid, "answer", answer_command(call.call_id))
        leg = self._ledger.leg(pid)
        leg.direction = CallDirection.INBOUND
        leg.transcribing = False

    async def reject(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        try:
            await self._rest.action(_provider_id(call), "reject", reject_command(call.call_id))
        except TelnyxApiError as err:
            if not err.call_already_ended:
                raise
            # The caller gave up first: the call is refused either way.

    async def play(
        self, call: Call, playback: Playback, *, reply_to: WebhookRequest | None = None
    ) -> None:
        """One ``speak`` per line, at once: Telnyx queues them and plays them in order.

        ``then=LISTEN`` starts transcription if it is not running; it then runs for the rest
        of the call, and each final transcript names the line heard last before it
        (``heard_after``), so an answer to an earlier line never ends a later turn.
        ``then=HANGUP`` needs nothing here: the service hangs up ``hangup_after_s`` after
        ``call.speak.ended``. ``then=WAIT`` stops transcription.
        """
        pid = _provider_id(call)
        leg = self._ledger.leg(pid)
        for line in playback.lines:
            await self._rest.action(pid, "speak", speak_command(call.call_id, line, self._language))
            leg.sent.append(line.utterance_id)
        if playback.then is AfterSpeech.LISTEN and not leg.transcribing:
            known = leg.transcribing is not None
            try:
                await self._rest.action(
                    pid,
                    "transcription_start",
                    transcription_start_command(call.call_id, self._language),
                )
            except TelnyxApiError as err:
                if known:
                    raise
                # After a restart we cannot tell whether it was already running.
                log.info("Telnyx transcription_start refused: %s", err.detail)
            leg.transcribing = True
        elif playback.then is AfterSpeech.WAIT and leg.transcribing is not False:
            await self._stop_transcription(pid)

    async def transfer(
        self, call: Call, to: str, *, reply_to: WebhookRequest | None = None
    ) -> None:
        """Call Control ``transfer``: Telnyx dials ``to`` and bridges the caller to it
        (https://developers.telnyx.com/api/call-control/transfer-call)."""
        pid = self._pid(call)
        try:
            await self._rest.action(pid, "transfer", {"to": to})
        except TelnyxApiError as err:
            if err.call_already_ended:
                raise CarrierRejected("Telnyx: the call is no longer in progress") from None
            raise

    async def send_digits(self, call: Call, digits: str) -> None:
        """Call Control ``send_dtmf`` (https://developers.telnyx.com/api/call-control/send-dtmf)."""
        pid = self._pid(call)
        try:
            await self._rest.action(pid, "send_dtmf", {"digits": digits})
        except TelnyxApiError as err:
            if err.call_already_ended:
                raise CarrierRejected("Telnyx: the call is no longer in progress") from None
            raise

    def _pid(self, call: Call) -> str:
        if not call.provider_call_id:
            raise CarrierRejected("Telnyx: the call has no call control id yet")
        return call.provider_call_id

    async def hangup(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        pid = call.provider_call_id
        if not pid:
            return  # never reached the carrier: nothing to end
        try:
            await self._rest.action(pid, "hangup", {})
        except TelnyxApiError as err:
            if not err.call_already_ended:
                raise

    async def status(self, call: Call) -> CarrierStatus:
        pid = call.provider_call_id
        if not pid:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="no Telnyx call id yet")
        try:
            data = await self._rest.call_record(pid)
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
        alive = data.get("is_alive") if data is not None else None
        if not isinstance(alive, bool):
            return CarrierStatus(
                CarrierStatusKind.UNKNOWN, detail="Telnyx status answer had no is_alive"
            )
        if alive:
            return CarrierStatus(CarrierStatusKind.LIVE)
        # The status API does not say how it ended; the service closes it as completed.
        return CarrierStatus(CarrierStatusKind.ENDED, detail="Telnyx reports is_alive=false")

    # ------------------------------------------------------------------ port: media streams

    def stream_dialect(self) -> TelnyxStreamDialect:
        return TelnyxStreamDialect()

    async def connect_stream(
        self, call: Call, stream: StreamRequest, *, reply_to: WebhookRequest | None = None
    ) -> None:
        """``actions/streaming_start`` on the answered call; Telnyx opens the WebSocket.

        A REST command like every other: the webhook being answered plays no part.
        """
        await self._rest.action(
            _provider_id(call),
            "streaming_start",
            streaming_start_command(call.call_id, stream.url, stream.token),
        )

    # ------------------------------------------------------------------ port: webhooks

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        return self._verifier.has_signature_headers(header_names)

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return self._verifier.verify(request)

    async def parse_webhook(self, request: WebhookRequest) -> Sequence[CallEvent]:
        return read_webhook(request, self._ledger)

    def restore(self, call: Call, pending: Playback) -> None:
        """Rebuild the call's speak ledger from the lines still pending.

        Telnyx plays the speaks it accepted in order and keeps them across our restart. The
        webhooks about lines already played or cut were read before it; the pending lines
        are the speaks Telnyx has yet to end, in order, and one already playing had its
        ``call.speak.started`` read. Without this, the first ``call.speak.ended`` after a
        restart would be read as the end of the next line asked for, which has not played.
        """
        if not call.provider_call_id:
            return
        playing, played = call.speech.playing, call.speech.last_played
        leg = self._ledger.leg(call.provider_call_id)
        leg.direction = call.direction
        leg.sent = [line.utterance_id for line in pending.lines]
        leg.started = 1 if playing is not None else 0  # its speak.started was read
        leg.ended = 0
        leg.last_played = played.utterance_id if played is not None else None

    def webhook_response(self, request: WebhookRequest, calls: Sequence[Call]) -> WebhookResponse:
        # Call Control drives the call through REST; the webhook only needs a quick 2xx.
        return WebhookResponse(200, b"", "text/plain")

    async def aclose(self) -> None:
        self._ledger.clear()
        if self._owns_http:
            await self._rest.http.aclose()

    # ------------------------------------------------------------------ helpers

    async def _stop_transcription(self, pid: str) -> None:
        self._ledger.leg(pid).transcribing = False
        try:
            await self._rest.action(pid, "transcription_stop", {})
        except TelnyxApiError as err:
            # Already stopped, or the call is ending: nothing left to stop.
            log.debug("Telnyx transcription_stop refused: %s", err.detail)
        except TransientError as err:
            log.warning("Telnyx transcription_stop failed: %s", err.detail)


def _provider_id(call: Call) -> str:
    if not call.provider_call_id:
        raise CarrierRejected("Telnyx: the call has no call_control_id")
    return call.provider_call_id
