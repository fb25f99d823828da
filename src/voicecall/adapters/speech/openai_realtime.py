"""Streaming transcription through an OpenAI realtime transcription session, one per call.

The session runs over the realtime WebSocket with the transcription intent
(``wss://api.openai.com/v1/realtime?intent=transcription``) and is configured with one
``session.update`` whose session has ``type: "transcription"``: input ``audio/pcmu`` (G.711
μ-law, what the carrier sends; the beta API called it ``g711_ulaw``), the transcription model
and language, and server VAD (``threshold``, ``prefix_padding_ms``, ``silence_duration_ms``)
(https://developers.openai.com/api/docs/guides/realtime-transcription;
https://developers.openai.com/api/reference/resources/realtime/client-events). Caller audio goes
up as ``input_audio_buffer.append`` (base64). Server events used
(https://developers.openai.com/api/reference/resources/realtime/server-events):

* ``input_audio_buffer.speech_started`` (``audio_start_ms``, ``item_id``) → speech started
  (barge-in);
* ``input_audio_buffer.committed`` (``item_id``): the VAD closed an utterance;
* ``conversation.item.input_audio_transcription.delta`` (``item_id``, ``delta``) → partial;
* ``conversation.item.input_audio_transcription.completed`` (``item_id``, ``transcript``) →
  final.

A dropped session is reopened with backoff while the call lasts. The audio of every utterance
not yet transcribed (from the earliest commit without its ``completed``, or the last completed
one) is kept, and audio arriving during the gap is buffered up to a bound; both are sent again
on the new session, so no final transcript is lost.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import attrs

from voicecall.adapters.websocket import WsConnection, connect_websocket
from voicecall.domain.ports import (
    Clock,
    TranscriptEvent,
    TranscriptHandler,
    TranscriptKind,
    clock_sleep,
)

__all__ = [
    "DEFAULT_REALTIME_URL",
    "OpenAiRealtimeTranscriber",
    "RealtimeConnect",
    "RealtimeStt",
    "realtime_url",
]

log = logging.getLogger(__name__)

DEFAULT_REALTIME_URL: Final = "wss://api.openai.com/v1/realtime?intent=transcription"
_BYTES_PER_MS: Final = 8  # μ-law at 8 kHz
_APPEND_BYTES: Final = 3200  # resent audio goes up in 400 ms pieces

RealtimeConnect = Callable[[str, Mapping[str, str]], Awaitable[WsConnection]]


@attrs.frozen
class RealtimeStt:
    """What the adapter needs from ``streaming.*`` and ``language``."""

    api_key: str
    model: str = "gpt-4o-transcribe"
    language: str = "en-US"
    vad_threshold: float = 0.5
    silence_duration_ms: int = 800
    prefix_padding_ms: int = 300
    url: str = DEFAULT_REALTIME_URL
    max_buffer_ms: int = 30_000
    """Audio kept for a resend (untranscribed utterances plus the reconnect gap)."""
    backoff_s: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


def realtime_url(base_url: str | None) -> str:
    """The realtime endpoint under an OpenAI-compatible base URL (``OPENAI_BASE_URL``)."""
    if not base_url:
        return DEFAULT_REALTIME_URL
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return f"{base}/realtime?intent=transcription"


def session_update(settings: RealtimeStt) -> dict[str, Any]:
    """The ``session.update`` that makes the connection a transcription session."""
    transcription: dict[str, Any] = {"model": settings.model}
    language = settings.language.split("-")[0].lower()  # the API takes ISO-639-1 ("vi")
    if language:
        transcription["language"] = language
    return {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": transcription,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": settings.vad_threshold,
                        "prefix_padding_ms": settings.prefix_padding_ms,
                        "silence_duration_ms": settings.silence_duration_ms,
                    },
                }
            },
        },
    }


class OpenAiRealtimeTranscriber:
    """The ``Transcriber`` port over OpenAI realtime transcription sessions.

    Args:
        settings: key, model, language, VAD and the endpoint.
        clock: times the reconnect backoff.
        connect: opens the WebSocket (tests pass an in-process connector).
    """

    name = "openai-realtime"

    def __init__(
        self, settings: RealtimeStt, clock: Clock, connect: RealtimeConnect | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._connect = connect or connect_websocket

    async def open(self, call_id: str, on_event: TranscriptHandler) -> RealtimeSession:
        session = RealtimeSession(self, call_id, on_event)
        await session.start()
        return session


class RealtimeSession:
    """One call's transcription session; survives drops of its WebSocket."""

    def __init__(
        self, owner: OpenAiRealtimeTranscriber, call_id: str, on_event: TranscriptHandler
    ) -> None:
        self._owner = owner
        self.settings = owner.settings
        self.call_id = call_id
        self._on_event = on_event
        self._socket: WsConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        # Audio kept for a resend: ``_kept`` starts at absolute byte ``_kept_from``.
        self._kept = bytearray()
        self._kept_from = 0
        self._received = 0  # bytes of caller audio so far
        self._epoch = 0  # absolute byte where the current connection's audio begins
        self._commits: dict[str, int] = {}  # item → absolute end byte, until completed
        self._started: dict[str, int] = {}  # item → started_ms (session audio time)
        self._partials: dict[str, str] = {}
        self.connections = 0
        self.reconnects = 0
        self.dropped_bytes = 0

    async def start(self) -> None:
        await self._open_connection()
        self._reader = asyncio.ensure_future(self._run())

    async def _open_connection(self) -> None:
        headers = {"Authorization": f"Bearer {self.settings.api_key}"}
        socket = await self._owner._connect(self.settings.url, headers)
        await socket.send(json.dumps(session_update(self.settings)))
        self._epoch = self._kept_from
        self._commits.clear()
        for offset in range(0, len(self._kept), _APPEND_BYTES):
            await socket.send(_append(bytes(self._kept[offset : offset + _APPEND_BYTES])))
        self._socket = socket
        self.connections += 1

    async def send(self, ulaw: bytes) -> None:
        if self._closed:
            return
        self._received += len(ulaw)
        self._kept += ulaw
        excess = len(self._kept) - self.settings.max_buffer_ms * _BYTES_PER_MS
        if excess > 0:
            del self._kept[:excess]
            self._kept_from += excess
            if self._socket is None:
                self.dropped_bytes += excess
        if self._socket is not None:
            await self._socket.send(_append(ulaw))

    async def aclose(self) -> None:
        self._closed = True
        reader, self._reader = self._reader, None
        socket, self._socket = self._socket, None
        if socket is not None:
            try:
                await socket.close()
            except Exception:
                log.debug("closing the realtime socket failed", exc_info=True)
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _run(self) -> None:
        while not self._closed:
            socket = self._socket
            if socket is not None:
                while True:
                    message = await socket.recv()
                    if message is None:
                        break
                    await self._handle(message)
            if self._closed:
                return
            self._socket = None
            await self._reconnect()

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closed:
            delay = self.settings.backoff_s[min(attempt, len(self.settings.backoff_s) - 1)]
            log.warning(
                "call %s: realtime transcription dropped; reconnecting in %.2f s (attempt %d)",
                self.call_id,
                delay,
                attempt + 1,
            )
            await clock_sleep(self._owner.clock, delay)
            if self._closed:
                return
            try:
                await self._open_connection()
            except (ConnectionError, OSError) as err:
                log.warning(
                    "call %s: realtime transcription reconnect failed: %s", self.call_id, err
                )
                attempt += 1
                continue
            self.reconnects += 1
            log.warning(
                "call %s: realtime transcription back; %d ms of audio sent again",
                self.call_id,
                len(self._kept) // _BYTES_PER_MS,
            )
            return

    async def _handle(self, message: str) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            log.warning("call %s: realtime transcription sent non-JSON", self.call_id)
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        item = str(event.get("item_id") or "")
        if kind == "input_audio_buffer.speech_started":
            start_ms = _int(event.get("audio_start_ms"))
            started = self._epoch // _BYTES_PER_MS + start_ms
            self._started[item] = started
            await self._emit(TranscriptEvent(TranscriptKind.SPEECH_STARTED, "", started))
        elif kind == "input_audio_buffer.committed":
            end_ms = _int(event.get("audio_end_ms"), default=-1)
            end = self._received if end_ms < 0 else self._epoch + end_ms * _BYTES_PER_MS
            self._commits[item] = end
        elif kind == "conversation.item.input_audio_transcription.delta":
            text = self._partials.get(item, "") + str(event.get("delta") or "")
            self._partials[item] = text
            await self._emit(
                TranscriptEvent(TranscriptKind.PARTIAL, text.strip(), self._started.get(item))
            )
        elif kind == "conversation.item.input_audio_transcription.completed":
            text = str(event.get("transcript") or "").strip()
            self._partials.pop(item, None)
            began = self._started.pop(item, -1)
            self._forget_through(self._commits.pop(item, None))
            await self._emit(
                TranscriptEvent(TranscriptKind.FINAL, text, began if began >= 0 else None)
            )
        elif kind == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            log.warning(
                "call %s: realtime transcription error: %s",
                self.call_id,
                (error or {}).get("message", "unknown"),
            )

    def _forget_through(self, end: int | None) -> None:
        """Audio up to the completed utterance's end (and before any still pending) is done."""
        if end is None:
            return
        pending = [e for e in self._commits.values() if e < end]
        if pending:
            return  # an earlier utterance is not transcribed yet: keep its audio
        cut = min(max(end - self._kept_from, 0), len(self._kept))
        del self._kept[:cut]
        self._kept_from += cut

    async def _emit(self, event: TranscriptEvent) -> None:
        try:
            result = self._on_event(event)
            if result is not None:
                await result
        except Exception:
            log.exception("call %s: handling a transcript event failed", self.call_id)


def _append(ulaw: bytes) -> str:
    return json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(ulaw).decode()}
    )


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
