"""The audio path: G.711 μ-law against known vectors, resampling, framing, the tone doubles."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from voicecall.adapters.audio import (
    FRAME_BYTES,
    Resampler,
    frames,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)
from voicecall.adapters.speech.offline import ToneDecoder, ToneTranscriber, render_tones
from voicecall.domain.ports import TranscriptKind

# G.711 μ-law reference points (ITU-T G.711 table 2a; codes as transmitted, bits inverted).
KNOWN = [
    (0, 0xFF),
    (32767, 0x80),
    (-32768, 0x00),
    (8, 0xFE),
    (-8, 0x7E),
    (1000, 0xCE),
    (-1000, 0x4E),
]


@pytest.mark.parametrize(("sample", "code"), KNOWN)
def test_encode_known_vectors(sample: int, code: int) -> None:
    assert pcm16_to_ulaw(np.array([sample], dtype=np.int16)) == bytes([code])


@pytest.mark.parametrize(
    ("code", "sample"), [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xCE, 988)]
)
def test_decode_known_vectors(code: int, sample: int) -> None:
    assert int(ulaw_to_pcm16(bytes([code]))[0]) == sample


def test_codec_matches_cpython_audioop_for_every_sample() -> None:
    # audioop is in the standard library up to 3.12: an independent reference for all 65,536
    # inputs and all 256 codes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert pcm16_to_ulaw(every) == audioop.lin2ulaw(every.tobytes(), 2)
    codes = bytes(range(256))
    assert ulaw_to_pcm16(codes).tobytes() == audioop.ulaw2lin(codes, 2)


def test_round_trip_stays_within_the_segment_step() -> None:
    every = np.arange(-32768, 32768, 7, dtype=np.int16)
    back = ulaw_to_pcm16(pcm16_to_ulaw(every)).astype(np.int32)
    error = np.abs(back - every.astype(np.int32))
    # μ-law's step doubles per segment; the largest is 1024, so the error is at most half.
    assert int(error.max()) <= 1024 + 4
    small = np.abs(every.astype(np.int32)) < 100
    assert int(error[small].max()) <= 8  # the first segment's step is 8


def test_bytes_input_is_little_endian_pcm16() -> None:
    samples = np.array([1000, -1000], dtype="<i2")
    assert pcm16_to_ulaw(samples.tobytes()) == bytes([0xCE, 0x4E])


def test_frames_are_160_bytes_and_padded_with_silence() -> None:
    cut = frames(b"\x01" * 400)
    assert [len(f) for f in cut] == [FRAME_BYTES] * 3
    assert cut[-1][80:] == b"\xff" * 80
    assert frames(b"\x01" * 400, pad=False)[-1] == b"\x01" * 80


def test_resampling_a_tone_keeps_its_pitch_level_and_length() -> None:
    rate_in, seconds, hz = 24000, 1.0, 440.0
    t = np.arange(int(rate_in * seconds)) / rate_in
    tone = (10000 * np.sin(2 * math.pi * hz * t)).astype("<i2").tobytes()
    resampler = Resampler(rate_in, 8000)
    chunks = [resampler.feed(tone[i : i + 4801]) for i in range(0, len(tone), 4801)]
    out = np.concatenate([*chunks, resampler.feed(b"", last=True)]).astype(np.float64)
    assert abs(len(out) - 8000) <= 2
    steady = out[400:-400]
    assert 10000 / math.sqrt(2) * 0.95 < math.sqrt(float(np.mean(steady**2))) < 10000 * 0.75
    spectrum = np.abs(np.fft.rfft(steady))
    peak_hz = np.argmax(spectrum) * 8000 / len(steady)
    assert abs(peak_hz - hz) < 2


def test_a_sine_sweep_survives_resampling_to_8k_without_aliasing() -> None:
    rate_in = 24000
    t = np.arange(rate_in) / rate_in
    sweep = (8000 * np.sin(2 * math.pi * (200 * t + 1700 * t * t))).astype("<i2")  # 200→3600 Hz
    out = Resampler(rate_in, 8000).feed(sweep.tobytes(), last=True).astype(np.float64)
    assert abs(len(out) - 8000) <= 2
    # The sweep stays below 4 kHz, so its level survives; no energy folds back as noise.
    level = math.sqrt(float(np.mean(out[200:-200] ** 2)))
    assert 8000 / math.sqrt(2) * 0.9 < level < 8000 / math.sqrt(2) * 1.1


# ----------------------------------------------------------------------------- tone doubles


@pytest.mark.parametrize(
    "text",
    [
        "Hello there.",
        "Noon works.",
        "Aaa bbb... 1001 balloons!",
        "Xin chào, tôi có thể giúp gì?",  # UTF-8 bytes: Vietnamese too
    ],
)
def test_tones_read_back_to_the_same_text(text: str) -> None:
    audio = render_tones(text, 15.0) + b"\xff" * FRAME_BYTES * 50
    events = ToneDecoder(silence_ms=400).feed(audio)
    assert [e.kind for e in events if e.kind is not TranscriptKind.PARTIAL] == [
        TranscriptKind.SPEECH_STARTED,
        TranscriptKind.FINAL,
    ]
    assert events[-1].text == text
    assert events[0].started_ms == FRAME_BYTES // 8 * 1  # after the first symbol's gap frame


def test_tones_take_the_time_the_text_takes_to_say() -> None:
    text = "x" * 45
    seconds = len(render_tones(text, 15.0)) / 8000
    assert seconds == pytest.approx(3.0, abs=0.02)
    # Too fast for two frames a symbol: the code slows down rather than break.
    assert len(render_tones("ab", 1000.0)) == 4 * FRAME_BYTES


def test_the_decoder_takes_audio_in_any_chunking() -> None:
    audio = render_tones("split me anywhere", 15.0) + b"\xff" * FRAME_BYTES * 50
    decoder = ToneDecoder(silence_ms=400)
    events = []
    for i in range(0, len(audio), 37):
        events.extend(decoder.feed(audio[i : i + 37]))
    finals = [e.text for e in events if e.kind is TranscriptKind.FINAL]
    partials = [e.text for e in events if e.kind is TranscriptKind.PARTIAL]
    assert finals == ["split me anywhere"]
    assert partials == ["split", "split me"]


def test_two_utterances_with_a_pause_are_two_finals() -> None:
    gap = b"\xff" * FRAME_BYTES * 30
    audio = render_tones("first", 15.0) + gap + render_tones("second", 15.0) + gap
    events = ToneDecoder(silence_ms=400).feed(audio)
    finals = [(e.text, e.started_ms) for e in events if e.kind is TranscriptKind.FINAL]
    assert [text for text, _ in finals] == ["first", "second"]
    assert finals[1][1] is not None and finals[0][1] is not None
    assert finals[1][1] > finals[0][1] + 600


async def test_the_transcriber_session_hands_events_to_the_handler() -> None:
    seen = []
    session = await ToneTranscriber(silence_ms=200).open("call-1", seen.append)
    await session.send(render_tones("ok then", 15.0) + b"\xff" * FRAME_BYTES * 20)
    await session.aclose()
    await session.send(render_tones("ignored", 15.0) + b"\xff" * FRAME_BYTES * 20)
    assert [e.text for e in seen if e.kind is TranscriptKind.FINAL] == ["ok then"]
