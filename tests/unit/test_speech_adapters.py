"""Wire tests of the speech adapters: OpenAI TTS against the loopback fake, ElevenLabs through
respx, the phrase cache, and the realtime transcriber against the fake realtime server."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import httpx
import numpy as np
import pytest
import respx

from voicecall.adapters.audio import FRAME_BYTES, ulaw_to_pcm16
from voicecall.adapters.clock import SystemClock
from voicecall.adapters.speech.elevenlabs_tts import ElevenLabsSynthesizer, ElevenLabsTts
from voicecall.adapters.speech.offline import render_tones
from voicecall.adapters.speech.openai_realtime import (
    OpenAiRealtimeTranscriber,
    RealtimeStt,
    realtime_url,
)
from voicecall.adapters.speech.openai_tts import OpenAiSynthesizer, OpenAiTts
from voicecall.adapters.speech.phrase_cache import CachedSynthesizer
from voicecall.adapters.websocket import WsConnection
from voicecall.domain.errors import TransientError, VoiceCallError
from voicecall.domain.ports import TranscriptEvent, TranscriptKind
from voicecall.testing.asgi import asgi_websocket_connector
from voicecall.testing.fake_openai import FakeOpenAI, serve_fake_openai


async def _collect(synth: object, text: str, voice: str | None = None) -> list[bytes]:
    return [chunk async for chunk in synth.synthesize(text, voice)]  # type: ignore[attr-defined]


def _rms(samples: np.ndarray) -> float:
    data = samples.astype(np.float64)
    return float(np.sqrt(np.mean(data * data)))


# ------------------------------------------------------------------ OpenAI TTS


async def test_openai_request_shape_and_key() -> None:
    async with serve_fake_openai(FakeOpenAI(api_key="sk-test")) as (fake, base):
        synth = OpenAiSynthesizer(
            OpenAiTts(api_key="sk-test", voice="nova", instructions="Calm.", base_url=base)
        )
        audio = b"".join(await _collect(synth, "Hello there"))
        await synth.aclose()
    assert fake.speech_requests == [
        {
            "input": "Hello there",
            "model": "gpt-4o-mini-tts",
            "voice": "nova",
            "response_format": "pcm",
            "instructions": "Calm.",
        }
    ]
    assert fake.speech_headers[0]["authorization"] == "Bearer sk-test"
    # The fake speaks the tone code at 15 chars/s: the μ-law out lasts as long, to a frame.
    expected = len(render_tones("Hello there"))
    assert abs(len(audio) - expected) <= FRAME_BYTES


async def test_openai_call_voice_overrides_and_old_models_get_no_instructions() -> None:
    async with serve_fake_openai() as (fake, base):
        synth = OpenAiSynthesizer(
            OpenAiTts(api_key="k", model="tts-1", instructions="Calm.", speed=1.2, base_url=base)
        )
        await _collect(synth, "Hi", "onyx")
        await synth.aclose()
    request = fake.speech_requests[0]
    assert (request["model"], request["voice"], request["speed"]) == ("tts-1", "onyx", 1.2)
    assert "instructions" not in request


async def test_openai_resampling_keeps_length_and_level_of_a_sine_sweep() -> None:
    # A 300 Hz → 3 kHz sweep at 24 kHz, one second: 8000 samples at the carrier's rate out.
    t = np.arange(24000) / 24000
    sweep = (8000 * np.sin(2 * np.pi * (300 * t + (2700 / 2) * t * t))).astype("<i2")

    class SweepFake(FakeOpenAI):
        async def _speech(self, scope, receive, send):  # type: ignore[no-untyped-def]
            from voicecall.testing.asgi import read_request

            await read_request(scope, receive)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raw = sweep.tobytes()
            for i in range(0, len(raw), 4801):  # odd pieces split samples in two
                await send(
                    {"type": "http.response.body", "body": raw[i : i + 4801], "more_body": True}
                )
            await send({"type": "http.response.body", "body": b""})

    async with serve_fake_openai(SweepFake()) as (_, base):
        synth = OpenAiSynthesizer(OpenAiTts(api_key="k", base_url=base))
        chunks = await _collect(synth, "sweep")
        await synth.aclose()
    audio = b"".join(chunks)
    assert len(chunks) > 1
    assert abs(len(audio) - 8000) <= 16
    out = ulaw_to_pcm16(audio)
    # Same level (within 1 dB) in the band the carrier carries, once the filter has settled.
    level_in, level_out = _rms(sweep[2400:-2400]), _rms(out[800:-800])
    assert abs(20 * np.log10(level_out / level_in)) < 1.0


async def test_openai_first_audio_arrives_before_the_synthesis_ends() -> None:
    async with serve_fake_openai(FakeOpenAI(hold_last=True)) as (fake, base):
        synth = OpenAiSynthesizer(OpenAiTts(api_key="k", base_url=base))
        stream = synth.synthesize("A rather long sentence to speak", None)
        first = await asyncio.wait_for(stream.__anext__(), 10)
        assert len(first) > 0
        assert not fake._release.is_set()  # the last chunk is still held back by the server
        fake.release()
        rest = [chunk async for chunk in stream]
        await synth.aclose()
    assert rest


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, VoiceCallError), (429, TransientError), (500, TransientError), (503, TransientError)],
)
async def test_openai_failures_are_typed(status: int, error: type[Exception]) -> None:
    async with serve_fake_openai(FakeOpenAI(fail_with=[status])) as (_, base):
        synth = OpenAiSynthesizer(OpenAiTts(api_key="k", base_url=base))
        with pytest.raises(error, match=f"HTTP {status}") as caught:
            await _collect(synth, "Hi")
        await synth.aclose()
    if status == 401:
        assert not isinstance(caught.value, TransientError)


async def test_openai_wrong_key_is_a_401() -> None:
    async with serve_fake_openai(FakeOpenAI(api_key="right")) as (_, base):
        synth = OpenAiSynthesizer(OpenAiTts(api_key="wrong", base_url=base))
        with pytest.raises(VoiceCallError, match="HTTP 401"):
            await _collect(synth, "Hi")
        await synth.aclose()


async def test_openai_timeout_is_transient() -> None:
    async with serve_fake_openai(FakeOpenAI(stall_s=2.0)) as (_, base):
        synth = OpenAiSynthesizer(OpenAiTts(api_key="k", base_url=base, timeout_s=0.2))
        with pytest.raises(TransientError, match="timed out"):
            await _collect(synth, "Hi")
        await synth.aclose()


async def test_openai_base_url_follows_openai_base_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serve_fake_openai() as (fake, base):
        monkeypatch.setenv("OPENAI_BASE_URL", base)
        synth = OpenAiSynthesizer(OpenAiTts(api_key="k"))
        await _collect(synth, "Hi")
        await synth.aclose()
    assert len(fake.speech_requests) == 1


# ------------------------------------------------------------------ ElevenLabs

EL_BASE = "https://el.example"


def _eleven(**kw: object) -> ElevenLabsSynthesizer:
    settings = ElevenLabsTts(api_key="el-key", voice_id="v123", base_url=EL_BASE, **kw)  # type: ignore[arg-type]
    return ElevenLabsSynthesizer(settings)


@respx.mock
async def test_elevenlabs_request_shape() -> None:
    audio = render_tones("Xin chào")
    route = respx.post(f"{EL_BASE}/v1/text-to-speech/v123/stream").mock(
        return_value=httpx.Response(200, content=audio)
    )
    synth = _eleven(
        model_id="eleven_turbo_v2_5",
        language_code="vi",
        optimize_streaming_latency=3,
        voice_settings={"stability": 0.4, "similarity_boost": 0.8},
    )
    out = b"".join(await _collect(synth, "Xin chào"))
    assert out == audio  # ulaw_8000 goes out untouched
    request = route.calls.last.request
    assert request.headers["xi-api-key"] == "el-key"
    assert request.url.params["output_format"] == "ulaw_8000"
    assert request.url.params["optimize_streaming_latency"] == "3"
    body = json.loads(request.content)
    assert body["text"] == "Xin chào"
    assert body["model_id"] == "eleven_turbo_v2_5"
    assert body["language_code"] == "vi"
    assert body["voice_settings"]["stability"] == 0.4
    assert body["voice_settings"]["similarity_boost"] == 0.8


@pytest.mark.parametrize(
    ("status", "error"), [(401, VoiceCallError), (429, TransientError), (502, TransientError)]
)
@respx.mock
async def test_elevenlabs_failures_are_typed(status: int, error: type[Exception]) -> None:
    respx.post(f"{EL_BASE}/v1/text-to-speech/v123/stream").mock(
        return_value=httpx.Response(status, json={"detail": {"status": "x", "message": "no"}})
    )
    with pytest.raises(error, match=f"HTTP {status}") as caught:
        await _collect(_eleven(), "Hi")
    if status == 401:
        assert not isinstance(caught.value, TransientError)


@respx.mock
async def test_elevenlabs_timeout_is_transient() -> None:
    respx.post(f"{EL_BASE}/v1/text-to-speech/v123/stream").mock(
        side_effect=httpx.ReadTimeout("slow")
    )
    with pytest.raises(TransientError, match="timed out"):
        await _collect(_eleven(), "Hi")


# ------------------------------------------------------------------ phrase cache


class _Counting:
    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def cache_key(self, voice: str | None) -> dict[str, object]:
        return {"provider": "counting", "voice": voice}

    async def synthesize(self, text: str, voice: str | None):  # type: ignore[no-untyped-def]
        self.calls += 1
        audio = render_tones(text)
        for i in range(0, len(audio), 800):
            yield audio[i : i + 800]


async def test_phrase_cache_plays_a_repeated_line_without_a_request(tmp_path: Path) -> None:
    inner = _Counting()
    cache = CachedSynthesizer(inner, tmp_path / "cache", language="en-US")
    first = b"".join(await _collect(cache, "Hello! How can I help you today?"))
    second = b"".join(await _collect(cache, "Hello! How can I help you today?"))
    assert first == second and inner.calls == 1
    await _collect(cache, "Hello! How can I help you today?", "nova")  # another voice
    assert inner.calls == 2
    other = CachedSynthesizer(inner, tmp_path / "cache", language="vi-VN")
    await _collect(other, "Hello! How can I help you today?")  # another language
    assert inner.calls == 3
    assert stat.S_IMODE(os.stat(tmp_path / "cache").st_mode) == 0o700
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 3
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def _age(path: Path, mtime: float) -> None:
    os.utime(path, (mtime, mtime))  # older than everything written since


def _total_size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.glob("*.ulaw"))


async def test_phrase_cache_is_bounded(tmp_path: Path) -> None:
    inner = _Counting()
    size = len(render_tones("line 0"))
    cache = CachedSynthesizer(inner, tmp_path, max_bytes=size * 3)
    for i in range(6):
        await _collect(cache, f"line {i}")
        _age(tmp_path / f"{cache.key(f'line {i}', None)}.ulaw", i)
    remaining = _total_size(tmp_path)
    assert remaining <= size * 3
    assert (tmp_path / f"{cache.key('line 5', None)}.ulaw").exists()
    assert not (tmp_path / f"{cache.key('line 0', None)}.ulaw").exists()


# ------------------------------------------------------------------ realtime transcription


def _connector(fake: FakeOpenAI, seen: list[Mapping[str, str]]):  # type: ignore[no-untyped-def]
    connect = asgi_websocket_connector(fake)

    async def open_socket(url: str, headers: Mapping[str, str]) -> WsConnection:
        seen.append(dict(headers))
        return await connect(url)

    return open_socket


def _speech(text: str) -> bytes:
    return render_tones(text) + b"\xff" * 8000  # a second of silence ends the utterance


async def _feed(session: object, audio: bytes) -> None:
    for i in range(0, len(audio), FRAME_BYTES):
        await session.send(audio[i : i + FRAME_BYTES])  # type: ignore[attr-defined]
        await asyncio.sleep(0)


async def _wait_for(events: list[TranscriptEvent], count: int) -> None:
    for _ in range(2000):
        if sum(e.kind is TranscriptKind.FINAL for e in events) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no final transcript: {events}")


async def test_realtime_session_config_partials_and_final() -> None:
    fake, seen = FakeOpenAI(), []
    settings = RealtimeStt(
        api_key="sk-stt", language="vi-VN", vad_threshold=0.3, silence_duration_ms=400
    )
    transcriber = OpenAiRealtimeTranscriber(settings, SystemClock(), _connector(fake, seen))
    events: list[TranscriptEvent] = []
    session = await transcriber.open("call-1", events.append)
    await _feed(session, b"\xff" * 1600 + _speech("good morning to you"))
    await _wait_for(events, 1)
    await session.aclose()
    assert seen == [{"Authorization": "Bearer sk-stt"}]
    assert fake.sessions == [
        {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "vi"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.3,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 400,
                    },
                }
            },
        }
    ]
    kinds = [e.kind for e in events]
    assert kinds[0] is TranscriptKind.SPEECH_STARTED
    # 200 ms of silence first, and the tone code opens each symbol with a 20 ms pause.
    assert events[0].started_ms == 220
    partials = [e.text for e in events if e.kind is TranscriptKind.PARTIAL]
    assert partials == ["good", "good morning", "good morning to"]
    finals = [e for e in events if e.kind is TranscriptKind.FINAL]
    assert [(e.text, e.started_ms) for e in finals] == [("good morning to you", 220)]


async def test_realtime_reconnects_and_loses_no_final(caplog: pytest.LogCaptureFixture) -> None:
    fake, seen = FakeOpenAI(drop_after_commit=1), []
    settings = RealtimeStt(api_key="k", silence_duration_ms=400, backoff_s=(0.01,))
    transcriber = OpenAiRealtimeTranscriber(settings, SystemClock(), _connector(fake, seen))
    events: list[TranscriptEvent] = []
    session = await transcriber.open("call-2", events.append)
    await _feed(session, _speech("first line"))
    await _wait_for(events, 1)
    await _feed(session, _speech("second line"))
    await _wait_for(events, 2)
    await session.aclose()
    finals = [e.text for e in events if e.kind is TranscriptKind.FINAL]
    assert finals == ["first line", "second line"]
    assert fake.connections == 2 and len(seen) == 2
    assert "realtime transcription dropped; reconnecting" in caplog.text
    assert "realtime transcription back" in caplog.text


async def test_realtime_gap_buffer_is_bounded() -> None:
    fake = FakeOpenAI()
    settings = RealtimeStt(api_key="k", max_buffer_ms=1000, backoff_s=(30.0,))
    transcriber = OpenAiRealtimeTranscriber(settings, SystemClock(), _connector(fake, []))
    session = await transcriber.open("call-3", lambda e: None)
    socket = session._socket
    assert socket is not None
    await socket.close()  # the session drops; the reconnect waits its backoff
    for _ in range(100):
        if session._socket is None:
            break
        await asyncio.sleep(0.005)
    await _feed(session, b"\xff" * 16000)  # two seconds during the gap
    assert len(session._kept) == 8000  # one second kept
    assert session.dropped_bytes == 8000
    await session.aclose()


def test_realtime_url_follows_the_base_url() -> None:
    assert realtime_url(None) == "wss://api.openai.com/v1/realtime?intent=transcription"
    assert (
        realtime_url("http://127.0.0.1:9/v1/")
        == "ws://127.0.0.1:9/v1/realtime?intent=transcription"
    )
    assert realtime_url("https://x.test/v1") == "wss://x.test/v1/realtime?intent=transcription"
