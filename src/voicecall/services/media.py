"""Media streams: the carrier-neutral half of two-way call audio (SPEC §5).

For each streamed call this service owns the outbound audio (the call's utterances, synthesised
and paced at most ``leadMs`` ahead of real time, each followed by a mark), the marks coming
back (what the caller has actually heard), barge-in (caller speech while the bot plays: the
carrier's ``clear``, and the playing line is cut where it was heard) and the caller's audio on
its way to the transcriber. A carrier's wire format is its dialect's business; a socket is
anything that can send and receive text.

A call's media outlives one socket: utterances queued before the carrier connects, or while a
dropped stream reconnects, wait in the call's outbox. Work for one call is owned by this one
process (the socket terminates here), which is what keeps several gateways possible later.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs

from voicecall.domain.events import (
    CallDtmf,
    CallEvent,
    CallSpeech,
    SpeechCut,
    SpeechPlayed,
    SpeechStarted,
    StreamStopped,
)
from voicecall.domain.media import (
    StreamClosed,
    StreamDtmf,
    StreamGrant,
    StreamMark,
    StreamMedia,
    StreamStart,
    audio_allowed_ms,
    mint_stream_token,
    read_stream_token,
)
from voicecall.domain.ports import (
    Clock,
    EventSink,
    SpeechSynthesizer,
    StreamDialect,
    TimerHandle,
    Transcriber,
    TranscriberSession,
    TranscriptEvent,
    TranscriptKind,
    clock_sleep,
)
from voicecall.domain.speech import Playback

__all__ = ["MediaLimits", "MediaService", "StreamSocket"]

log = logging.getLogger(__name__)

_FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
_FRAME_MS = 20.0
_SILENCE = b"\xff"


class StreamSocket(Protocol):
    """The WebSocket as the service needs it; the entrypoint adapts its framework's socket."""

    async def send_text(self, text: str) -> None: ...

    async def receive_text(self) -> str | None:
        """The next text message, or None once the socket is closed."""

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


@attrs.frozen
class MediaLimits:
    """Bounds on what one carrier stream may do."""

    max_message_bytes: int = 64 * 1024
    max_messages_per_s: int = 200  # a carrier sends 50 media frames a second
    idle_timeout_s: float = 30.0
    start_timeout_s: float = 10.0
    max_frames_per_message: int = 5  # 100 ms of audio per outbound media message


@attrs.define
class _Line:
    utterance_id: str
    text: str
    voice: str | None


@attrs.define
class _Playing:
    """An utterance on its way to the caller: where its audio sits in the playout."""

    utterance_id: str
    start_ms: float  # playout position of its first frame
    end_ms: float | None = None  # set once its last frame was sent (its mark follows)


@attrs.define(eq=False)
class _CallMedia:
    """One call's media: its outbox survives sockets; the rest belongs to the attached one."""

    call_id: str
    outbox: collections.deque[_Line] = attrs.Factory(collections.deque)
    wake: asyncio.Event = attrs.Factory(asyncio.Event)
    socket: StreamSocket | None = None
    dialect: StreamDialect | None = None
    sender: asyncio.Task[None] | None = None
    transcriber: TranscriberSession | None = None
    playing: list[_Playing] = attrs.Factory(list)
    sent_lines: collections.deque[_Line] = attrs.Factory(lambda: collections.deque(maxlen=16))
    # Playout clock: audio sent since ``playout_start`` (monotonic seconds).
    playout_start: float = 0.0
    sent_ms: float = 0.0
    inbound_ms: float = 0.0
    inbound_epoch: float = 0.0  # clock time of the first caller audio
    generation: int = 0
    ended: bool = False
    # After a barge-in the bot holds its queued lines until the caller has finished.
    holding: bool = False
    connections: int = 0
    hold_timer: TimerHandle | None = None


