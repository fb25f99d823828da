"""A simulated caller's handset on a media stream: the far end of the line, in time.

The offline mock carrier and the shipped carrier simulators put one of these on each streamed
call. It does what the network and the person on the phone do, at the pace of real audio
(20 ms a frame, on the clock it is given):

* it plays the audio the bot sends at 8 kHz, one frame per 20 ms, and echoes each mark only
  when the audio before it has been played (as Twilio, Telnyx and Plivo document for marks and
  checkpoints);
* ``clear`` drops whatever has not been played yet;
* it records what the caller heard, line by line (the audio between two marks), by decoding
  the offline tone "voice" (``adapters.speech.offline``), whole or cut;
* the caller talks back: after the bot has been quiet for a moment it says its next scripted
  line (rendered as tones, sent in real time with silence in between), optionally talks over a
  long line (barge-in), and hangs up when it has nothing left to say.

The carrier-specific parts (the socket and its message format) stay with the carrier.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence

import attrs

from voicecall.adapters.audio import FRAME_BYTES
from voicecall.adapters.speech.offline import ToneDecoder, render_tones
from voicecall.domain.ports import Clock, TranscriptKind, clock_sleep

__all__ = ["HandsetLine", "SimulatedHandset"]

log = logging.getLogger(__name__)

_SILENT = b"\xff" * FRAME_BYTES
_FRAME_S = 0.02


@attrs.define
class HandsetLine:
    """One thing the caller heard: the audio between two marks, decoded."""

    text: str
    started_at: float
    ended_at: float | None = None
    whole: bool = False
    mark: str | None = None

    def render(self) -> str:
        return self.text if self.whole else f"{self.text}—"


@attrs.define
class _Queued:
    kind: str  # "audio" | "mark"
    data: bytes = b""
    name: str = ""


class SimulatedHandset:
    """The caller's end of one streamed call.

    Args:
        clock: simulated or real time; frames are played and sent every 20 ms of it.
        send_audio: hands one 20 ms μ-law frame of the caller's voice to the carrier side.
        echo_mark: tells the server a mark was reached.
        hang_up: called once when the caller puts the phone down (out of lines).
        replies: what the caller says, in order.
        reply_delay_s: how long the bot must be quiet before the caller answers.
        barge_in_after_s: the caller talks over a bot line that has played this long.
        chars_per_sec: how fast the caller "speaks" its tone-coded lines.
        echo_marks_on_clear: whether marks dropped by ``clear`` are echoed anyway (Twilio
            does, so a bot can tell what was never played).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        send_audio: Callable[[bytes], Awaitable[None]],
        echo_mark: Callable[[str], Awaitable[None]],
        hang_up: Callable[[], Awaitable[None]],
        replies: Sequence[str] = (),
        reply_delay_s: float = 0.4,
        barge_in_after_s: float | None = None,
        chars_per_sec: float = 15.0,
        echo_marks_on_clear: bool = False,
    ) -> None:
        self.clock = clock
        self._send_audio = send_audio
        self._echo_mark = echo_mark
        self._hang_up = hang_up
        self.replies = list(replies)
        self.reply_delay_s = reply_delay_s
        self.barge_in_after_s = barge_in_after_s
        self.chars_per_sec = chars_per_sec
        self.echo_marks_on_clear = echo_marks_on_clear
        self.heard: list[HandsetLine] = []
        self.said: list[tuple[str, float]] = []
        self.marks_echoed: list[tuple[str, float]] = []
        self.clears: list[float] = []
        self.frames_played = 0
        self.underruns = 0
        self.mark_lateness: list[float] = []
        self._drained_at: float | None = None
        self._buffer: collections.deque[_Queued] = collections.deque()
        self._current: HandsetLine | None = None
        self._decoder = ToneDecoder(silence_ms=10_000)
        self._heard_bytes = bytearray()
        self._speaking: collections.deque[bytes] = collections.deque()
        self._replies_used = 0
        self._quiet_since: float | None = None
        self._bot_spoke = False
        self._barged: HandsetLine | None = None
        self._task: asyncio.Task[None] | None = None
        self._hanging_up: asyncio.Future[None] | None = None
        self._stopped = False

    # ------------------------------------------------------------------ from the server

    def receive_audio(self, ulaw: bytes) -> None:
        for offset in range(0, len(ulaw), FRAME_BYTES):
            frame = ulaw[offset : offset + FRAME_BYTES]
            if len(frame) < FRAME_BYTES:
                frame += _SILENT[len(frame) :]
            self._buffer.append(_Queued("audio", frame))

    def receive_mark(self, name: str) -> None:
        # A mark that arrives after the audio before it has run out is late by that much:
        # the caller heard the end, and the bot could not know yet.
        drained = not any(item.kind == "audio" for item in self._buffer)
        late = self.clock.now() - self._drained_at if drained and self._drained_at else 0.0
        self.mark_lateness.append(max(late, 0.0))
        self._buffer.append(_Queued("mark", name=name))

    async def receive_clear(self) -> None:
        now = self.clock.now()
        self.clears.append(now)
        dropped = [item.name for item in self._buffer if item.kind == "mark"]
        self._buffer.clear()
        self._end_line(now, whole=False)
        if self.echo_marks_on_clear:
            for name in dropped:
                await self._mark(name)

    @property
    def buffered_ms(self) -> float:
        return sum(1 for item in self._buffer if item.kind == "audio") * _FRAME_S * 1000

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """The line went dead: a line half-heard is recorded as cut."""
        self._stopped = True
        self._end_line(self.clock.now(), whole=False)
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        start = self.clock.monotonic()
        tick = 0
        try:
            while not self._stopped:
                tick += 1
                await clock_sleep(self.clock, start + tick * _FRAME_S - self.clock.monotonic())
                await self._play_frame()
                await self._talk()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("simulated handset failed")

    async def _play_frame(self) -> None:
        now = self.clock.now()
        # Marks at the head of the buffer were reached when the audio before them ended.
        while self._buffer and self._buffer[0].kind == "mark":
            item = self._buffer.popleft()
            self._end_line(now, whole=True)
            await self._mark(item.name)
        if not self._buffer:
            if self._current is not None and self._current.ended_at is None:
                self.underruns += 1  # a gap in the middle of a line
            if self._quiet_since is None:
                self._quiet_since = now
            return
        item = self._buffer.popleft()
        self.frames_played += 1
        if not any(queued.kind == "audio" for queued in self._buffer):
            self._drained_at = now + _FRAME_S  # when this last frame has been played out
        else:
            self._drained_at = None
        self._quiet_since = None
        if not self._speaking:
            # Bot audio that overlaps the caller's own line is not something to answer.
            self._bot_spoke = True
        if self._current is None:
            self._current = HandsetLine(text="", started_at=now)
        self._heard_bytes += item.data
        while self._buffer and self._buffer[0].kind == "mark":
            mark = self._buffer.popleft()
            end = now + _FRAME_S
            self._end_line(end, whole=True)
            await self._mark(mark.name)

    async def _mark(self, name: str) -> None:
        self.marks_echoed.append((name, self.clock.now()))
        if self.heard and self.heard[-1].mark is None and self.heard[-1].whole:
            self.heard[-1].mark = name
        await self._echo_mark(name)

    def _end_line(self, at: float, *, whole: bool) -> None:
        line = self._current
        if line is None:
            return
        self._current = None
        line.text = _decode(bytes(self._heard_bytes))
        self._heard_bytes.clear()
        line.ended_at = at
        line.whole = whole
        self.heard.append(line)

    async def _talk(self) -> None:
        now = self.clock.now()
        if not self._speaking and not self._stopped:
            await self._maybe_start_talking(now)
        frame = self._speaking.popleft() if self._speaking else _SILENT
        await self._send_audio(frame)

    async def _maybe_start_talking(self, now: float) -> None:
        playing = self._current
        if (
            self.barge_in_after_s is not None
            and playing is not None
            and playing is not self._barged
            and now - playing.started_at >= self.barge_in_after_s
            and self._replies_used < len(self.replies)
        ):
            self._barged = playing
            self._say_next(now)
            return
        quiet = self._quiet_since is not None and now - self._quiet_since >= self.reply_delay_s
        if not (quiet and self._bot_spoke):
            return
        if self._replies_used >= len(self.replies):
            self._stopped = True
            # Its own task: hanging up stops this handset, which must not cancel the hang-up.
            self._hanging_up = asyncio.ensure_future(self._hang_up())
            return
        self._say_next(now)

    def _say_next(self, now: float) -> None:
        text = self.replies[self._replies_used]
        self._replies_used += 1
        self._bot_spoke = False
        self.said.append((text, now))
        audio = render_tones(text, self.chars_per_sec) + _SILENT * 5
        for offset in range(0, len(audio), FRAME_BYTES):
            self._speaking.append(audio[offset : offset + FRAME_BYTES])


def _decode(audio: bytes) -> str:
    decoder = ToneDecoder(silence_ms=40)
    events = decoder.feed(audio + _SILENT * 3)
    finals = [e.text for e in events if e.kind is TranscriptKind.FINAL]
    return " ".join(finals)
