"""Plivo Voice API: calls placed over REST, driven with Plivo XML, verified by V3 signatures.

The package has one file per concern: ``rest`` (the Voice API over httpx), ``documents`` (the
XML we serve), ``webhooks`` (reading Plivo's requests into normalised events) and ``verify``
(signatures). The adapter here keeps, per live call, what is still to be said and which
document Plivo is running, and decides when Plivo must be made to fetch.

How a Plivo call is driven:

* ``POST Call/`` places a call. Plivo answers with a ``request_uuid``; the call's own
  ``CallUUID`` arrives with the first webhook, and the service adopts it then.
* Plivo runs one XML document per call at a time and asks us for the next one when the call is
  answered (``answer_url``), when ``<GetInput>`` hears the caller (its ``action``), at a
  ``<Redirect>``, and when we transfer the live call (``POST Call/{uuid}/``, ``aleg_url``).
* **Speech is heard whole, in order.** Each document carries at most one line not yet played
  (see ``documents``), and the URL that follows it names that line, so the next fetch tells us
  it was played (``speech.played``); ``speech.started`` is reported when the document holding
  the line is handed to Plivo. A line asked for while another plays waits for the next fetch.
* **A transfer abandons the document that is running** (Plivo: "fetch and execute XML from a
  different URL"), so it is used only when nothing is playing: the call is parked in a
  ``<Wait>`` or in a ``<GetInput>`` with no prompt. When the service acts while answering one of
  Plivo's fetches for the call (``reply_to``), the lines go into that answer, no transfer.
* **No speech lost to a crossing transfer.** Every URL in a document carries that document's
  token, and a transfer's ``aleg_url`` a token of its own that becomes the current one at once.
  A fetch from an abandoned document (a ``<GetInput>`` action that crossed our transfer) still
  delivers the caller's words, but is answered with a silent park and takes no queued line:
  the lines go out with the transfer's fetch, the document Plivo really runs.
* An inbound call is rejected with ``<Hangup reason="rejected"/>`` in the answer; a call is hung
  up with ``DELETE Call/{uuid}/``.
* **Media streams** (``stream``): with streaming on, the answer to the call's fetch is a
  ``<Stream bidirectional keepCallAlive>`` (the stream token in ``extraHeaders``) followed by a
  ``<Redirect>`` back to us. Plivo runs that ``<Redirect>`` only once the stream has
  disconnected while the call lives on; its fetch reports ``stream.stopped`` and the service's
  fresh ``connect_stream`` goes into its answer, a new ``<Stream>``. When no fetch is being
  answered, a transfer makes Plivo fetch the ``<Stream>`` document (only while nothing plays).
  While a call is streamed its speech goes over the stream, never through ``play``.

Operators point the Plivo application's Answer URL and Hangup URL (method POST) at
``publicUrl`` itself; webhooks that arrive without our query are told apart by their fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs
import httpx

from voicecall.adapters.telephony.delivery import EventDelivery
from voicecall.config import AppConfig, url_trust_settings
from voicecall.domain.call import Call
from voicecall.domain.errors import CallerError, CarrierRejected, VoiceCallError
from voicecall.domain.events import CallEvent
from voicecall.domain.ports import (
    CarrierStatus,
    Clock,
    DialRequest,
    DialResult,
    EventSink,
    StreamRequest,
)
from voicecall.domain.signed_url import Verification
from voicecall.domain.speech import AfterSpeech, Playback
from voicecall.domain.webhook import WebhookRequest, WebhookResponse

from . import documents
from .documents import PLIVO_VOICES, native_voice, with_query
from .rest import PlivoRest
from .stream import PlivoStreamDialect, fits_extra_headers, stream_document
from .verify import PlivoSignatureVerifier
from .webhooks import (
    AFTER_PARAM,
    CALL_ID_PARAM,
    DOC_PARAM,
    KIND_PARAM,
    PLAYED_PARAM,
    SILENCE_PARAM,
    STREAM_PARAM,
    Webhook,
    WebhookKind,
    active_event,
    answer_events,
    ended_events,
    input_events,
    partial_events,
    played_event,
    read_webhook,
    ring_events,
    silence_event,
    started_event,
    stream_stopped_event,
)

__all__ = [
    "PLIVO_VOICES",
    "PlivoSignatureVerifier",
    "PlivoStreamDialect",
    "PlivoTelephony",
    "WebhookKind",
    "native_voice",
]


_MAX_LINES: Final = 2000
_REPLAYS_KEPT: Final = 4
# A stream that keeps dropping at once (our listener refuses it, the network is gone) would
# have Plivo and us reconnect in a tight loop: after this many stops in a minute, give up and
# let the call speak natively.
_STREAM_STOPS_PER_MINUTE: Final = 5


@attrs.define
class _Queued:
    """A line handed to us and not yet put in a document."""

    utterance_id: str
    text: str
    voice: str | None
    then: AfterSpeech | None  # set on a playback's last line only
    hold_s: float = 0.0


@attrs.define
class _Line:
    """What we keep per live Plivo call to serve it the right XML."""

    call_id: str
    queue: list[_Queued] = attrs.Factory(list)
    after: AfterSpeech = AfterSpeech.WAIT
    """What follows once everything queued has been played."""
    hold_s: float = 0.0
    last_line: str | None = None
    """The last utterance put in a document: an idle listen follows it (``heard_after``)."""
    current_doc: str | None = None
    """The token of the document Plivo runs, or of the transfer it is about to fetch."""
    unconfirmed: str | None = None
    """A line in the running document that no fetch has yet shown to be played."""
    fetching: bool = False
    """A fetch for the current document is being handled: its answer takes what is queued."""
    transfer_pending: bool = False
    listen_open: bool = False
    """We asked for a reply and none came yet: after silence, listen again."""
    rejected: bool = False
    stream: StreamRequest | None = None
    """A media stream the next document must open (``connect_stream``)."""
    dial_to: str | None = None
    """A transfer the agent asked for: the next document is a ``<Dial>`` to this number."""
    stream_stops: list[float] = attrs.Factory(list)
    """When Plivo reported the call's stream gone (clock time), the last minute's worth."""
    replays: dict[str, bytes] = attrs.Factory(dict)
    """What we answered to the last few fetches, for Plivo's retries of them."""
    seq: int = 0
    touched_at: float = 0.0

    def new_token(self) -> str:
        self.seq += 1
        return str(self.seq)


