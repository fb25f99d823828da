"""ASGI plumbing the simulated carriers share: lifespan, reading a request, JSON answers, and
the background tasks a carrier runs (call scripts, webhook deliveries)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Background", "Receive", "Scope", "Send", "read_request", "run_lifespan", "send_json"]

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
