"""A connection that never finishes its headers is answered 408 and closed (issue 13).

uvicorn alone holds it open for ever (benchmarks/door_slow_headers.py prints both).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from voicecall.entrypoints.http_protocol import header_deadline_protocol


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"fine"})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        _app, http=header_deadline_protocol(0.2), log_level="error", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def test_headers_that_never_finish_get_408_and_the_connection_closes(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /voice/webhook HTTP/1.1\r\nHost: x\r\nX-Twilio-Sig")
    answer = await asyncio.wait_for(reader.read(), 10)  # read() returns at EOF: closed
    assert answer.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_a_second_request_on_a_kept_alive_connection_has_the_deadline_too(
    port: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)
    assert first.startswith(b"HTTP/1.1 200 ") and b"fine" in first
    writer.write(b"POST / HTTP/1.1\r\nHo")
    rest = await asyncio.wait_for(reader.read(), 10)
    assert rest.startswith(b"HTTP/1.1 408 ")
    writer.close()
