"""Twilio Programmable Voice behind the telephony port.

One file per concern: ``rest`` (the Call resource over httpx), ``documents`` (the TwiML we
serve), ``webhooks`` (Twilio's requests → normalised events), ``verify`` (the signature) and
``stream`` (the media stream's messages). This module composes them and keeps, per call, what
Twilio is running now.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import attrs
import httpx
from twilio.twiml.voice_response import VoiceResponse

from voicecall.adapters.telephony.delivery import EventDelivery
from voicecall.adapters.telephony.twilio import documents
from voicecall.adapters.telephony.twilio.documents import (
    EMPTY_TWIML,
    OPENAI_TO_TWILIO_VOICE,
    Hook,
    WebhookUrls,
    twilio_voice,
)
from voicecall.adapters.telephony.twilio.rest import AlreadyEnded, TwilioRest
from voicecall.adapters.telephony.twilio.stream import TwilioStreamDialect
from voicecall.adapters.telephony.twilio.verify import TwilioSignatureVerifier
from voicecall.adapters.telephony.twilio.webhooks import (
    END_STATES,
    LIVE_STATUSES,
    fetch_events,
    read_webhook,
    status_events,
)
from voicecall.config import AppConfig, url_trust_settings
from voicecall.domain.call import Call
from voicecall.domain.errors import CarrierRejected, TransientError, VoiceCallError
from voicecall.domain.events import CallEnded, CallEvent, SpeechStarted
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
from voicecall.domain.speech import AfterSpeech, Playback, SpokenLine
from voicecall.domain.webhook import WebhookRequest, WebhookResponse

__all__ = [
    "OPENAI_TO_TWILIO_VOICE",
    "TwilioSignatureVerifier",
    "TwilioStreamDialect",
    "TwilioTelephony",
    "twilio_voice",
]


@attrs.define
class _Program:
    """What Twilio runs for one call, and what waits for its next request.

    Attributes:
        pending: lines asked for and not yet handed to Twilio, in order.
        busy: Twilio will request TwiML from us before anything new could be heard without
            cutting what plays: the call was just dialled (the answer fetch is coming), a
            fetch is being answered, or the running document says a line and then comes
            back (Redirect or Gather action). When False the call is parked or listening in
            an empty Gather, and a live update interrupts nothing.
        after: what follows the last line asked for (the last playback's ``then``).
        last_line: the last line handed to Twilio: the one an empty Gather listens after.
        answering: the fetch being answered now (lines asked for go into its answer).
        ended_by_us: we asked for the end (REST ``Status=completed``, ``<Hangup>``,
            ``<Reject>``), so Twilio's ``completed`` is ours, not the caller's.
        stream: a media stream asked for and not yet handed to Twilio (the next document
            opens it). While Twilio runs the ``<Connect><Stream>`` the call is ``busy``: a
            live update would end the stream, and Twilio fetches from us when it ends.
        orphan: made by a mid-call fetch (gather, wait, stream) for a call sid we held no
            program for: not one we dialled, answered or restored, or one whose end Twilio
            already reported.
    """

    call_id: str | None
    pending: list[SpokenLine] = attrs.Factory(list)
    busy: bool = True
    after: AfterSpeech = AfterSpeech.WAIT
    hold_s: float = 0.0
    last_line: str | None = None
    answering: WebhookRequest | None = None
    reject: bool = False
    hang_up: bool = False
    ended_by_us: bool = False
    stream: StreamRequest | None = None
    orphan: bool = False


class TwilioTelephony:
    """Twilio Programmable Voice behind the ``TelephonyProvider`` port.

    Twilio drives a call by TwiML that it fetches from our webhook (the dial's ``Url``, a
    ``<Gather action>``, a ``<Redirect>``) or that we push by updating the live call over
    REST. Updating a live call replaces the TwiML it runs at once, cutting a ``<Say>``
    mid-word (https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource), so
    lines asked for while Twilio is saying something wait for its next fetch, and a live
    update is used only when nothing is playing (parked, or listening in an empty Gather),
    and for hang-up. Each document says at most one new line (see ``documents``), so each
    fetch reports exactly one line played and the document it is answered with names the one
    that starts.

    Our call id travels as the ``callId`` query parameter of every URL we give Twilio (signed
    with the rest of the URL). Inbound calls arrive on the number's voice URL without it and
    are resolved by ``CallSid``.

    Media streams (``MediaStreaming``): the call's audio moves to a bidirectional
    ``<Connect><Stream>`` whose token is a ``<Parameter>`` (Twilio drops query strings from
    the stream URL; see ``stream``), followed by a ``<Redirect>`` back to us that Twilio runs
    only when the stream has ended while the call goes on: that fetch is reported as
    ``stream.stopped``, and the service's reconnect (a new ``<Connect><Stream>`` with a fresh
    token) is its answer. Asked for while no fetch is being answered and nothing plays, the
    stream is opened by a live update of the call.

    Args:
        account_sid: the Twilio account (``AC…``); also the REST user name.
        auth_token: REST password and webhook signing key.
        api_base_url: ``twilio.apiBaseUrl`` (``https://api.twilio.com``).
        public_url: the exact webhook URL Twilio calls (``publicUrl``).
        verifier: checks ``X-Twilio-Signature``.
        clock: time source; playback news learnt outside a webhook is delivered on its timer.
        http: the REST client; one with sane timeouts is made when None.
        wait_pause_s: how long a parked call pauses between ``<Redirect>`` round trips. Long
            enough to ride out a gateway restart; updates interrupt it at once.
    """

    name = "twilio"
    signs_webhooks = True

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_base_url: str,
        public_url: str,
        verifier: TwilioSignatureVerifier,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
        wait_pause_s: int = 30,
        language: str = documents.DEFAULT_LANGUAGE,
    ) -> None:
        self.account_sid = account_sid
        self.language = language
        self.public_url = public_url
        self.verifier = verifier
        self.clock = clock
        self.wait_pause_s = wait_pause_s
        self.rest = TwilioRest(account_sid, auth_token, api_base_url, http)
        self.urls = WebhookUrls(public_url)
        self._events = EventDelivery(clock, "Twilio")
        self._programs: dict[str, _Program] = {}
        self._answering: dict[int, tuple[WebhookRequest, str]] = {}

    @classmethod
    def from_config(
        cls, config: AppConfig, clock: Clock, http: httpx.AsyncClient | None = None
    ) -> TwilioTelephony:
        """Build the adapter from validated settings (``twilio.*``, ``publicUrl``, security)."""
        voice = config.voice
        token = voice.twilio.auth_token or ""
        return cls(
            account_sid=voice.twilio.account_sid or "",
            auth_token=token,
            api_base_url=voice.twilio.api_base_url,
            public_url=voice.public_url or "",
            verifier=TwilioSignatureVerifier(token, url_trust_settings(voice)),
            clock=clock,
            http=http,
            language=voice.language,
        )

    def adopt_public_url(self, url: str) -> None:
        """The webhook URL arrived after start (a tunnel) or changed: use it from now on."""
        self.public_url = url
        self.urls = WebhookUrls(url)
        self.verifier.adopt_public_url(url)

    # ------------------------------------------------------------------ port: calls

    def bind(self, sink: EventSink) -> None:
        self._events.bind(sink)

    async def dial(self, request: DialRequest) -> DialResult:
        form: list[tuple[str, str]] = [
            ("To", request.to_number),
            ("From", request.from_number),
            ("Url", self.urls.url(Hook.ANSWER, request.call_id)),
            ("Method", "POST"),
            ("StatusCallback", self.urls.url(Hook.STATUS, request.call_id)),
            ("StatusCallbackMethod", "POST"),
            # Twilio takes the events as a repeated field, one value each.
            *(
                ("StatusCallbackEvent", event)
                for event in ("initiated", "ringing", "answered", "completed")
            ),
            ("Timeout", str(min(max(math.ceil(request.ring_timeout_s), 1), 600))),
        ]
        try:
            body = await self.rest.create_call(form)
        except AlreadyEnded:
            raise CarrierRejected("Twilio refused to place the call (not found)") from None
        sid = body.get("sid")
        if not isinstance(sid, str) or not sid:
            raise TransientError("Twilio accepted the call but returned no call sid")
        # On answer Twilio fetches the dial's Url: lines asked for before then wait for it.
        self._programs[sid] = _Program(call_id=request.call_id, busy=True)
        return DialResult(provider_call_id=sid)

    async def answer(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        # An inbound call is answered by the TwiML our webhook returns; nothing to send.
        if call.provider_call_id:
            self._program(call.provider_call_id, call.call_id)

    async def reject(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        program = self._answering_now(call, reply_to)
        if program is not None:
            program.reject = True
            program.ended_by_us = True
            program.pending.clear()
            return
        # Outside its first webhook an inbound call is already connected: hang it up.
        await self.hangup(call)

    async def play(
        self, call: Call, playback: Playback, *, reply_to: WebhookRequest | None = None
    ) -> None:
        sid = self._sid(call)
        program = self._program(sid, call.call_id)
        if program.ended_by_us:
            raise CarrierRejected("Twilio: the call is being hung up")
        program.pending.extend(playback.lines)
        program.after = playback.then
        program.hold_s = playback.hangup_after_s
        if program.busy:
            # Twilio is saying something, or about to ask us what to say (``reply_to`` is
            # that request when we are answering it): the lines join its next document.
            return
        # Parked or listening in silence: nothing plays, so a live update cuts nothing.
        document, started = self._next_document(program)
        try:
            await self.rest.update_call(sid, [("Twiml", str(document))], "update the call")
        except (AlreadyEnded, VoiceCallError) as err:
            program.busy = False
            program.pending = [line for line in program.pending if line not in playback.lines]
            if isinstance(err, AlreadyEnded):
                raise CarrierRejected("Twilio: the call is no longer in progress") from None
            raise
        self._announce(program, sid, started)

    async def transfer(
        self, call: Call, to: str, *, reply_to: WebhookRequest | None = None
    ) -> None:
        """A live update to a ``<Dial>``: Twilio bridges the caller to ``to``."""
        sid = self._sid(call)
        program = self._program(sid, call.call_id)
        program.ended_by_us = True
        program.pending.clear()
        document = documents.dial(to, call.to_number if call.direction.value == "inbound" else None)
        try:
            await self.rest.update_call(sid, [("Twiml", str(document))], "transfer the call")
        except AlreadyEnded:
            raise CarrierRejected("Twilio: the call is no longer in progress") from None

    async def send_digits(self, call: Call, digits: str) -> None:
        """A live update that plays the digits, then fetches our next document."""
        sid = self._sid(call)
        program = self._program(sid, call.call_id)
        program.busy = True
        document = documents.play_digits(self.urls, call.call_id, digits)
        try:
            await self.rest.update_call(sid, [("Twiml", str(document))], "send digits")
        except AlreadyEnded:
            raise CarrierRejected("Twilio: the call is no longer in progress") from None

    async def hangup(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        sid = call.provider_call_id
        if not sid:
            return  # never reached Twilio: nothing to hang up
        program = self._answering_now(call, reply_to)
        if program is not None:
            program.hang_up = True
            program.ended_by_us = True
            program.pending.clear()
            return
        program = self._program(sid, call.call_id)
        program.ended_by_us = True
        program.pending.clear()
        try:
            await self.rest.update_call(sid, [("Status", "completed")], "hang up")
        except AlreadyEnded:
            return

    async def status(self, call: Call) -> CarrierStatus:
        sid = call.provider_call_id
        if not sid:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="no Twilio call sid")
        try:
            body = await self.rest.fetch_call(sid)
        except (VoiceCallError, AlreadyEnded) as err:
            detail = err.detail if isinstance(err, VoiceCallError) else "Twilio has no such call"
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail=detail)
        raw = body.get("status")
        if raw in LIVE_STATUSES:
            return CarrierStatus(CarrierStatusKind.LIVE, detail=str(raw))
        if isinstance(raw, str) and raw in END_STATES:
            return CarrierStatus(CarrierStatusKind.ENDED, end_state=END_STATES[raw], detail=raw)
        return CarrierStatus(CarrierStatusKind.UNKNOWN, detail=f"unexpected status {raw!r}")

    # ------------------------------------------------------------------ port: media streams

    def stream_dialect(self) -> TwilioStreamDialect:
        return TwilioStreamDialect()

    async def connect_stream(
        self, call: Call, stream: StreamRequest, *, reply_to: WebhookRequest | None = None
    ) -> None:
        parts = urlsplit(stream.url)
        if parts.scheme not in ("wss", "ws") or parts.query or parts.fragment:
            # https://www.twilio.com/docs/voice/twiml/stream: a wss URL (ws only reaches a
            # simulator), and "the url does not support query string parameters".
            raise CarrierRejected(f"Twilio cannot open a media stream to {stream.url!r}")
        sid = self._sid(call)
        program = self._program(sid, call.call_id)
        if program.ended_by_us:
            raise CarrierRejected("Twilio: the call is being hung up")
        program.stream = stream
        if program.busy:
            # A fetch of this call is being answered (``reply_to``: the answer, the voice
            # request, or the fetch that said the last stream ended), or Twilio is about to
            # ask: the <Connect> goes into that answer rather than cutting what plays.
            return
        # Parked or listening: nothing plays, so a live update cuts nothing.
        document, started = self._next_document(program)
        try:
            await self.rest.update_call(sid, [("Twiml", str(document))], "open the media stream")
        except (AlreadyEnded, VoiceCallError) as err:
            program.busy = False
            program.stream = None
            if isinstance(err, AlreadyEnded):
                raise CarrierRejected("Twilio: the call is no longer in progress") from None
            raise
        self._announce(program, sid, started)

    # ------------------------------------------------------------------ port: webhooks

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        return self.verifier.has_signature_headers(header_names)

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return self.verifier.verify(request)

    async def parse_webhook(self, request: WebhookRequest) -> Sequence[CallEvent]:
        if not self.public_url:
            # No publicUrl and no tunnel (inbound behind a proxy): our documents send Twilio
            # back to the URL it signed this verified request for.
            self.urls = WebhookUrls(self.verifier.callback_base(request))
        hook = read_webhook(request)
        sid = hook.call_sid
        if hook.hook is Hook.STATUS:
            # Status callbacks are most of the traffic and always get the empty answer. They
            # travel apart from the fetches and may come after the next one.
            program = self._programs.get(sid)
            events = status_events(hook, ended_by_us=program is not None and program.ended_by_us)
            if any(isinstance(event, CallEnded) for event in events):
                self._programs.pop(sid, None)
            return events
        events = fetch_events(hook)
        # Every call we dial, answer or restore (restarts restore before the listener opens)
        # has a program; only its first fetch (voice, answer) may come without one.
        orphan = sid not in self._programs and hook.hook not in (Hook.VOICE, Hook.ANSWER)
        # Twilio is waiting for TwiML: until we answer, nothing new plays, and lines asked for
        # meanwhile go into this answer.
        program = self._program(sid, hook.call_id)
        program.orphan = orphan
        program.busy = True
        program.answering = request
        if hook.hook is Hook.GATHER and hook.has_speech and not program.pending:
            # The listen is answered; stay quiet until the bot has something to say.
            program.after = AfterSpeech.WAIT
        if len(self._answering) > 1024:
            self._answering.clear()
        self._answering[id(request)] = (request, sid)
        return events

    def webhook_response(self, request: WebhookRequest, calls: Sequence[Call]) -> WebhookResponse:
        entry = self._answering.pop(id(request), None)
        if entry is None or entry[0] is not request:
            return EMPTY_TWIML  # a status callback (or a request we did not parse)
        sid = entry[1]
        program = self._programs.get(sid)
        if program is None:
            return documents.twiml(documents.hang_up())
        if program.answering is request:
            program.answering = None
        call = next((c for c in calls if c.provider_call_id == sid), None)
        if call is None and program.orphan:
            # A mid-call fetch for a call the service does not hold live (unknown, or over).
            # Parked, it would loop <Pause><Redirect> at Twilio for as long as Twilio allows,
            # a silent line on the bill: end it, and keep nothing for the sid.
            self._programs.pop(sid, None)
            return documents.twiml(documents.hang_up())
        if call is not None and program.call_id is None:
            program.call_id = call.call_id
        if program.reject:
            self._programs.pop(sid, None)
            return documents.twiml(documents.reject())
        if program.hang_up or (call is not None and not call.is_live):
            program.ended_by_us = True
            program.pending.clear()
            program.busy = False
            return documents.twiml(documents.hang_up())
        document, started = self._next_document(program)
        self._announce(program, sid, started)
        return documents.twiml(document)

    def restore(self, call: Call, pending: Playback) -> None:
        """Rebuild the call's program from the lines still pending.

        A line already playing is in the document Twilio runs, which comes back to us when
        it is said; the lines behind it lived only in our memory and go into the next
        documents. With nothing pending the call is parked or listening, and a new line
        goes to Twilio at once by a live update.
        """
        sid = call.provider_call_id
        if not sid:
            return
        program = self._program(sid, call.call_id)
        playing, played = call.speech.playing, call.speech.last_played
        playing_id = playing.utterance_id if playing is not None else None
        program.pending = [line for line in pending.lines if line.utterance_id != playing_id]
        program.after, program.hold_s = pending.then, pending.hangup_after_s
        program.last_line = playing_id or (played.utterance_id if played is not None else None)
        program.busy = bool(pending.lines)

    async def aclose(self) -> None:
        self._events.cancel_all()
        self._programs.clear()
        self._answering.clear()
        await self.rest.aclose()

    # ------------------------------------------------------------------ documents

    def _next_document(self, program: _Program) -> tuple[VoiceResponse, str | None]:
        """The document Twilio runs next, and the line it starts (None when it says nothing).

        At most one new line per document, so the next fetch reports exactly that line.
        """
        call_id = program.call_id
        if program.pending:
            line = program.pending.pop(0)
            program.busy = True
            program.last_line = line.utterance_id
            if not program.pending and program.after is AfterSpeech.LISTEN:
                return documents.say_then_listen(
                    self.urls, call_id, line, self.language
                ), line.utterance_id
            return documents.say_then_return(
                self.urls, call_id, line, self.language
            ), line.utterance_id
        if program.stream is not None:
            # Lines asked for before the stream (natively) were said first; from here on the
            # call's speech goes over the stream until Twilio comes back after it.
            stream, program.stream = program.stream, None
            program.busy = True
            return documents.connect_stream(self.urls, call_id, stream.url, stream.token), None
        program.busy = False
        if program.after is AfterSpeech.LISTEN:
            return documents.listen(self.urls, call_id, program.last_line, self.language), None
        if program.after is AfterSpeech.HANGUP:
            program.ended_by_us = True
            return documents.hold_then_hang_up(program.hold_s), None
        return documents.park(self.urls, call_id, self.wait_pause_s), None

    def _announce(self, program: _Program, sid: str, utterance_id: str | None) -> None:
        """Report that Twilio has begun saying ``utterance_id`` (it has the document now).

        Delivered on the next tick: the service may be holding the call's lock right now.
        """
        if utterance_id is None:
            return
        event = SpeechStarted(
            call_id=program.call_id,
            provider_call_id=sid,
            utterance_id=utterance_id,
            dedupe_key=f"twilio:{sid}:started:{utterance_id}",
        )
        self._events.later(0.0, event)

    # ------------------------------------------------------------------ state

    def _program(self, sid: str, call_id: str | None) -> _Program:
        program = self._programs.get(sid)
        if program is None:
            program = self._programs[sid] = _Program(call_id=call_id)
        elif program.call_id is None and call_id:
            program.call_id = call_id
        return program

    def _answering_now(self, call: Call, reply_to: WebhookRequest | None) -> _Program | None:
        """The call's program when ``reply_to`` is the fetch of it we are answering now."""
        sid = call.provider_call_id
        if not sid or reply_to is None:
            return None
        program = self._program(sid, call.call_id)
        return program if program.answering is reply_to else None

    def _sid(self, call: Call) -> str:
        if not call.provider_call_id:
            raise CarrierRejected("Twilio: the call has no call sid yet")
        return call.provider_call_id
