"""The offline mock carrier's media streams: its message format and the far end of each line.

The mock opens a stream to our listener the way the real carriers do (a WebSocket to the URL
it was given, a ``start`` message carrying the stream token, then caller audio every 20 ms),
with a simulated handset on its end. Its format is its own, deliberately close to Twilio's:

* carrier → us: ``{"event": "start", "streamId", "callId", "token"}``,
  ``{"event": "media", "payload": base64 μ-law}``, ``{"event": "mark", "name"}``,
  ``{"event": "dtmf", "digits"}``, ``{"event": "stop"}``;
* us → carrier: ``{"event": "media", "payload"}``, ``{"event": "mark", "name"}``,
  ``{"event": "clear"}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
from collections.abc import Awaitable, Callable

from voicecall.adapters.telephony.handset import SimulatedHandset
from voicecall.adapters.telephony.stream_message import read_event
from voicecall.adapters.websocket import WsConnect, WsConnection
from voicecall.domain.media import (
    StreamClosed,
    StreamDtmf,
    StreamMark,
    StreamMedia,
    StreamMessage,
    StreamStart,
)

__all__ = ["MockStream", "MockStreamDialect"]

log = logging.getLogger(__name__)


class MockStreamDialect:
    """The mock carrier's stream messages, parsed and built (one per connection)."""

    def __init__(self) -> None:
        self.stream_id: str | None = None

    def parse(self, message: str) -> list[StreamMessage]:
        event, data = read_event(message)
        if event == "start":
            stream_id, token = data.get("streamId"), data.get("token")
            if not isinstance(stream_id, str) or not stream_id:
                raise ValueError("start without streamId")
            self.stream_id = stream_id
            call = data.get("callId")
            return [
                StreamStart(
                    stream_id=stream_id,
                    provider_call_id=call if isinstance(call, str) else None,
                    token=token if isinstance(token, str) else None,
                )
            ]
        if event == "media":
            payload = data.get("payload")
            if not isinstance(payload, str):
                raise ValueError("media without payload")
            try:
                return [StreamMedia(payload=base64.b64decode(payload, validate=True))]
            except binascii.Error:
                raise ValueError("media payload is not base64") from None
        if event == "mark":
            name = data.get("name")
            if not isinstance(name, str):
                raise ValueError("mark without name")
            return [StreamMark(name=name)]
        if event == "dtmf":
            digits = data.get("digits")
            if not isinstance(digits, str):
                raise ValueError("dtmf without digits")
            return [StreamDtmf(digits=digits)]
        if event == "stop":
            return [StreamClosed(reason="stop")]
        raise ValueError(f"unknown event {event!r}")

    def media(self, payload: bytes) -> str:
        return json.dumps({"event": "media", "payload": base64.b64encode(payload).decode()})

    def mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "name": name})

    def clear(self) -> str:
        return json.dumps({"event": "clear"})


class MockStream:
    """The carrier's end of one streamed mock call: its socket(s) and the caller's handset.

    A dropped socket is reported through ``on_stopped`` while the call lives; the next
    ``connect`` (with a fresh token) carries on with the same handset.
    """

    def __init__(
        self,
        provider_call_id: str,
        handset: SimulatedHandset,
        connect_ws: WsConnect,
        on_stopped: Callable[[str], Awaitable[None]],
    ) -> None:
        self.provider_call_id = provider_call_id
        self.handset = handset
        self._connect_ws = connect_ws
        self._on_stopped = on_stopped
        self._socket: WsConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connections = 0
        self.attempts = 0

    def connect(self, url: str, token: str) -> None:
        self.attempts += 1
        self._task = asyncio.ensure_future(self._run(url, token))

    async def _run(self, url: str, token: str) -> None:
        try:
            socket = await self._connect_ws(url)
        except ConnectionError as err:
            log.warning("mock carrier: cannot open the media stream: %s", err)
            if not self._closing:
                await self._on_stopped(f"the media stream could not be opened: {err}")
            return
        self._socket = socket
        self.connections += 1
        await socket.send(
            json.dumps(
                {
                    "event": "start",
                    "streamId": f"MZ{uuid.uuid4().hex}",
                    "callId": self.provider_call_id,
                    "token": token,
                }
            )
        )
        self.handset.start()
        while True:
            message = await socket.recv()
            if message is None:
                break
            await self._from_server(message)
        if self._socket is socket:
            self._socket = None
        if not self._closing:
            await self._on_stopped("the media stream closed")

    async def _from_server(self, message: str) -> None:
        try:
            data = json.loads(message)
            event = data["event"]
            if event == "media":
                self.handset.receive_audio(base64.b64decode(data["payload"]))
            elif event == "mark":
                self.handset.receive_mark(str(data["name"]))
            elif event == "clear":
                await self.handset.receive_clear()
        except (ValueError, KeyError, TypeError, binascii.Error):
            log.warning("mock carrier: a malformed stream message ignored")

    async def send_audio(self, frame: bytes) -> None:
        if self._socket is not None:
            payload = base64.b64encode(frame).decode()
            await self._socket.send(json.dumps({"event": "media", "payload": payload}))

    async def echo_mark(self, name: str) -> None:
        if self._socket is not None:
            await self._socket.send(json.dumps({"event": "mark", "name": name}))

    async def drop(self) -> None:
        """The network loses the socket (the call itself goes on)."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()

    async def close(self) -> None:
        """The call is over: the handset stops and the stream closes."""
        self._closing = True
        await self.handset.stop()
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.send(json.dumps({"event": "stop"}))
            await socket.close()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
