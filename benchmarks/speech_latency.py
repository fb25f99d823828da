"""Benchmark: the speech pipeline's own latency, with the fakes answering instantly.

Two figures, each over ``--runs`` utterances, through the real adapters and ``MediaService``:

* **TTS byte → first frame**: from the moment the first byte of the OpenAI speech response
  reaches our HTTP client (the loopback fake in ``voicecall.testing.fake_openai``) to the first
  media message handed to the carrier's socket: resampling 24 → 8 kHz, μ-law, framing, pacing
  and the dialect. Target p99 < 5 ms.
* **caller's end of speech → first frame of the reply**: from the moment the realtime
  transcriber's ``…transcription.completed`` event reaches us to the first media message of the
  bot's reply, the responder excluded (the reply text is queued the instant the final
  transcript is applied). Includes the TTS request to the fake. Target p99 < 20 ms.

Run: ``.venv/bin/python benchmarks/speech_latency.py [--runs 200]``. It prints figures; it
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voicecall.adapters.clock import SystemClock
from voicecall.adapters.speech.offline import render_tones
from voicecall.adapters.speech.openai_realtime import (
    OpenAiRealtimeTranscriber,
    RealtimeStt,
    realtime_url,
)
from voicecall.adapters.speech.openai_tts import OpenAiSynthesizer, OpenAiTts
from voicecall.adapters.telephony.mock_stream import MockStreamDialect
from voicecall.domain.events import CallEvent, CallSpeech
from voicecall.domain.ports import TranscriptEvent, TranscriptKind
from voicecall.domain.speech import Playback, SpokenLine
from voicecall.services.media import MediaService
from voicecall.testing.fake_openai import FakeOpenAI, serve_fake_openai


class _FirstByteStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, marks: list[float]) -> None:
        self.inner = inner
        self.marks = marks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        first = True
        async for chunk in self.inner:
            if first and chunk:
                self.marks.append(time.perf_counter())
                first = False
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class _TimedTransport(httpx.AsyncBaseTransport):
    """Notes when the first body byte of each response arrives."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.first_bytes: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _FirstByteStream(response.stream, self.first_bytes)
        return response


class _Socket:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.media_at: list[float] = []
        self.marks: list[str] = []
        self.marked: asyncio.Queue[str] = asyncio.Queue()

    async def send_text(self, text: str) -> None:
        now = time.perf_counter()
        message = json.loads(text)
        if message["event"] == "media":
            self.media_at.append(now)
        elif message["event"] == "mark":
            self.marks.append(message["name"])
            self.marked.put_nowait(message["name"])
            # The carrier plays it at once: echo the mark so the line counts as heard.
            self.inbox.put_nowait(json.dumps({"event": "mark", "name": message["name"]}))

    async def receive_text(self) -> str | None:
        return await self.inbox.get()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.inbox.put_nowait(None)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _report(name: str, values_ms: list[float], target: float) -> None:
    print(
        f"{name}: n={len(values_ms)} median={statistics.median(values_ms):.2f} ms "
        f"p90={_pct(values_ms, 0.9):.2f} ms p99={_pct(values_ms, 0.99):.2f} ms "
        f"max={max(values_ms):.2f} ms (target p99 < {target:g} ms)"
    )


async def run(runs: int) -> None:
    async with serve_fake_openai(FakeOpenAI(chunk_ms=100)) as (fake, base):
        transport = _TimedTransport()
        http = httpx.AsyncClient(transport=transport, timeout=10)
        synth = OpenAiSynthesizer(OpenAiTts(api_key="k", base_url=base), http_client=http)
        finals: list[float] = []
        transcriber = OpenAiRealtimeTranscriber(
            RealtimeStt(api_key="k", silence_duration_ms=200, url=realtime_url(base)),
            SystemClock(),
        )
        real_open = transcriber.open

        async def timed_open(call_id: str, on_event: Any) -> Any:
            async def wrapped(event: TranscriptEvent) -> None:
                if event.kind is TranscriptKind.FINAL:
                    finals.append(time.perf_counter())
                result = on_event(event)
                if result is not None:
                    await result

            return await real_open(call_id, wrapped)

        transcriber.open = timed_open  # type: ignore[method-assign]
        # A long lead: the measurement is of the pipeline, not of real-time pacing.
        media = MediaService(SystemClock(), synth, transcriber, b"b" * 32, lead_ms=1e9)
        replies: asyncio.Queue[float] = asyncio.Queue()
        counter = 0

        async def sink(events: list[CallEvent]) -> None:
            nonlocal counter
            for event in events:
                if isinstance(event, CallSpeech) and event.is_final:
                    counter += 1
                    line = SpokenLine(f"reply-{counter}", "Sure, noon works for me.")
                    await media.play("call-1", Playback((line,)))
                    replies.put_nowait(time.perf_counter())

        async def is_live(call_id: str) -> bool:
            return True

        media.bind(sink, is_live)  # type: ignore[arg-type]
        token = media.expect("call-1")
        socket = _Socket()
        task = asyncio.ensure_future(media.run(socket, MockStreamDialect()))
        start = {"event": "start", "streamId": "S1", "callId": "c1", "token": token}
        socket.inbox.put_nowait(json.dumps(start))

        # 1. TTS first byte → first frame on the stream.
        tts_ms: list[float] = []
        for i in range(runs):
            sent_before = len(socket.media_at)
            first_before = len(transport.first_bytes)
            await media.play("call-1", Playback((SpokenLine(f"u{i}", f"Line number {i}."),)))
            await asyncio.wait_for(socket.marked.get(), 10)
            first_frame = socket.media_at[sent_before]
            tts_ms.append((first_frame - transport.first_bytes[first_before]) * 1000)

        # 2. The caller's end of speech (the fake STT's final) → the reply's first frame.
        turn_ms: list[float] = []
        caller = render_tones("Lunch at noon?") + b"\xff" * 2400
        pieces = [caller[i : i + 800] for i in range(0, len(caller), 800)]
        for _ in range(max(runs // 4, 20)):
            sent_before = len(socket.media_at)
            for piece in pieces:
                socket.inbox.put_nowait(
                    json.dumps({"event": "media", "payload": base64.b64encode(piece).decode()})
                )
                await asyncio.sleep(0.006)  # under the 200 messages a second a carrier may send
            await asyncio.wait_for(replies.get(), 10)
            await asyncio.wait_for(socket.marked.get(), 10)
            turn_ms.append((socket.media_at[sent_before] - finals[-1]) * 1000)

        await media.end_call("call-1")
        await asyncio.gather(task, return_exceptions=True)
        await synth.aclose()
        print(
            f"fake OpenAI: {len(fake.speech_requests)} speech requests, "
            f"{fake.connections} realtime session(s)"
        )
    _report("TTS first byte -> first frame on the stream", tts_ms, 5)
    _report("caller's final transcript -> first frame of the reply", turn_ms, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.runs))


if __name__ == "__main__":
    main()
