"""The carrier side of a media stream's WebSocket, for the simulated carriers.

The offline mock and the shipped simulators open streams to our listener the way a carrier
does; ``connect_websocket`` does it over the network (the ``websockets`` client), and
``voicecall.testing.asgi.asgi_websocket_connector`` does it in-process for tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["WsConnect", "WsConnection", "connect_websocket"]


class WsConnection(Protocol):
    async def send(self, text: str) -> None: ...

    async def recv(self) -> str | None:
        """The next text message; None once the connection is closed."""

    async def close(self) -> None: ...


WsConnect = Callable[[str], Awaitable[WsConnection]]


class _Network:
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


async def connect_websocket(url: str) -> WsConnection:
    """Open ``url``; ``ConnectionError`` when it cannot be opened."""
    try:
        socket = await connect(url, open_timeout=10, max_size=2**20)
    except (OSError, InvalidHandshake, TimeoutError) as err:
        raise ConnectionError(f"cannot open {url}: {err}") from err
    return _Network(socket)
