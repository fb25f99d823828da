"""OFFLINE TEST DOUBLES for speech: a tone "voice" and the "ear" that reads it back.

These are not speech synthesis or recognition. They exist so the mock carrier, the carrier
simulators and ``make demo`` can run media streams with no account and no network: text is
rendered as a deterministic sequence of two-tone symbols (one per UTF-8 byte, like DTMF with a
16 x 16 grid), and the transcriber decodes exactly that code. Real speech is not understood.

The code, per symbol: one 20 ms frame of silence (so repeated letters stay apart), then tone
frames carrying one low tone (300-1800 Hz) and one high tone (2000-3500 Hz), 100 Hz apart,
each on a 50 Hz FFT bin of a 160-sample frame. Symbols are spread over time so that a text
lasts ``len / chars_per_sec`` seconds, with at least two frames per symbol. A pause of
``silence_ms`` ends an utterance.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import numpy as np

from voicecall.adapters.audio import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, pcm16_to_ulaw
from voicecall.adapters.audio import ulaw_to_pcm16 as _decode
from voicecall.domain.ports import TranscriptEvent, TranscriptKind

__all__ = [
    "ToneDecoder",
    "ToneSynthesizer",
    "ToneTranscriber",
    "render_tones",
]

_LOW: Final = [300 + 100 * i for i in range(16)]
_HIGH: Final = [2000 + 100 * i for i in range(16)]
_BIN_HZ: Final = SAMPLE_RATE / FRAME_BYTES  # 50 Hz per FFT bin of one frame
_LOW_BINS: Final = np.array([round(f / _BIN_HZ) for f in _LOW])
_HIGH_BINS: Final = np.array([round(f / _BIN_HZ) for f in _HIGH])
_AMPLITUDE: Final = 6000.0
_SILENCE_RMS: Final = 200.0
_SILENT_FRAME: Final = pcm16_to_ulaw(np.zeros(FRAME_BYTES, dtype=np.int16))
_FRAMES_PER_S: Final = 1000 // FRAME_MS


def _tone_frame(symbol: int) -> bytes:
    t = np.arange(FRAME_BYTES) / SAMPLE_RATE
    low, high = _LOW[symbol >> 4], _HIGH[symbol & 0x0F]
    wave = _AMPLITUDE * (np.sin(2 * math.pi * low * t) + np.sin(2 * math.pi * high * t))
    return pcm16_to_ulaw(wave.astype(np.int16))


_TONES: Final = [_tone_frame(symbol) for symbol in range(256)]


def render_tones(text: str, chars_per_sec: float = 15.0) -> bytes:
    """``text`` as tone-coded μ-law audio: whole 20 ms frames, about ``len / cps`` seconds."""
    data = text.strip().encode("utf-8")
    if not data:
        return b""
    per_symbol = max(_FRAMES_PER_S / chars_per_sec, 2.0)
    out = bytearray()
    for index, symbol in enumerate(data):
        count = max(round((index + 1) * per_symbol) - round(index * per_symbol), 2)
        out += _SILENT_FRAME
        out += _TONES[symbol] * (count - 1)
    return bytes(out)


EventHandler = Callable[[TranscriptEvent], Awaitable[None] | None]


class ToneDecoder:
    """Reads tone-coded audio back to text, frame by frame (pure computation, no I/O).

    ``feed`` returns the events the new audio completed: ``speech_started`` at the first tone
    frame, ``partial`` after each word, ``final`` once ``silence_ms`` of silence follows.
    Event times are milliseconds of audio since the decoder began.
    """

    def __init__(self, silence_ms: int = 800) -> None:
        self.silence_frames = max(silence_ms // FRAME_MS, 2)
        self._pending = b""
        self._frame_index = 0
        self._votes: list[int] = []
        self._text = bytearray()
        self._silent_run = 0
        self._started_ms: int | None = None

    def feed(self, ulaw: bytes) -> list[TranscriptEvent]:
        data = self._pending + ulaw
        whole = len(data) - len(data) % FRAME_BYTES
        self._pending = data[whole:]
        events: list[TranscriptEvent] = []
        for offset in range(0, whole, FRAME_BYTES):
            events.extend(self._frame(data[offset : offset + FRAME_BYTES]))
            self._frame_index += 1
        return events

    def _frame(self, frame: bytes) -> list[TranscriptEvent]:
        samples = _decode(frame).astype(np.float64)
        now_ms = self._frame_index * FRAME_MS
        if math.sqrt(float(np.mean(samples * samples))) < _SILENCE_RMS:
            events = self._close_symbol()
            self._silent_run += 1
            if self._started_ms is not None and self._silent_run >= self.silence_frames:
                text = self._text.decode("utf-8", "replace").strip()
                events.append(
                    TranscriptEvent(TranscriptKind.FINAL, text, started_ms=self._started_ms)
                )
                self._text.clear()
                self._started_ms = None
            return events
        spectrum = np.abs(np.fft.rfft(samples))
        low = int(np.argmax(spectrum[_LOW_BINS]))
        high = int(np.argmax(spectrum[_HIGH_BINS]))
        self._votes.append((low << 4) | high)
        self._silent_run = 0
        if self._started_ms is None:
            self._started_ms = now_ms
            return [TranscriptEvent(TranscriptKind.SPEECH_STARTED, "", started_ms=now_ms)]
        return []

    def _close_symbol(self) -> list[TranscriptEvent]:
        if not self._votes:
            return []
        symbol = max(set(self._votes), key=self._votes.count)
        self._votes.clear()
        self._text.append(symbol)
        if symbol == 0x20 and self._started_ms is not None:
            text = self._text.decode("utf-8", "replace").strip()
            return [TranscriptEvent(TranscriptKind.PARTIAL, text, started_ms=self._started_ms)]
        return []


class ToneSynthesizer:
    """OFFLINE TEST DOUBLE of the ``SpeechSynthesizer`` port: text → tone-coded μ-law.

    Args:
        chars_per_sec: how fast the tones "speak" (``mock.speechCharsPerSec``).
        chunk_frames: frames per yielded chunk, as a streaming TTS would hand audio over.
    """

    name = "offline-tones"

    def __init__(self, chars_per_sec: float = 15.0, chunk_frames: int = 10) -> None:
        self.chars_per_sec = chars_per_sec
        self.chunk_bytes = chunk_frames * FRAME_BYTES

    async def synthesize(self, text: str, voice: str | None) -> AsyncIterator[bytes]:
        audio = render_tones(text, self.chars_per_sec)
        for offset in range(0, len(audio), self.chunk_bytes):
            yield audio[offset : offset + self.chunk_bytes]


class _ToneSession:
    def __init__(self, decoder: ToneDecoder, on_event: EventHandler) -> None:
        self._decoder = decoder
        self._on_event = on_event
        self.closed = False

    async def send(self, ulaw: bytes) -> None:
        if self.closed:
            return
        for event in self._decoder.feed(ulaw):
            result = self._on_event(event)
            if result is not None:
                await result

    async def aclose(self) -> None:
        self.closed = True


class ToneTranscriber:
    """OFFLINE TEST DOUBLE of the ``Transcriber`` port: reads back ``render_tones`` audio.

    Args:
        silence_ms: the pause that ends an utterance (``streaming.silenceDurationMs``).
    """

    name = "offline-tones"

    def __init__(self, silence_ms: int = 800) -> None:
        self.silence_ms = silence_ms

    async def open(self, call_id: str, on_event: EventHandler) -> _ToneSession:
        return _ToneSession(ToneDecoder(self.silence_ms), on_event)
