"""Our client end of a WebSocket: the simulated carriers' media streams and OpenAI realtime.

The offline mock and the shipped simulators open streams to our listener the way a carrier
does, and the realtime transcriber opens its session to OpenAI; ``connect_websocket`` does
either over the network (the ``websockets`` client), and
``voicecall.testing.asgi.asgi_websocket_connector`` opens a stream in-process for tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["WebSocketLink", "WsConnect", "WsConnection", "connect_websocket"]


class WsConnection(Protocol):
    async def send(self, text: str) -> None: ...

    async def recv(self) -> str | None:
        """The next text message; None once the connection is closed."""

    async def close(self) -> None: ...


WsConnect = Callable[[str], Awaitable[WsConnection]]


class WebSocketLink:
    """A ``websockets`` client connection as a ``WsConnection``: text in and out, and a
    closed connection read as the end (None) rather than an exception."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket

    async def send(self, text: str) -> None:
        try:
            await self._socket.send(text)
        except ConnectionClosed:
            return

    async def recv(self) -> str | None:
        try:
            message = await self._socket.recv()
        except ConnectionClosed:
            return None
        return message if isinstance(message, str) else message.decode("utf-8", "replace")

    async def close(self) -> None:
        await self._socket.close()


async def connect_websocket(url: str, headers: Mapping[str, str] | None = None) -> WsConnection:
    """Open ``url`` (sending ``headers`` with the handshake); ``ConnectionError`` when it
    cannot be opened."""
    try:
        socket = await connect(
            url,
            additional_headers=dict(headers) if headers else None,
            open_timeout=10,
            max_size=2**20,
        )
    except (OSError, InvalidHandshake, TimeoutError) as err:
        raise ConnectionError(f"cannot open {url}: {err}") from err
    return WebSocketLink(socket)
