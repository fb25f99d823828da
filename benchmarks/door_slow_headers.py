"""Slow-header connections against uvicorn, with and without the header deadline (prints).

uvicorn has no header-read timeout. This opens ``--slow`` connections that send a request
line and then nothing, waits ``--hold`` seconds, and counts how many the server still holds
open; then it times ``--requests`` sequential keep-alive requests, to show what the
deadline costs per request. Both runs use the same tiny ASGI app on loopback.

    .venv/bin/python benchmarks/door_slow_headers.py [--slow 200] [--hold 3] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import time
from typing import Any

import uvicorn

from voicecall.entrypoints.http_protocol import header_deadline_protocol


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _still_open(reader: asyncio.StreamReader) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(1024), 0.05)
    except TimeoutError:
        return True
    return data != b"" and not data.startswith(b"HTTP/1.1 408")


async def _run(http: Any, label: str, slow: int, hold: float, requests: int) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as voicecall serve does
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _app, http=http, log_level="error", lifespan="off", timeout_keep_alive=30
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    conns = []
    for _ in range(slow):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /voice/webhook HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        conns.append((reader, writer))
    await asyncio.sleep(hold)
    open_after = sum([await _still_open(r) for r, _ in conns])
    for _, writer in conns:
        writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        writer.write(b"POST /voice/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        await reader.readuntil(b"0\r\n\r\n")
        times.append((time.perf_counter() - start) * 1e6)
    writer.close()
    times.sort()
    print(
        f"{label:>24}: {open_after}/{slow} slow-header connections still open after {hold:g} s;"
        f" keep-alive request p50 {statistics.median(times):.0f} µs,"
        f" p99 {times[int(len(times) * 0.99) - 1]:.0f} µs"
    )
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 5)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--deadline", type=float, default=1.0)
    args = parser.parse_args()
    await _run("httptools", "uvicorn as shipped", args.slow, args.hold, args.requests)
    await _run(
        header_deadline_protocol(args.deadline),
        f"header deadline {args.deadline:g} s",
        args.slow,
        args.hold,
        args.requests,
    )


if __name__ == "__main__":
    asyncio.run(main())
