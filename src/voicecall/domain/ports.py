"""Ports: what the domain and services need from the outside world, as Protocols.

Adapters satisfy these structurally; none inherits from them.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from voicecall.domain.call import Call, CallMode, CallState
from voicecall.domain.conversation import ChatMessage, ModelEvent, ToolSpec
from voicecall.domain.events import CallEvent
from voicecall.domain.media import StreamMessage
from voicecall.domain.pairing import PairingBook
from voicecall.domain.signed_url import Verification
from voicecall.domain.speech import Playback
from voicecall.domain.webhook import WebhookRequest, WebhookResponse

__all__ = [
    "CallStore",
    "CarrierStatus",
    "CarrierStatusKind",
    "ChatModel",
    "Clock",
    "DialRequest",
    "DialResult",
    "EventRecord",
    "EventSink",
    "MediaStreaming",
    "PairingStore",
    "Responder",
    "SpeechSynthesizer",
    "StreamDialect",
    "StreamRequest",
    "TelephonyProvider",
    "TimerHandle",
    "Transcriber",
    "TranscriberSession",
    "TranscriptEvent",
    "TranscriptKind",
    "Tunnel",
    "clock_sleep",
]

TimerCallback = Callable[[], Awaitable[None] | None]


@runtime_checkable
class TimerHandle(Protocol):
    def cancel(self) -> None:
        """Stop the timer if it has not fired; harmless afterwards."""


@runtime_checkable
@runtime_checkable
class Tunnel(Protocol):
    """Exposes the webhook listener to the carrier (ngrok in-process, the Tailscale CLI)."""

    name: str

    async def open(self) -> str:
        """Establish the tunnel; returns its public base URL (``https://host``).

        Raises:
            Exception: the tunnel's own error, for the operator to read.
        """

    async def wait_closed(self) -> str:
        """Return, with the reason, once an open tunnel has dropped."""

    async def close(self) -> None:
        """Undo what ``open`` did; safe to call when not open."""


class Clock(Protocol):
    """The only source of time, so timers are tested without sleeping."""

    def now(self) -> float:
        """Unix time in seconds."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (audio pacing); only differences mean anything."""

    def schedule(self, delay_s: float, callback: TimerCallback) -> TimerHandle:
        """Run ``callback`` (sync, or async and awaited) ``delay_s`` seconds from now."""


async def clock_sleep(clock: Clock, seconds: float) -> None:
    """Wait ``seconds`` of the clock's time (a fake clock's too): a timer and a future."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    timer = clock.schedule(seconds, wake)
    try:
        await done
    finally:
        timer.cancel()


@attrs.frozen
class DialRequest:
    """Everything a carrier needs to place an outbound call."""

    call_id: str
    to_number: str
    from_number: str
    mode: CallMode
    message: str | None
    ring_timeout_s: float


@attrs.frozen
class DialResult:
    provider_call_id: str


class CarrierStatusKind(enum.StrEnum):
    LIVE = "live"
    ENDED = "ended"
    UNKNOWN = "unknown"


@attrs.frozen
class CarrierStatus:
    """What the carrier says of a call. ``unknown`` is a value, not an error: a call whose
    status cannot be learned is kept, never killed."""

    kind: CarrierStatusKind
    end_state: CallState | None = None
    detail: str = ""


class EventSink(Protocol):
    async def __call__(self, events: Sequence[CallEvent]) -> object:
        """Apply events the carrier produced outside a webhook (the mock, REST answers)."""


@runtime_checkable
class TelephonyProvider(Protocol):
    """A carrier: places, controls and follows calls.

    Every method that talks to the carrier is async and must not block the event loop.
    Failures are raised as ``CarrierRejected`` (do not retry) or ``TransientError``.
    """

    name: str
    signs_webhooks: bool
    """False only for the offline mock, whose webhook takes unsigned events."""

    def bind(self, sink: EventSink) -> None:
        """Give the adapter the sink for events it learns of outside webhooks."""

    async def dial(self, request: DialRequest) -> DialResult:
        """Place an outbound call; returns the carrier's id for it."""

    async def answer(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        """Pick up an inbound call the policy accepted."""

    async def reject(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        """Refuse an inbound call; the caller is hung up once."""

    async def play(
        self, call: Call, playback: Playback, *, reply_to: WebhookRequest | None = None
    ) -> None:
        """Play ``playback.lines`` after everything queued before, then do ``playback.then``.

        Lines are never cut or dropped by a later ``play``: the adapter composes carrier
        instructions so that the carrier itself keeps the order (one TwiML/XML document per
        turn, Telnyx's speak queue, marks on a media stream). Playback is reported as
        ``speech.started`` / ``speech.played`` events carrying the utterance ids, through the
        webhook events or the bound sink. With ``then=LISTEN`` the caller's words come back
        as ``call.speech`` events whose ``heard_after`` names the line the listen went with.
        With ``then=HANGUP`` the adapter may end the call itself ``hangup_after_s`` after the
        lines were played; the service ends it then in any case.

        Args:
            reply_to: the carrier webhook being answered right now for this call, when the
                service acts while handling it (so the verbs can go into its answer); None
                when the action comes from elsewhere (RPC, a timer, an agent turn).
        """

    async def hangup(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        """End the call. Idempotent: a call the carrier already ended is success."""

    async def transfer(
        self, call: Call, to: str, *, reply_to: WebhookRequest | None = None
    ) -> None:
        """Hand the caller over to ``to`` (E.164); our side of the call is then over.

        Twilio and Plivo replace the call's document with a ``<Dial>``, Telnyx uses its
        ``transfer`` command, the mock records the transfer.
        """

    async def send_digits(self, call: Call, digits: str) -> None:
        """Play DTMF ``digits`` (0-9, *, #, and w for a pause) into the call."""

    async def status(self, call: Call) -> CarrierStatus:
        """Ask the carrier about the call; ``unknown`` on timeouts and 5xx, never raises."""

    def restore(self, call: Call, pending: Playback) -> None:
        """Take back a live call the store kept across a restart.

        ``pending`` holds the call's lines not yet played whole or cut, in order (the first
        may be playing now), and what follows them. The adapter rebuilds what it kept in
        memory so that each line is heard once, in order, and the carrier's reports about
        them are read as the right lines.
        """

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        """Whether the headers needed to verify are present; checked before the body is read."""

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        """Check the carrier's signature over the request; never raises."""

    async def parse_webhook(self, request: WebhookRequest) -> Sequence[CallEvent]:
        """Turn a verified webhook into normalised events; ``CallerError`` when malformed."""

    def webhook_response(self, request: WebhookRequest, calls: Sequence[Call]) -> WebhookResponse:
        """The exact answer the carrier expects after the webhook's events were applied."""

    async def aclose(self) -> None:
        """Release connections and timers."""


@runtime_checkable
class StreamDialect(Protocol):
    """One carrier WebSocket's message format, for one connection (it learns the stream id
    from the start message). Lives in the carrier adapter's ``stream.py``."""

    def parse(self, message: str) -> list[StreamMessage]:
        """The carrier's text message as stream messages; ``ValueError`` when malformed."""

    def media(self, payload: bytes) -> str:
        """A message that plays ``payload`` (μ-law) to the caller."""

    def mark(self, name: str) -> str:
        """A mark the carrier echoes once the audio sent before it has been played."""

    def clear(self) -> str:
        """A message that drops every byte of audio the carrier has not played yet."""


@attrs.frozen
class StreamRequest:
    """Where and how the carrier should open a call's media stream."""

    url: str
    """``wss://`` (``ws://`` over plain HTTP) of the public URL, at ``streaming.streamPath``."""
    token: str
    """The single-use stream token, carried as the carrier allows (``<Parameter>`` etc.)."""


@runtime_checkable
class MediaStreaming(Protocol):
    """A carrier that can carry a call's audio both ways over a WebSocket (SPEC §5)."""

    def stream_dialect(self) -> StreamDialect:
        """A fresh dialect for one incoming stream connection."""

    async def connect_stream(
        self, call: Call, stream: StreamRequest, *, reply_to: WebhookRequest | None = None
    ) -> None:
        """Tell the carrier to open the call's stream (TwiML ``<Connect><Stream>`` etc.).

        From then on the call's speech goes over the stream, not through ``play``. When the
        stream ends while the call lives on, the adapter reports ``stream.stopped``.
        """


@attrs.frozen
class EventRecord:
    """One entry of the call event log that ``tail`` follows."""

    seq: int
    call_id: str
    type: str
    at: float
    data: dict[str, Any]


@runtime_checkable
class CallStore(Protocol):
    """Where calls live. Every write is durable when the awaited call returns."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def save(self, call: Call) -> None:
        """Insert or replace the call, committed before returning."""

    async def get(self, call_id: str) -> Call | None: ...

    async def find_by_provider_id(self, provider: str, provider_call_id: str) -> Call | None: ...

    async def list_calls(self, *, live_only: bool = False, limit: int = 100) -> list[Call]:
        """Calls newest first."""

    async def prune(self, before: float, max_events: int) -> int:
        """Drop event-log entries older than ``before`` or beyond the newest ``max_events``,
        and calls that ended before ``before``; returns how many log entries went. Sequence
        numbers are never reused."""

    async def remember_event(self, dedupe_key: str, at: float) -> bool:
        """Record a dedupe key; False when it was already recorded (the event is a repeat)."""

    async def forget_event(self, dedupe_key: str) -> None:
        """Undo ``remember_event``: the change the event caused could not be committed, so
        the carrier's retry must be applied, not taken as a repeat."""

    async def append_log(self, call_id: str, type: str, at: float, data: dict[str, Any]) -> int:
        """Append to the event log; returns the new sequence number."""

    async def log_since(self, seq: int, limit: int = 1000) -> list[EventRecord]: ...


@runtime_checkable
class PairingStore(Protocol):
    """Where pairing requests and approved numbers live: in the store directory, never in the
    config file (the operator's approvals are state, not settings)."""

    async def load(self) -> PairingBook:
        """The saved book, or an empty one when nothing was saved yet."""
        ...

    async def save(self, book: PairingBook) -> None:
        """Replace what is saved with ``book``; durable when this returns."""
        ...


@runtime_checkable
class Responder(Protocol):
    """The agent that answers an inbound caller."""

    async def respond(self, call: Call, utterance: str) -> str:
        """What to say back to ``utterance``, given the call's transcript so far."""


@runtime_checkable
class ChatModel(Protocol):
    """A language model that streams its reply: the agent on the line (issue 10).

    One port for every API style (OpenAI-compatible chat completions, Anthropic messages,
    the offline rules). Failures are raised as ``TransientError`` (unreachable, 5xx) or
    ``VoiceCallError`` (refused).
    """

    def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        """The reply as it is written: text deltas, then any tool calls, each complete."""

    async def aclose(self) -> None: ...


@runtime_checkable
class SpeechSynthesizer(Protocol):
    """Text to telephony audio (G.711 μ-law, 8 kHz mono) for media streams."""

    def synthesize(self, text: str, voice: str | None) -> AsyncIterator[bytes]:
        """The audio as it is made, in chunks of any size: the first chunk can go on the wire
        before the rest exists."""


class TranscriptKind(enum.StrEnum):
    SPEECH_STARTED = "speech_started"
    PARTIAL = "partial"
    FINAL = "final"


@attrs.frozen
class TranscriptEvent:
    """What a streaming transcriber heard.

    Attributes:
        kind: speech began (drives barge-in), a partial text, or a final transcript.
        text: the words so far (empty for ``speech_started``).
        started_ms: where in the session's audio the utterance began, in milliseconds since
            the first byte sent; the media session turns it into clock time.
    """

    kind: TranscriptKind
    text: str = ""
    started_ms: int | None = None


TranscriptHandler = Callable[[TranscriptEvent], Awaitable[None] | None]


@runtime_checkable
class TranscriberSession(Protocol):
    """One call's transcription: audio in, ``TranscriptEvent``s out through the handler."""

    async def send(self, ulaw: bytes) -> None:
        """Hand over the caller's next μ-law audio, in order."""

    async def aclose(self) -> None: ...


@runtime_checkable
class Transcriber(Protocol):
    """Telephony audio to text as it arrives, for media streams."""

    async def open(self, call_id: str, on_event: TranscriptHandler) -> TranscriberSession:
        """Start transcribing one call's caller audio."""
