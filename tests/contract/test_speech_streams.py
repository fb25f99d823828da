"""Streamed calls with the real speech adapters, through every carrier simulator.

The voice is the OpenAI TTS adapter against the loopback fake OpenAI (or ElevenLabs through
respx); the ear is the realtime transcription adapter against the fake realtime server. Both
fakes "speak" the offline tone code, so the simulated handset can tell what it heard and the
fake transcriber can tell what the handset said.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from voicecall.adapters.clock import SystemClock
from voicecall.adapters.speech.elevenlabs_tts import ElevenLabsSynthesizer, ElevenLabsTts
from voicecall.adapters.speech.offline import render_tones
from voicecall.adapters.speech.openai_realtime import (
    OpenAiRealtimeTranscriber,
    RealtimeStt,
    realtime_url,
)
from voicecall.adapters.speech.openai_tts import OpenAiSynthesizer, OpenAiTts
from voicecall.domain.call import Speaker
from voicecall.domain.ports import SpeechSynthesizer
from voicecall.domain.speech import UtteranceState
from voicecall.testing.fake_openai import FakeOpenAI, serve_fake_openai

from .conftest import CALLEE, HARNESSES, REPLIES, STREAM_ADAPTERS, StreamHarness
from .test_media_contract import StreamLine, open_stream_line

# The offline mock always speaks with the tone doubles (SPEC §6); the simulators take keys.
SIMULATED_CARRIERS = [name for name in STREAM_ADAPTERS if name != "mock"]


@pytest.fixture(params=SIMULATED_CARRIERS)
def carrier(request: pytest.FixtureRequest, tmp_path: Path) -> StreamHarness:
    harness: StreamHarness = HARNESSES[request.param](tmp_path)
    return harness


@pytest.fixture
async def fake_openai() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    async with serve_fake_openai(FakeOpenAI(api_key="sk-fake")) as served:
        yield served


def _transcriber(base: str, language: str = "en-US") -> OpenAiRealtimeTranscriber:
    settings = RealtimeStt(
        api_key="sk-fake", language=language, silence_duration_ms=300, url=realtime_url(base)
    )
    return OpenAiRealtimeTranscriber(settings, SystemClock())


async def _conversation(line: StreamLine, opening: str) -> None:
    call = await line.service.initiate(CALLEE, opening, "conversation")
    handset = await line.handset(call.call_id)

    async def opening_answered() -> bool:
        said = [t.text for t in (await line.call(call.call_id)).transcript]
        return REPLIES[0] in said

    await line.wait(opening_answered, within=30)
    # The caller heard the synthesised line whole, for as long as its audio lasts.
    heard = handset.heard[0]
    assert heard.whole
    # The handset reads the tone code back; after 24 kHz and back some 20 ms gaps between
    # repeated symbols blur, so the words come back nearly (not exactly) as sent.
    assert difflib.SequenceMatcher(None, heard.text, opening).ratio() > 0.75, heard.text
    # Only the opening has been played so far: the frames the handset played are its audio,
    # as long as the voice made it (the fake speaks at 15 characters a second).
    expected = len(render_tones(opening)) // 160
    assert expected - 2 <= handset.frames_played <= expected + 2, (handset.frames_played, expected)
    reply = await asyncio.wait_for(line.service.continue_call(call.call_id, "Lunch at noon?"), 30)
    assert reply == REPLIES[1]
    after = await line.call(call.call_id)
    assert [t.text for t in after.transcript if t.speaker is Speaker.USER][:2] == list(REPLIES[:2])
    assert all(u.state is UtteranceState.PLAYED for u in list(after.speech)[:2])
    await line.service.end(call.call_id)


async def _run(
    harness: StreamHarness,
    tmp_path: Path,
    synthesizer: SpeechSynthesizer,
    transcriber: OpenAiRealtimeTranscriber,
    opening: str,
    extra: dict[str, Any] | None = None,
) -> None:
    line = await open_stream_line(
        harness, tmp_path, synthesizer=synthesizer, transcriber=transcriber, extra_config=extra
    )
    try:
        await _conversation(line, opening)
    finally:
        await line.close()


@pytest.mark.timeout(120)
async def test_openai_voice_and_realtime_ear_over_each_carrier(
    carrier: StreamHarness,
    tmp_path: Path,
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    fake, base = fake_openai
    synthesizer = OpenAiSynthesizer(OpenAiTts(api_key="sk-fake", base_url=base))
    await _run(carrier, tmp_path, synthesizer, _transcriber(base), "Hello there.")
    await synthesizer.aclose()
    assert [r["input"] for r in fake.speech_requests][:2] == ["Hello there.", "Lunch at noon?"]
    assert fake.sessions and fake.sessions[0]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert fake.appended_bytes > 0


@pytest.mark.timeout(120)
async def test_a_vietnamese_line_end_to_end(
    carrier: StreamHarness,
    tmp_path: Path,
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    fake, base = fake_openai
    synthesizer = OpenAiSynthesizer(OpenAiTts(api_key="sk-fake", base_url=base))
    opening = "Xin chào, bạn khỏe không?"
    await _run(
        carrier,
        tmp_path,
        synthesizer,
        _transcriber(base, "vi-VN"),
        opening,
        {"language": "vi-VN"},
    )
    await synthesizer.aclose()
    assert fake.speech_requests[0]["input"] == opening
    assert fake.sessions[0]["audio"]["input"]["transcription"]["language"] == "vi"


@pytest.mark.timeout(120)
async def test_elevenlabs_voice_over_each_carrier(
    carrier: StreamHarness,
    tmp_path: Path,
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    _, base = fake_openai
    texts: list[str] = []

    def speak(request: httpx.Request) -> httpx.Response:
        import json

        text = json.loads(request.content)["text"]
        texts.append(text)
        return httpx.Response(200, content=render_tones(text))

    with respx.mock(assert_all_called=False) as router:
        router.post(url__startswith="https://el.test/v1/text-to-speech/").mock(side_effect=speak)
        router.route().pass_through()
        synthesizer = ElevenLabsSynthesizer(
            ElevenLabsTts(api_key="el", voice_id="v1", base_url="https://el.test")
        )
        await _run(carrier, tmp_path, synthesizer, _transcriber(base), "Hello there.")
    assert texts[:2] == ["Hello there.", "Lunch at noon?"]


@pytest.mark.parametrize("status", [401, 429, 500])
@pytest.mark.timeout(120)
async def test_a_voice_that_fails_mid_call_goes_native_and_is_heard(
    carrier: StreamHarness,
    tmp_path: Path,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serve_fake_openai(FakeOpenAI(fail_with=[status])) as (fake, base):
        synthesizer = OpenAiSynthesizer(OpenAiTts(api_key="k", base_url=base))
        line = await open_stream_line(
            carrier, tmp_path, synthesizer=synthesizer, transcriber=_transcriber(base)
        )
        try:
            call = await line.service.initiate(CALLEE, "Hello there.", "conversation")

            async def opening_played() -> bool:
                speech = list((await line.call(call.call_id)).speech)
                return bool(speech) and speech[0].state is UtteranceState.PLAYED

            await line.wait(opening_played, within=30)
            reply = await asyncio.wait_for(
                line.service.continue_call(call.call_id, "Lunch at noon?"), 30
            )
            assert reply  # the carrier's own recogniser heard the caller
            after = await line.call(call.call_id)
            assert [t.text for t in after.transcript if t.speaker is Speaker.BOT][:2] == [
                "Hello there.",
                "Lunch at noon?",
            ]
            await line.service.end(call.call_id)
        finally:
            await line.close()
            await synthesizer.aclose()
    assert len(fake.speech_requests) == 1  # after the failure no stream voice is asked again
    assert f"HTTP {status}" in caplog.text
    assert "going on with the carrier's native voice" in caplog.text
