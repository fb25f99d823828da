"""A loopback stand-in for the two OpenAI endpoints calls use: streaming TTS and realtime STT.

FOR TESTS, DEMOS AND BENCHMARKS. It is an ASGI app; ``serve_fake_openai`` runs it with uvicorn
on a free loopback port and gives the base URL to put in ``OPENAI_BASE_URL`` /
``tts.openai.baseUrl``.

* ``POST /v1/audio/speech`` answers like OpenAI's speech endpoint with ``response_format:
  "pcm"``: raw 24 kHz signed 16-bit mono, sent as a chunked body in ``chunk_ms`` pieces. The
  "voice" is the offline tone code of ``voicecall.adapters.speech.offline`` (``render_tones``
  at ``chars_per_sec``), upsampled to 24 kHz, so the length of the audio is known in advance.
  ``fail_with`` makes the next requests fail with the given HTTP statuses (OpenAI's error body
  shape); ``stall_s`` holds the answer back (a timeout); ``hold_last`` keeps the final chunk
  until ``release()`` (to show that the first audio travels before synthesis ends).
* ``/v1/realtime?intent=transcription`` is a WebSocket speaking the realtime transcription
  events (see ``voicecall.adapters.speech.openai_realtime``): it answers ``session.created``
  and ``session.updated``, "recognises" the tone code in ``input_audio_buffer.append`` audio
  with ``ToneDecoder`` (its silence is the session's ``silence_duration_ms``), and reports
  ``input_audio_buffer.speech_started``, ``conversation.item.input_audio_transcription.delta``
  per word, ``input_audio_buffer.speech_stopped``/``committed`` and ``…completed``.
  ``drop_after_commit`` closes the socket right after the next ``committed`` (before its
  transcript), as a dropped session would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import attrs
import numpy as np
import soxr
import uvicorn

from voicecall.adapters.audio import ulaw_to_pcm16
from voicecall.adapters.speech.offline import ToneDecoder, render_tones
from voicecall.domain.ports import TranscriptKind
from voicecall.testing.asgi import Receive, Scope, Send, read_request, send_json

__all__ = ["FakeOpenAI", "serve_fake_openai", "speech_pcm"]


@functools.lru_cache(maxsize=256)
def speech_pcm(text: str, chars_per_sec: float = 15.0) -> bytes:
    """The 24 kHz PCM the fake answers for ``text`` (the tone code, upsampled)."""
    pcm8 = ulaw_to_pcm16(render_tones(text, chars_per_sec)).astype(np.int16)
    if not pcm8.size:
        return b""
    pcm24 = soxr.resample(pcm8, 8000, 24000, quality="HQ")
    return np.asarray(pcm24, dtype="<i2").tobytes()


@attrs.define
class FakeOpenAI:
    """The fake's behaviour and what it has seen."""

    api_key: str | None = None
    """When set, requests must carry ``Authorization: Bearer <api_key>`` (else 401)."""
    chars_per_sec: float = 15.0
    chunk_ms: int = 100
    fail_with: list[int] = attrs.Factory(list)
    stall_s: float = 0.0
    hold_last: bool = False
    drop_after_commit: int = 0
    speech_requests: list[dict[str, Any]] = attrs.Factory(list)
    speech_headers: list[dict[str, str]] = attrs.Factory(list)
    sessions: list[dict[str, Any]] = attrs.Factory(list)
    realtime_headers: list[dict[str, str]] = attrs.Factory(list)
    appended_bytes: int = 0
    connections: int = 0
    _release: asyncio.Event = attrs.Factory(asyncio.Event)

    def release(self) -> None:
        self._release.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/audio/speech"):
            await self._speech(scope, receive, send)
        elif scope["type"] == "websocket" and scope["path"].endswith("/realtime"):
            await self._realtime(scope, receive, send)
        elif scope["type"] == "http":
            await read_request(scope, receive)
            await send_json(send, 404, _error("not found", "invalid_request_error"))
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    def _authorised(self, headers: dict[str, str]) -> bool:
        return self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"

    async def _speech(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, headers = await read_request(scope, receive)
        self.speech_headers.append(headers)
        if not self._authorised(headers):
            await send_json(send, 401, _error("Incorrect API key provided", "invalid_api_key"))
            return
        try:
            request = json.loads(body)
        except ValueError:
            await send_json(send, 400, _error("invalid JSON", "invalid_request_error"))
            return
        self.speech_requests.append(request)
        if self.fail_with:
            status = self.fail_with.pop(0)
            await send_json(send, status, _error(f"simulated {status}", "server_error"))
            return
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        if request.get("response_format") != "pcm" or not isinstance(request.get("input"), str):
            await send_json(send, 400, _error("this fake speaks pcm only", "invalid_request_error"))
            return
        audio = speech_pcm(request["input"], self.chars_per_sec)
        step = 24000 * 2 * self.chunk_ms // 1000
        pieces = [audio[i : i + step] for i in range(0, len(audio), step)] or [b""]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            if last and self.hold_last:
                await self._release.wait()
            await send({"type": "http.response.body", "body": piece, "more_body": not last})

    async def _realtime(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.realtime_headers.append(headers)
        if not self._authorised(headers):
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        self.connections += 1
        session = _RealtimeFake(self, send)
        await session.emit({"type": "session.created", "session": {"type": "transcription"}})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            if not await session.handle(message.get("text") or ""):
                await send({"type": "websocket.close", "code": 1011})
                return


class _RealtimeFake:
    def __init__(self, fake: FakeOpenAI, send: Send) -> None:
        self.fake = fake
        self.send = send
        self.decoder = ToneDecoder(800)
        self.items = 0
        self.said = ""
        self.item = ""
        self.events = 0

    async def emit(self, event: dict[str, Any]) -> None:
        self.events += 1
        event.setdefault("event_id", f"event_{self.events}")
        await self.send({"type": "websocket.send", "text": json.dumps(event)})

    async def handle(self, text: str) -> bool:
        """False when the fake decides to drop the connection."""
        try:
            event = json.loads(text)
        except ValueError:
            await self.emit({"type": "error", "error": {"message": "invalid JSON"}})
            return True
        kind = event.get("type")
        if kind == "session.update":
            session = event.get("session") or {}
            self.fake.sessions.append(session)
            vad = (session.get("audio", {}).get("input", {}) or {}).get("turn_detection") or {}
            self.decoder = ToneDecoder(int(vad.get("silence_duration_ms", 800)))
            await self.emit({"type": "session.updated", "session": session})
            return True
        if kind != "input_audio_buffer.append":
            return True
        audio = base64.b64decode(event.get("audio", ""))
        self.fake.appended_bytes += len(audio)
        for heard in self.decoder.feed(audio):
            if heard.kind is TranscriptKind.SPEECH_STARTED:
                self.items += 1
                self.item = f"item_{self.items}"
                self.said = ""
                await self.emit(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": heard.started_ms or 0,
                        "item_id": self.item,
                    }
                )
            elif heard.kind is TranscriptKind.PARTIAL:
                delta = heard.text[len(self.said) :]
                self.said = heard.text
                await self.emit(
                    {
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": self.item,
                        "content_index": 0,
                        "delta": delta,
                    }
                )
            else:
                end_ms = self.decoder._frame_index * 20
                await self.emit(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": end_ms,
                        "item_id": self.item,
                    }
                )
                await self.emit(
                    {
                        "type": "input_audio_buffer.committed",
                        "item_id": self.item,
                        "previous_item_id": None,
                    }
                )
                if self.fake.drop_after_commit > 0:
                    self.fake.drop_after_commit -= 1
                    return False
                await self.emit(
                    {
                        "type": "conversation.item.input_audio_transcription.completed",
                        "item_id": self.item,
                        "content_index": 0,
                        "transcript": heard.text,
                    }
                )
        return True


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}


@contextlib.asynccontextmanager
async def serve_fake_openai(
    fake: FakeOpenAI | None = None,
) -> AsyncIterator[tuple[FakeOpenAI, str]]:
    """Run the fake on a free loopback port; yields it and its base URL (``…/v1``)."""
    fake = fake or FakeOpenAI()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(fake, log_level="warning", lifespan="off", ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield fake, f"http://127.0.0.1:{port}/v1"
    finally:
        fake.release()
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()
