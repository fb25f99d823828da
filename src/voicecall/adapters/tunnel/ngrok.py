"""ngrok in-process through the official ``ngrok`` Python SDK (the agent is embedded: no binary).

A session is built with ``SessionBuilder`` (auth token, a disconnection handler) and one HTTP
endpoint forwards everything to the webhook listener, the media-stream path included (ngrok
passes WebSocket upgrades through). SDK reference: https://ngrok.github.io/ngrok-python/ .
The SDK calls the disconnection handler from its own thread, so it only signals the loop.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import Any

__all__ = ["NgrokTunnel"]


class NgrokTunnel:
    """The ``Tunnel`` port over the ngrok SDK.

    Args:
        forward_to: the local webhook listener, ``http://127.0.0.1:3334``.
        auth_token: ``tunnel.ngrokAuthToken`` / ``NGROK_AUTHTOKEN``.
        domain: ``tunnel.ngrokDomain`` / ``NGROK_DOMAIN``; without it each session gets a
            new random URL.
        sdk: the ``ngrok`` module; tests pass a fake with the same surface.
    """

    name = "ngrok"

    def __init__(
        self,
        forward_to: str,
        auth_token: str | None,
        domain: str | None,
        sdk: ModuleType | Any | None = None,
    ) -> None:
        self.forward_to = forward_to
        self.auth_token = auth_token
        self.domain = domain
        self._sdk = sdk
        self._session: Any = None
        self._listener: Any = None
        self._dropped: asyncio.Future[str] | None = None

    def _module(self) -> Any:
        if self._sdk is None:
            self._sdk = importlib.import_module("ngrok")
        return self._sdk

    async def open(self) -> str:
        loop = asyncio.get_running_loop()
        dropped: asyncio.Future[str] = loop.create_future()
        self._dropped = dropped

        def on_disconnect(addr: str, error: str) -> None:
            def signal() -> None:
                if not dropped.done():
                    dropped.set_result(f"disconnected from {addr}: {error}")

            loop.call_soon_threadsafe(signal)

        builder = self._module().SessionBuilder()
        if self.auth_token:
            builder.authtoken(self.auth_token)
        builder.handle_disconnection(on_disconnect)
        self._session = await builder.connect()
        endpoint = self._session.http_endpoint()
        if self.domain:
            endpoint.domain(self.domain)
        self._listener = await endpoint.listen_and_forward(self.forward_to)
        return str(self._listener.url())

    async def wait_closed(self) -> str:
        if self._dropped is None:
            raise RuntimeError("the ngrok tunnel is not open")
        return await asyncio.shield(self._dropped)

    async def close(self) -> None:
        listener, session = self._listener, self._session
        self._listener = self._session = None
        if listener is not None:
            await listener.close()
        if session is not None:
            await session.close()