class MediaService:
    """Streams for every call that has one.

    Args:
        clock: time, timers and the monotonic clock that paces audio.
        synthesizer: text to μ-law, streamed.
        transcriber: opens one transcription session per streamed call.
        secret: the key stream tokens are signed with (generated at first start, 0600).
        lead_ms: how far ahead of real time outbound audio may be sent (``streaming.leadMs``).
        max_hold_s: after a barge-in, the longest the bot waits for the caller to finish
            before its queued lines play anyway.
        token_ttl_s: how long a minted stream token is good for.
        limits: bounds on a carrier's stream.
    """

    def __init__(
        self,
        clock: Clock,
        synthesizer: SpeechSynthesizer,
        transcriber: Transcriber,
        secret: bytes,
        *,
        lead_ms: float = 200.0,
        token_ttl_s: float = 600.0,
        limits: MediaLimits | None = None,
        max_hold_s: float = 10.0,
    ) -> None:
        self.clock = clock
        self.synthesizer = synthesizer
        self.transcriber = transcriber
        self.lead_ms = lead_ms
        self.token_ttl_s = token_ttl_s
        self.limits = limits or MediaLimits()
        self.max_hold_s = max_hold_s
        self._secret = secret
        self._calls: dict[str, _CallMedia] = {}
        self._used_nonces: dict[str, float] = {}
        self._sink: EventSink | None = None
        self._is_live: Callable[[str], Awaitable[bool]] | None = None

    def bind(self, sink: EventSink, is_live: Callable[[str], Awaitable[bool]]) -> None:
        """Where playback, speech and DTMF events go, and how to ask whether a call is live."""
        self._sink = sink
        self._is_live = is_live

    # ------------------------------------------------------------------ the call service side

    def expect(self, call_id: str) -> str:
        """Take a call into streaming and mint the token its carrier will connect with."""
        self._calls.setdefault(call_id, _CallMedia(call_id))
        expires_at = self.clock.now() + self.token_ttl_s
        return mint_stream_token(self._secret, call_id, expires_at, secrets.token_hex(8))

    def handles(self, call_id: str) -> bool:
        """Whether the call's speech goes over a stream (connected or awaited)."""
        media = self._calls.get(call_id)
        return media is not None and not media.ended

    def connections(self, call_id: str) -> int:
        """How many streams the call has had accepted so far."""
        media = self._calls.get(call_id)
        return media.connections if media is not None else 0

    def connected(self, call_id: str) -> bool:
        media = self._calls.get(call_id)
        return media is not None and media.socket is not None

    async def play(self, call_id: str, playback: Playback) -> None:
        """Queue lines for the call's stream; they play after everything queued before."""
        media = self._calls.get(call_id)
        if media is None or media.ended:
            log.warning(
                "media: call %s has no stream; %d line(s) dropped", call_id, len(playback.lines)
            )
            return
        for line in playback.lines:
            media.outbox.append(_Line(line.utterance_id, line.text, line.voice))
        media.wake.set()

    async def end_call(self, call_id: str) -> None:
        """The call is over: close its stream and forget it."""
        media = self._calls.pop(call_id, None)
        if media is None:
            return
        media.ended = True
        media.outbox.clear()
        socket = media.socket
        await self._detach(media)
        if socket is not None:
            await _close_quietly(socket, 1000, "call ended")

    async def aclose(self) -> None:
        for call_id in list(self._calls):
            await self.end_call(call_id)

    # ------------------------------------------------------------------ the carrier side

    async def run(self, socket: StreamSocket, dialect: StreamDialect) -> None:
        """Serve one carrier WebSocket until it closes. Refusals close it before any media."""
        start = await self._await_start(socket, dialect)
        if start is None:
            return
        grant = await self._admit(start)
        if isinstance(grant, str):
            log.warning("media stream refused: %s", grant)
            await _close_quietly(socket, 1008, grant)
            return
        media = self._calls[grant.call_id]
        await self._attach(media, socket, dialect)
        try:
            await self._receive(media, socket, dialect)
        finally:
            if media.socket is socket:
                await self._detach(media)
            await _close_quietly(socket, 1000, "")

    async def _await_start(
        self, socket: StreamSocket, dialect: StreamDialect
    ) -> StreamStart | None:
        # Twilio sends "connected" before "start"; nothing but those may come first.
        for _ in range(4):
            message = await self._receive_one(socket, self.limits.start_timeout_s)
            if message is None:
                return None
            try:
                parsed = dialect.parse(message)
            except ValueError as err:
                log.warning("media stream refused: %s", err)
                await _close_quietly(socket, 1008, "malformed message")
                return None
            for item in parsed:
                if isinstance(item, StreamStart):
                    return item
                log.warning("media stream refused: %s before start", type(item).__name__)
                await _close_quietly(socket, 1008, "media before start")
                return None
        await _close_quietly(socket, 1008, "no start message")
        return None

    async def _admit(self, start: StreamStart) -> StreamGrant | str:
        if not start.token:
            return "no stream token"
        grant = read_stream_token(self._secret, start.token, self.clock.now())
        if isinstance(grant, str):
            return grant
        now = self.clock.now()
        self._used_nonces = {n: exp for n, exp in self._used_nonces.items() if exp >= now}
        if grant.nonce in self._used_nonces:
            return "stream token already used"
        media = self._calls.get(grant.call_id)
        if media is None or media.ended:
            return "stream token for a call that is not streaming"
        if self._is_live is None or not await self._is_live(grant.call_id):
            return "stream token for a call that is not live"
        if media.socket is not None:
            return "a stream for this call is already open"
        self._used_nonces[grant.nonce] = grant.expires_at
        return grant

    async def _attach(
        self, media: _CallMedia, socket: StreamSocket, dialect: StreamDialect
    ) -> None:
        media.socket = socket
        media.dialect = dialect
        media.connections += 1
        media.generation += 1
        media.playing.clear()
        media.sent_ms = 0.0
        media.playout_start = self.clock.monotonic()
        media.inbound_ms = 0.0
        media.inbound_epoch = self.clock.now()
        generation = media.generation

        async def on_event(event: TranscriptEvent) -> None:
            await self._on_transcript(media, generation, event)

        media.transcriber = await self.transcriber.open(media.call_id, on_event)
        media.sender = asyncio.ensure_future(self._send_loop(media, generation))

    async def _detach(self, media: _CallMedia) -> None:
        media.generation += 1
        sender, media.sender = media.sender, None
        if sender is not None and sender is not asyncio.current_task():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        session, media.transcriber = media.transcriber, None
        if session is not None:
            await session.aclose()
        # A line cut off by a dropped stream was heard only in part; queued ones wait for the
        # next stream (or the end of the call).
        unfinished = [p for p in media.playing if p.utterance_id]
        media.playing.clear()
        media.socket = None
        media.dialect = None
        if unfinished and not media.ended:
            await self._emit(
                SpeechCut(
                    call_id=media.call_id, utterance_id=unfinished[0].utterance_id, rest=False
                )
            )

    async def _receive(
        self, media: _CallMedia, socket: StreamSocket, dialect: StreamDialect
    ) -> None:
        window_start = self.clock.monotonic()
        in_window = 0
        while True:
            message = await self._receive_one(socket, self.limits.idle_timeout_s)
            if message is None:
                return
            now = self.clock.monotonic()
            if now - window_start >= 1.0:
                window_start, in_window = now, 0
            in_window += 1
            if in_window > self.limits.max_messages_per_s:
                log.warning("media stream for call %s closed: too many messages", media.call_id)
                return
            try:
                parsed = dialect.parse(message)
            except ValueError as err:
                log.warning(
                    "media stream for call %s: ignoring a bad message (%s)", media.call_id, err
                )
                continue
            for item in parsed:
                if isinstance(item, StreamMedia):
                    media.inbound_ms += len(item.payload) / 8.0
                    if media.transcriber is not None:
                        await media.transcriber.send(item.payload)
                elif isinstance(item, StreamMark):
                    await self._on_mark(media, item.name)
                elif isinstance(item, StreamDtmf):
                    await self._emit(CallDtmf(call_id=media.call_id, digits=item.digits))
                elif isinstance(item, StreamClosed):
                    return
                elif isinstance(item, StreamStart):
                    log.warning("media stream for call %s: a second start ignored", media.call_id)

    async def _receive_one(self, socket: StreamSocket, timeout_s: float) -> str | None:
        # The deadline is the clock port's, so a fake clock governs it in tests.
        receiving = asyncio.ensure_future(socket.receive_text())
        deadline = asyncio.ensure_future(clock_sleep(self.clock, timeout_s))
        try:
            await asyncio.wait({receiving, deadline}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
            if not receiving.done():
                receiving.cancel()
        if not receiving.done() or receiving.cancelled():
            log.warning("media stream closed: nothing received for %.0f s", timeout_s)
            return None
        message = receiving.result()
        if message is not None and len(message) > self.limits.max_message_bytes:
            log.warning("media stream closed: a message of %d bytes", len(message))
            return None
        return message

    # ------------------------------------------------------------------ outbound audio

    async def _send_loop(self, media: _CallMedia, generation: int) -> None:
        try:
            while media.generation == generation:
                if not media.outbox or media.holding:
                    media.wake.clear()
                    await media.wake.wait()
                    continue
                line = media.outbox.popleft()
                await self._send_line(media, generation, line)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("media stream for call %s: sending audio failed", media.call_id)

    async def _send_line(self, media: _CallMedia, generation: int, line: _Line) -> None:
        dialect, socket = media.dialect, media.socket
        if dialect is None or socket is None:
            media.outbox.appendleft(line)
            return
        self._settle_playout(media)
        entry = _Playing(line.utterance_id, start_ms=media.sent_ms)
        media.playing.append(entry)
        media.sent_lines.append(line)
        started = False
        pending = b""
        try:
            async for chunk in self.synthesizer.synthesize(line.text, line.voice):
                if media.generation != generation or entry not in media.playing:
                    return  # barge-in or a dropped stream: the rest is not sent
                pending += chunk
                usable = len(pending) - len(pending) % _FRAME_BYTES
                if usable:
                    if not started:
                        started = True
                        await self._emit(
                            SpeechStarted(call_id=media.call_id, utterance_id=line.utterance_id)
                        )
                    await self._send_audio(media, generation, pending[:usable])
                    pending = pending[usable:]
        except asyncio.CancelledError:
            raise
        except Exception as err:
            await self._voice_failed(media, generation, entry, err)
            return
        if media.generation != generation or entry not in media.playing:
            return
        if pending:
            pending += _SILENCE * (_FRAME_BYTES - len(pending))
            if not started:
                started = True
                await self._emit(
                    SpeechStarted(call_id=media.call_id, utterance_id=line.utterance_id)
                )
            await self._send_audio(media, generation, pending)
        if media.generation != generation or entry not in media.playing:
            return
        entry.end_ms = media.sent_ms
        await socket.send_text(dialect.mark(line.utterance_id))

    async def _voice_failed(
        self, media: _CallMedia, generation: int, entry: _Playing, err: Exception
    ) -> None:
        """The synthesiser failed mid-call (401, 429, 5xx, a timeout): the caller must not get
        silence, so the call goes on with the carrier's native voice from this line on."""
        if media.generation != generation:
            return
        if entry in media.playing:
            media.playing.remove(entry)
        detail = getattr(err, "detail", None) or str(err) or type(err).__name__
        log.warning(
            "call %s: the voice failed on line %s (%s); going on with the carrier's native voice",
            media.call_id,
            entry.utterance_id,
            detail,
        )
        await self._emit(
            StreamStopped(call_id=media.call_id, reason=f"voice failed: {detail}", native=True)
        )

    async def _send_audio(self, media: _CallMedia, generation: int, audio: bytes) -> None:
        """Send whole frames, never more than ``lead_ms`` ahead of the playout."""
        step = _FRAME_BYTES * self.limits.max_frames_per_message
        offset = 0
        while offset < len(audio):
            if media.generation != generation or media.socket is None or media.dialect is None:
                return
            elapsed = self.clock.monotonic() - media.playout_start
            room_ms = audio_allowed_ms(elapsed, self.lead_ms) - media.sent_ms
            # Wake once a whole batch fits (not every 20 ms): fewer wake-ups per stream, and
            # the carrier's buffer still never holds more than the lead.
            batch_ms = min(
                (len(audio) - offset) / 8.0,
                self.limits.max_frames_per_message * _FRAME_MS,
                max(self.lead_ms, _FRAME_MS),
            )
            if room_ms + 0.001 < batch_ms:  # a microsecond of slack for float rounding
                await clock_sleep(self.clock, max(batch_ms - room_ms, 1.0) / 1000.0)
                continue
            frames = min(int((room_ms + 0.001) // _FRAME_MS), self.limits.max_frames_per_message)
            chunk = audio[offset : offset + min(frames * _FRAME_BYTES, step)]
            await media.socket.send_text(media.dialect.media(chunk))
            media.sent_ms += len(chunk) / 8.0
            offset += len(chunk)

    def _settle_playout(self, media: _CallMedia) -> None:
        # When everything sent has been played out, the next audio plays from now.
        elapsed_ms = (self.clock.monotonic() - media.playout_start) * 1000.0
        if elapsed_ms > media.sent_ms:
            media.playout_start = self.clock.monotonic() - media.sent_ms / 1000.0

    # ------------------------------------------------------------------ what comes back

    async def _on_mark(self, media: _CallMedia, name: str) -> None:
        entry = next((p for p in media.playing if p.utterance_id == name), None)
        if entry is None:
            return  # a mark for audio that was cleared, or not ours
        # Marks come back in order: everything before this one has been heard too.
        index = media.playing.index(entry)
        del media.playing[: index + 1]
        await self._emit(SpeechPlayed(call_id=media.call_id, utterance_id=name))

    async def _on_transcript(
        self, media: _CallMedia, generation: int, event: TranscriptEvent
    ) -> None:
        if media.generation != generation:
            return
        started_at = None
        if event.started_ms is not None:
            started_at = media.inbound_epoch + event.started_ms / 1000.0
        if event.kind is TranscriptKind.SPEECH_STARTED:
            await self._barge_in(media)
        elif event.kind is TranscriptKind.PARTIAL:
            await self._emit(
                CallSpeech(
                    call_id=media.call_id,
                    transcript=event.text,
                    is_final=False,
                    started_at=started_at,
                    dedupe_key=f"stream:{media.call_id}:{generation}:{event.started_ms}:{event.text}",
                )
            )
        else:
            self._release_hold(media)
            if not event.text:
                return
            await self._emit(
                CallSpeech(
                    call_id=media.call_id,
                    transcript=event.text,
                    is_final=True,
                    started_at=started_at,
                    dedupe_key=f"stream:{media.call_id}:{generation}:{event.started_ms}:final",
                )
            )

    async def _barge_in(self, media: _CallMedia) -> None:
        """Caller speech while the bot plays: clear the carrier's buffer and cut the line
        where the caller was. Lines queued behind it wait until the caller has finished."""
        if not media.playing or media.socket is None or media.dialect is None:
            return
        heard_ms = (self.clock.monotonic() - media.playout_start) * 1000.0
        current = media.playing[0]
        await media.socket.send_text(media.dialect.clear())
        # Lines whose audio was sent but never reached the caller go back to the front.
        unheard = [entry for entry in media.playing[1:] if entry.start_ms >= heard_ms]
        lines = {line.utterance_id: line for line in media.sent_lines}
        for entry in reversed(unheard):
            line = lines.get(entry.utterance_id)
            if line is not None:
                media.outbox.appendleft(line)
        media.playing.clear()
        self._hold(media)
        # The carrier's buffer is empty now: the next audio plays at once.
        media.sent_ms = 0.0
        media.playout_start = self.clock.monotonic()
        if media.sender is not None:
            media.sender.cancel()
            await asyncio.gather(media.sender, return_exceptions=True)
            media.sender = asyncio.ensure_future(self._send_loop(media, media.generation))
        await self._emit(
            SpeechCut(
                call_id=media.call_id,
                utterance_id=current.utterance_id,
                heard_ms=max(0, round(heard_ms - current.start_ms)),
                rest=False,
            )
        )

    def _hold(self, media: _CallMedia) -> None:
        media.holding = True
        if media.hold_timer is not None:
            media.hold_timer.cancel()
        # A transcriber that never reports the end of the caller's words cannot mute the bot.
        media.hold_timer = self.clock.schedule(self.max_hold_s, lambda: self._release_hold(media))

    def _release_hold(self, media: _CallMedia) -> None:
        if media.hold_timer is not None:
            media.hold_timer.cancel()
            media.hold_timer = None
        if media.holding:
            media.holding = False
            media.wake.set()

    async def _emit(self, event: CallEvent) -> None:
        if self._sink is None:
            return
        try:
            await self._sink([event])
        except Exception:
            log.exception("media: applying %s failed", event.type)


async def _close_quietly(socket: StreamSocket, code: int, reason: str) -> None:
    try:
        await socket.close(code, reason)
    except Exception:  # already closed, or the peer went away
        log.debug("closing a media stream failed", exc_info=True)