class PlivoTelephony:
    """The Plivo carrier: Voice API over REST (httpx), calls driven by Plivo XML.

    Args:
        rest: the account's Voice API.
        public_url: ``publicUrl``, the exact webhook URL Plivo calls.
        verifier: checks webhook signatures.
        clock: time for bookkeeping.
        keepalive_s: how long a parking ``<Wait>`` lasts before Plivo asks us again.
        listen_timeout_s: ``<GetInput executionTimeout>``: how long Plivo listens per attempt.
    """

    name = "plivo"
    signs_webhooks = True

    def __init__(
        self,
        *,
        rest: PlivoRest,
        public_url: str,
        verifier: PlivoSignatureVerifier,
        clock: Clock,
        keepalive_s: int = 60,
        listen_timeout_s: int = 15,
        language: str = documents.DEFAULT_LANGUAGE,
    ) -> None:
        self._language = language
        self._rest = rest
        self._public_url = public_url
        self._learned_url = ""
        self._verifier = verifier
        self._clock = clock
        self._keepalive_s = max(int(keepalive_s), 1)
        # Plivo accepts 5-60 s for executionTimeout (GetInput page); 15 is its default.
        self._listen_timeout_s = min(max(int(listen_timeout_s), 5), 60)
        self._lines: dict[str, _Line] = {}
        self._by_uuid: dict[str, str] = {}
        self._events = EventDelivery(clock, "plivo")
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_config(
        cls, config: AppConfig, clock: Clock, http: httpx.AsyncClient | None = None
    ) -> PlivoTelephony:
        """Build from ``plugins.entries.voice-call.config`` (credentials, publicUrl, security)."""
        voice = config.voice
        auth_token = voice.plivo.auth_token or ""
        client = http or httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )
        rest = PlivoRest(
            voice.plivo.auth_id or "",
            auth_token,
            client,
            voice.plivo.api_base_url,
            owns_http=http is None,
        )
        return cls(
            rest=rest,
            public_url=voice.public_url or "",
            verifier=PlivoSignatureVerifier(auth_token, url_trust_settings(voice)),
            clock=clock,
            language=voice.language,
        )

    def adopt_public_url(self, url: str) -> None:
        """The webhook URL arrived after start (a tunnel) or changed: use it from now on."""
        self._public_url = url
        self._verifier.adopt_public_url(url)

    # ------------------------------------------------------------------ port: calls

    def bind(self, sink: EventSink) -> None:
        # speech.started is learned when we hand Plivo a document, outside its webhook's events.
        self._events.bind(sink)

    async def dial(self, request: DialRequest) -> DialResult:
        body = {
            "from": _plivo_number(request.from_number),
            "to": _plivo_number(request.to_number),
            "answer_url": self._url(request.call_id, WebhookKind.ANSWER),
            "answer_method": "POST",
            # Not strictly needed, but it hands us the CallUUID while the phone rings, so a
            # ringing call can be hung up by its own id.
            "ring_url": self._url(request.call_id, WebhookKind.RING),
            "ring_method": "POST",
            "hangup_url": self._url(request.call_id, WebhookKind.HANGUP),
            "hangup_method": "POST",
            "ring_timeout": max(round(request.ring_timeout_s), 1),
        }
        request_uuid = await self._rest.make_call(body)
        self._new_line(request.call_id)
        return DialResult(provider_call_id=request_uuid)

    async def answer(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        line = self._line_for(call)
        if self._answering(call, reply_to):
            line.fetching = True  # the XML we return to this fetch picks the call up
            return
        await self._transfer(call, line, [])

    async def reject(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        line = self._line_for(call)
        line.rejected = True
        if self._answering(call, reply_to):
            return  # answered in this webhook's XML with <Hangup reason="rejected"/>
        await self._rest.hangup(call.provider_call_id)

    async def play(
        self, call: Call, playback: Playback, *, reply_to: WebhookRequest | None = None
    ) -> None:
        line = self._line_for(call)
        added: list[_Queued] = []
        for position, spoken in enumerate(playback.lines):
            last = position == len(playback.lines) - 1
            added.append(
                _Queued(
                    spoken.utterance_id,
                    spoken.text,
                    spoken.voice,
                    playback.then if last else None,
                    playback.hangup_after_s,
                )
            )
        line.queue.extend(added)
        if self._answering(call, reply_to):
            line.fetching = True
            return  # this webhook's answer is the next document
        if line.fetching or line.transfer_pending or line.unconfirmed is not None:
            return  # a fetch is coming (or under way): the lines join its document
        if line.current_doc is None and not call.state.is_connected:
            return  # not picked up yet: the answer fetch takes them
        # Nothing is playing: the call is parked (or we lost track in a restart). Make Plivo
        # fetch now.
        await self._transfer(call, line, added)

    async def transfer(
        self, call: Call, to: str, *, reply_to: WebhookRequest | None = None
    ) -> None:
        """The call fetches a ``<Dial>`` document from us now (Plivo's transfer API)."""
        line = self._line_for(call)
        line.dial_to = to
        line.queue.clear()
        try:
            await self._transfer(call, line, [])
        except VoiceCallError:
            line.dial_to = None
            raise

    async def send_digits(self, call: Call, digits: str) -> None:
        if not call.provider_call_id:
            raise CarrierRejected("the call has no Plivo id yet")
        await self._rest.send_digits(call.provider_call_id, digits)

    async def hangup(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        await self._rest.hangup(call.provider_call_id)
        self._forget(call.call_id)

    # ------------------------------------------------------------------ port: media streams

    def stream_dialect(self) -> PlivoStreamDialect:
        return PlivoStreamDialect()

    async def connect_stream(
        self, call: Call, stream: StreamRequest, *, reply_to: WebhookRequest | None = None
    ) -> None:
        if not fits_extra_headers(stream.token):
            raise CarrierRejected("the stream token does not fit Plivo's 512-byte extraHeaders")
        line = self._line_for(call)
        now = self._clock.now()
        line.stream_stops = [at for at in line.stream_stops if now - at < 60.0]
        if len(line.stream_stops) >= _STREAM_STOPS_PER_MINUTE:
            raise CarrierRejected(
                f"Plivo's stream for the call stopped {len(line.stream_stops)} times in a minute"
            )
        line.stream = stream
        if self._answering(call, reply_to):
            line.fetching = True  # this webhook's answer opens the stream
            return
        if line.fetching or line.transfer_pending or line.unconfirmed is not None:
            return  # a fetch is coming (or under way): its document opens the stream
        try:
            await self._transfer(call, line, [])
        except VoiceCallError:
            line.stream = None
            raise

    async def status(self, call: Call) -> CarrierStatus:
        return await self._rest.status(call.provider_call_id)

    # ------------------------------------------------------------------ port: webhooks

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        return self._verifier.has_signature_headers(header_names)

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return self._verifier.verify(request)

    async def parse_webhook(self, request: WebhookRequest) -> Sequence[CallEvent]:
        if not self._public_url:
            # No publicUrl and no tunnel (inbound behind a proxy): our documents send Plivo
            # back to the URL it signed this verified request for.
            self._learned_url = self._verifier.callback_base(request)
        hook = read_webhook(request)
        if hook.kind == WebhookKind.RING:
            self._remember_uuid(hook)
            return ring_events(hook)
        if hook.kind == WebhookKind.HANGUP:
            line = self._find(hook)
            if line is not None:
                self._forget(line.call_id)
            return ended_events(hook)
        if hook.kind == WebhookKind.PARTIAL:
            return partial_events(hook)
        line = self._find(hook)
        if line is not None and self._is_current(line, hook) and hook.doc is not None:
            # Plivo has moved past the document's line (or the transfer arrived).
            line.unconfirmed = None
            line.transfer_pending = False
        if line is not None and self._is_current(line, hook):
            line.fetching = True
            line.touched_at = self._clock.now()
        if hook.kind == WebhookKind.ANSWER:
            return answer_events(hook)
        events: list[CallEvent] = [active_event(hook)]
        if hook.played:
            events.append(played_event(hook, hook.played))
        if hook.stream_ended and line is not None and self._is_current(line, hook):
            line.stream_stops.append(self._clock.now())
            events.append(stream_stopped_event(hook))
        if hook.kind == WebhookKind.INPUT:
            events.extend(input_events(hook, self._listen_timeout_s))
            if line is not None and (hook.field("Speech") or hook.field("Digits")):
                line.listen_open = False
        elif hook.silence:
            events.append(silence_event(hook, self._listen_timeout_s))
        return events

    def webhook_response(self, request: WebhookRequest, calls: Sequence[Call]) -> WebhookResponse:
        try:
            hook = read_webhook(request)
        except CallerError:
            return _response(documents.EMPTY_XML)
        if hook.kind not in WebhookKind.SERVES_XML:
            # Notifications (ring, hang-up, interim speech): Plivo ignores the body.
            return _response(documents.EMPTY_XML)
        call = next(
            (
                c
                for c in calls
                if (hook.call_id and c.call_id == hook.call_id)
                or c.provider_call_id == hook.call_uuid
            ),
            None,
        )
        line = self._lines.get(call.call_id) if call is not None else self._find(hook)
        if line is not None and line.dial_to is not None:
            # Our side of a transferred call is over; Plivo's leg goes on to the new party.
            caller_id = call.to_number if call is not None else None
            return _response(documents.dial(line.dial_to, caller_id))
        if call is None or not call.is_live:
            # A call we do not drive (unknown, or already over on our side) must not be left
            # running on Plivo; a rejected inbound call hears the rejection.
            if line is not None:
                line.fetching = False
            return _response(documents.hangup(rejected=line is not None and line.rejected))
        line = line or self._line_for(call)
        replay_key = f"{hook.call_uuid}?{request.query}"
        if replay_key in line.replays:
            # Plivo asked again (our first answer never reached it): the same document.
            return _response(line.replays[replay_key])
        if not self._is_current(line, hook):
            # From a document a transfer abandoned: Plivo runs the transfer's document, not
            # this answer, so it takes nothing from the queue.
            stale = self._url(call.call_id, WebhookKind.XML, doc=f"stale-{line.new_token()}")
            return _response(documents.park(self._keepalive_s, stale))
        line.fetching = False
        line.transfer_pending = False
        line.unconfirmed = None
        body = self._next_document(call, line, hook)
        line.replays[replay_key] = body
        while len(line.replays) > _REPLAYS_KEPT:
            line.replays.pop(next(iter(line.replays)))
        return _response(body)

    def restore(self, call: Call, pending: Playback) -> None:
        """Rebuild the call's queue from the lines still pending.

        A line already playing is in the document Plivo runs: its next fetch (whose token we
        no longer know, so any fetch is taken as current) confirms it and takes the rest of
        the queue, which lived only in our memory. With nothing pending the call is parked
        or listening, and a new line makes Plivo fetch at once.
        """
        line = self._line_for(call)
        playing, played = call.speech.playing, call.speech.last_played
        playing_id = playing.utterance_id if playing is not None else None
        waiting = [spoken for spoken in pending.lines if spoken.utterance_id != playing_id]
        line.queue = [
            _Queued(
                spoken.utterance_id,
                spoken.text,
                spoken.voice,
                pending.then if position == len(waiting) - 1 else None,
                pending.hangup_after_s,
            )
            for position, spoken in enumerate(waiting)
        ]
        line.unconfirmed = playing_id
        line.last_line = playing_id or (played.utterance_id if played is not None else None)
        line.after, line.hold_s = pending.then, pending.hangup_after_s
        line.listen_open = pending.then is AfterSpeech.LISTEN

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._lines.clear()
        self._by_uuid.clear()
        await self._rest.aclose()

    # ------------------------------------------------------------------ documents

    def _next_document(self, call: Call, line: _Line, hook: Webhook) -> bytes:
        """The document for this fetch: the next queued line, else what follows the speech."""
        token = line.new_token()
        line.current_doc = token
        call_id = call.call_id
        if line.stream is not None:
            stream, line.stream = line.stream, None
            ended_url = self._url(call_id, WebhookKind.XML, doc=token, stream="ended")
            return stream_document(stream.url, stream.token, ended_url)
        if line.queue:
            item = line.queue.pop(0)
            uid = item.utterance_id
            line.unconfirmed = uid
            line.last_line = uid
            if item.then is not None:
                line.after, line.hold_s = item.then, item.hold_s
            self._announce(call, uid)
            if not line.queue and item.then is AfterSpeech.LISTEN:
                # The prompt nested in the listen; silence falls through to the Redirect.
                line.listen_open = True
                return documents.listen(
                    self._url(call_id, WebhookKind.INPUT, doc=token, played=uid, after=uid),
                    self._url(
                        call_id, WebhookKind.XML, doc=token, played=uid, after=uid, silence="1"
                    ),
                    self._listen_timeout_s,
                    prompt=(item.text, item.voice),
                    language=self._language,
                )
            return documents.speak_then_redirect(
                item.text,
                item.voice,
                self._url(call_id, WebhookKind.XML, doc=token, played=uid),
                self._language,
            )
        if line.after is AfterSpeech.HANGUP and line.last_line is not None:
            return documents.hold_then_hangup(line.hold_s)
        if line.after is AfterSpeech.LISTEN and line.listen_open:
            # Nobody spoke yet: listen again, still answering the same line.
            after = {"after": line.last_line} if line.last_line else {}
            return documents.listen(
                self._url(call_id, WebhookKind.INPUT, doc=token, **after),
                self._url(call_id, WebhookKind.XML, doc=token, silence="1", **after),
                self._listen_timeout_s,
                language=self._language,
            )
        return documents.park(self._keepalive_s, self._url(call_id, WebhookKind.XML, doc=token))

    async def _transfer(self, call: Call, line: _Line, added: list[_Queued]) -> None:
        """Make Plivo fetch our next document now; only when nothing is playing."""
        call_uuid = call.provider_call_id
        if not call_uuid:
            self._drop(line, added)
            raise CarrierRejected("the call has no Plivo id yet")
        previous = line.current_doc
        token = f"t{line.new_token()}"
        # From now on Plivo runs (or is about to run) the transfer's document; a fetch from the
        # one it abandons must not take the queued lines.
        line.current_doc = token
        line.transfer_pending = True
        try:
            await self._rest.transfer(
                call_uuid, self._url(call.call_id, WebhookKind.XML, doc=token)
            )
        except VoiceCallError:
            if line.current_doc == token:
                line.current_doc = previous
                line.transfer_pending = False
            self._drop(line, added)
            raise

    @staticmethod
    def _drop(line: _Line, added: list[_Queued]) -> None:
        # The service records these lines as failed; nothing will fetch them.
        line.queue = [item for item in line.queue if item not in added]

    def _announce(self, call: Call, utterance_id: str) -> None:
        """speech.started: the document holding the line is on its way to Plivo."""
        event = started_event(call.call_id, call.provider_call_id or "", utterance_id)
        # At once, not on a clock tick: aclose awaits it (a failing sink is logged by emit).
        task = asyncio.ensure_future(self._events.emit(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ lines

    @staticmethod
    def _is_current(line: _Line, hook: Webhook) -> bool:
        # With no document of ours on record (first answer, or after a restart) any fetch is
        # the call's present.
        return line.current_doc is None or hook.doc == line.current_doc

    def _answering(self, call: Call, reply_to: WebhookRequest | None) -> bool:
        """Whether ``reply_to`` is a Plivo fetch for this call whose answer is a document."""
        if reply_to is None:
            return False
        try:
            hook = read_webhook(reply_to)
        except CallerError:
            return False
        if hook.kind not in WebhookKind.SERVES_XML:
            return False
        return hook.call_id == call.call_id or (
            bool(hook.call_uuid) and hook.call_uuid == call.provider_call_id
        )

    def _find(self, hook: Webhook) -> _Line | None:
        self._remember_uuid(hook)
        call_id = hook.call_id or self._by_uuid.get(hook.call_uuid)
        if call_id is None:
            return None
        return self._lines.get(call_id) or (self._new_line(call_id) if hook.call_id else None)

    def _remember_uuid(self, hook: Webhook) -> None:
        if hook.call_id and hook.call_uuid:
            self._by_uuid[hook.call_uuid] = hook.call_id

    def _line_for(self, call: Call) -> _Line:
        line = self._lines.get(call.call_id) or self._new_line(call.call_id)
        if call.provider_call_id:
            self._by_uuid[call.provider_call_id] = call.call_id
        line.touched_at = self._clock.now()
        return line

    def _new_line(self, call_id: str) -> _Line:
        if len(self._lines) >= _MAX_LINES:
            oldest = min(self._lines.values(), key=lambda item: item.touched_at)
            self._forget(oldest.call_id)
        line = _Line(call_id=call_id, touched_at=self._clock.now())
        self._lines[call_id] = line
        return line

    def _forget(self, call_id: str) -> None:
        self._lines.pop(call_id, None)
        for uuid in [u for u, c in self._by_uuid.items() if c == call_id]:
            del self._by_uuid[uuid]

    def _url(self, call_id: str, kind: str, **extra: str) -> str:
        params = {CALL_ID_PARAM: call_id, KIND_PARAM: kind}
        names = {"doc": DOC_PARAM, "played": PLAYED_PARAM, "after": AFTER_PARAM}
        names["silence"] = SILENCE_PARAM
        names["stream"] = STREAM_PARAM
        params |= {names.get(key, key): value for key, value in extra.items()}
        return with_query(self._public_url or self._learned_url, params)


def _plivo_number(number: str) -> str:
    return number[1:] if number.startswith("+") else number


def _response(body: bytes) -> WebhookResponse:
    return WebhookResponse(200, body, "application/xml")
