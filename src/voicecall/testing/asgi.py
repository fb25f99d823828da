"""ASGI plumbing the simulated carriers share: lifespan, reading a request, JSON answers, and
the background tasks a carrier runs (call scripts, webhook deliveries)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from voicecall.adapters.websocket import WsConnect, WsConnection

__all__ = [
    "Background",
    "Receive",
    "Scope",
    "Send",
    "asgi_websocket_connector",
    "read_request",
    "run_lifespan",
    "send_json",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def run_lifespan(
    receive: Receive, send: Send, on_shutdown: Callable[[], Awaitable[None]]
) -> None:
    """Answer the server's lifespan messages; ``on_shutdown`` runs before shutdown completes."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_request(scope: Scope, receive: Receive) -> tuple[bytes, dict[str, str]]:
    """The whole body and the headers (names lower-cased, last value wins)."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return bytes(body), headers


async def send_json(send: Send, status: int, payload: Any | None) -> None:
    """Answer with ``payload`` as JSON, or with an empty body when it is None."""
    raw = b"" if payload is None else json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json")] if raw else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


class Background:
    """Tasks a simulator starts and must not lose: kept referenced, failures logged."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tasks: set[asyncio.Task[Any]] = set()
        self._log = logging.getLogger(f"voicecall.testing.{name}")

    def spawn(self, work: Awaitable[Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        if name is not None:
            task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s: task failed", self.name, exc_info=task.exception())

    async def aclose(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()


class _AsgiWebSocket:
    """A WebSocket client talking to an ASGI app in the same process (no network)."""

    def __init__(self, app: Any, url: str) -> None:
        parts = urlsplit(url)
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._closed = False
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "wss" if parts.scheme == "wss" else "ws",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(b"host", (parts.netloc or "127.0.0.1").encode())],
            "client": ("127.0.0.1", 40123),
            "server": (parts.hostname or "127.0.0.1", parts.port or 80),
            "subprotocols": [],
            "state": {},
        }
        self._task = asyncio.ensure_future(app(scope, self._receive, self._send))
        self._to_app.put_nowait({"type": "websocket.connect"})

    async def _receive(self) -> dict[str, Any]:
        return await self._to_app.get()

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        await self._from_app.put(message)

    async def opened(self) -> None:
        message = await self._from_app.get()
        if message["type"] != "websocket.accept":
            self._closed = True
            raise ConnectionError(f"the app refused the WebSocket ({message.get('code')})")

    async def send(self, text: str) -> None:
        if not self._closed:
            self._to_app.put_nowait({"type": "websocket.receive", "text": text})

    async def recv(self) -> str | None:
        while not self._closed:
            message = await self._from_app.get()
            if message["type"] == "websocket.send":
                text = message.get("text")
                return text if text is not None else bytes(message.get("bytes", b"")).decode()
            if message["type"] == "websocket.close":
                self._closed = True
        return None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._to_app.put_nowait({"type": "websocket.disconnect", "code": 1000})
        self._from_app.put_nowait({"type": "websocket.close", "code": 1000})
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        except (TimeoutError, Exception):
            self._task.cancel()


def asgi_websocket_connector(app: Any) -> WsConnect:
    """A connector that opens WebSockets on ``app`` in-process: what the simulated carriers
    use in tests where the listener is an ASGI app rather than a socket."""

    async def connect(url: str) -> WsConnection:
        socket = _AsgiWebSocket(app, url)
        await socket.opened()
        return socket

    return connect
