"""Our WebSocket client end (media-stream simulators, OpenAI realtime) over loopback."""

from __future__ import annotations

import socket

import pytest
from websockets.asyncio.server import ServerConnection, serve

from voicecall.adapters.websocket import connect_websocket


async def test_headers_go_with_the_handshake_and_text_comes_back() -> None:
    seen: dict[str, str] = {}

    async def echo(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen["authorization"] = connection.request.headers.get("Authorization", "")
        async for message in connection:
            await connection.send(message)
            await connection.close()

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        link = await connect_websocket(f"ws://127.0.0.1:{port}", {"Authorization": "Bearer k"})
        await link.send("hello")
        assert await link.recv() == "hello"
        assert await link.recv() is None  # closed by the peer: the end, not an exception
        await link.send("into the void")  # sending on a closed link is quietly dropped
        await link.close()
    assert seen == {"authorization": "Bearer k"}


async def test_a_port_nobody_listens_on_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"cannot open ws://127.0.0.1:{port}"):
        await connect_websocket(f"ws://127.0.0.1:{port}")
