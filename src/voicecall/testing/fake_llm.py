"""A loopback fake of an OpenAI-compatible chat completions server, streaming (issue 10).

It answers ``POST /v1/chat/completions`` with ``stream: true`` as server-sent events in the
documented chunk format (``choices[0].delta.content`` pieces, ``delta.tool_calls`` with an
``index``, ``id`` and ``function.name`` first and the ``arguments`` JSON in pieces, then
``data: [DONE]``; https://platform.openai.com/docs/api-reference/chat-streaming). Replies are
scripted, each with its own delay to the first token and token rate, so tests and benchmarks
can make the model slow, fast or silent. Point the ``openai`` SDK at it with ``base_url``.

Delays run on an injectable ``sleep`` (a fake clock's in tests, real time in benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import attrs
import uvicorn

from voicecall.testing.asgi import Receive, Scope, Send, read_request, run_lifespan, send_json

__all__ = ["FakeChatServer", "FakeReply", "serve_fake_chat"]

Sleep = Callable[[float], Awaitable[None]]


@attrs.frozen
class FakeReply:
    """One scripted completion.

    Attributes:
        text: what the model writes, streamed a token (a word and its space) at a time.
        tool_calls: ``(name, arguments JSON)`` pairs sent after the text.
        first_token_s: the delay before the first token.
        tokens_per_s: the rate after it; None sends them as fast as possible.
        hang: never finish (the stream stays open after the text): a model that stalls.
    """

    text: str = ""
    tool_calls: tuple[tuple[str, str], ...] = ()
    first_token_s: float = 0.0
    tokens_per_s: float | None = None
    hang: bool = False


@attrs.define
class _Seen:
    body: dict[str, Any]
    finished: bool = False
    disconnected: bool = False
    started_at: float = 0.0
    first_token_at: float | None = None
    finished_at: float | None = None


_TOKEN = re.compile(r"\S+\s*|\s+")


class FakeChatServer:
    """The ASGI app. ``replies`` are used in order; the last one repeats when they run out.

    Attributes:
        requests: every completion asked for, with whether it was streamed to the end or the
            client went away first.
    """

    def __init__(self, replies: Sequence[FakeReply], *, sleep: Sleep = asyncio.sleep) -> None:
        if not replies:
            raise ValueError("at least one scripted reply")
        self.replies = list(replies)
        self.sleep = sleep
        self.requests: list[_Seen] = []

    def messages(self, index: int = -1) -> list[dict[str, Any]]:
        """The messages of one request (the last by default)."""
        messages: list[dict[str, Any]] = self.requests[index].body["messages"]
        return messages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send, _nothing)
            return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST" or not scope["path"].endswith("/chat/completions"):
            await send_json(send, 404, {"error": {"message": "not found"}})
            return
        raw, _ = await read_request(scope, receive)
        try:
            body = json.loads(raw)
        except ValueError:
            await send_json(send, 400, {"error": {"message": "invalid JSON"}})
            return
        if not isinstance(body, dict) or not body.get("stream"):
            await send_json(send, 400, {"error": {"message": "only streaming is faked"}})
            return
        reply = self.replies[min(len(self.requests), len(self.replies) - 1)]
        seen = _Seen(body=body, started_at=time.monotonic())
        self.requests.append(seen)
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await self._stream(reply, body, seen, send, watcher)
        finally:
            watcher.cancel()

    async def _stream(
        self,
        reply: FakeReply,
        body: dict[str, Any],
        seen: _Seen,
        send: Send,
        watcher: asyncio.Future[None],
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        model = str(body.get("model", "fake"))

        async def event(delta: dict[str, Any], finish: str | None = None) -> bool:
            if watcher.done():
                seen.disconnected = True
                return False
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            await send({"type": "http.response.body", "body": data, "more_body": True})
            return True

        if reply.first_token_s > 0:
            await self.sleep(reply.first_token_s)
        if not await event({"role": "assistant", "content": ""}):
            return
        gap = 1.0 / reply.tokens_per_s if reply.tokens_per_s else 0.0
        for number, token in enumerate(_TOKEN.findall(reply.text)):
            if number and gap:
                await self.sleep(gap)
            if not await event({"content": token}):
                return
            if seen.first_token_at is None:
                seen.first_token_at = time.monotonic()
        for index, (name, arguments) in enumerate(reply.tool_calls):
            head = {"index": index, "id": f"call_{len(self.requests)}_{index}", "type": "function"}
            if not await event({"tool_calls": [head | {"function": {"name": name}}]}):
                return
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                if not await event(
                    {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                ):
                    return
        if reply.hang:
            await watcher
            seen.disconnected = True
            return
        finish = "tool_calls" if reply.tool_calls else "stop"
        if not await event({}, finish):
            return
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        seen.finished = True
        seen.finished_at = time.monotonic()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _nothing() -> None:
    return None


@contextlib.asynccontextmanager
async def serve_fake_chat(app: FakeChatServer) -> AsyncIterator[str]:
    """Serve ``app`` on a loopback port in this event loop; yields the ``base_url`` (…/v1)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()
