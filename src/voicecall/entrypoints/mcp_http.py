"""The MCP server over streamable HTTP, mounted on the gateway listener at ``/mcp``.

It is the same server ``voicecall mcp`` runs on stdio, driving the plugin in process, behind
the gateway's bearer token. It is never mounted on the webhook listener: that one may be
exposed through a tunnel, and the telephone must not be.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litestar.handlers import ASGIRouteHandler, asgi

from voicecall.domain.ports import EventRecord
from voicecall.entrypoints.plugin import VoiceCallPlugin

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from voicecall.entrypoints.mcp_server import VoiceCallMcp

__all__ = ["MCP_PATH", "McpEndpoint", "mcp_route"]

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"

Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class McpEndpoint:
    """The ASGI endpoint: checks the bearer token, then hands the request to the MCP sessions.

    The session manager runs in a task of its own, started with the first request (the gateway
    runs uvicorn without ASGI lifespan) and stopped by :meth:`close` at shutdown, which ends
    every session's server task, listen stream and feed follower there and then rather than
    leaving them to be cancelled when the event loop closes. The MCP SDK is imported with the
    first request too: it costs seconds, and a gateway nobody reaches over MCP need not pay.

    Args:
        plugin: the gateway's plugin, driven in process.
        authorised: whether an ``Authorization`` header value carries the gateway token.
    """

    def __init__(self, plugin: VoiceCallPlugin, authorised: Callable[[str | None], bool]) -> None:
        self._plugin = plugin
        self._authorised = authorised
        self.mcp: VoiceCallMcp | None = None
        self._manager: StreamableHTTPSessionManager | None = None
        self._started: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.closed = False

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await _respond(send, 404, {"error": "not found"})
            return
        if not self._authorised(_header(scope, b"authorization")):
            await _respond(
                send,
                401,
                {
                    "ok": False,
                    "error": {"code": "unauthorized", "message": "missing or wrong gateway token"},
                },
                extra=[(b"www-authenticate", b'Bearer realm="voicecall"')],
            )
            return
        if self.closed:
            await _respond(send, 503, {"error": "the gateway is shutting down"})
            return
        manager = await self._ensure_running()
        await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]

    async def _ensure_running(self) -> StreamableHTTPSessionManager:
        if self._manager is None:
            from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
            from mcp.server.transport_security import TransportSecuritySettings

            from voicecall.entrypoints.mcp_server import LocalGateway, VoiceCallMcp

            self.mcp = VoiceCallMcp(LocalGateway(self._plugin))
            self._manager = StreamableHTTPSessionManager(
                app=self.mcp.server,
                # The bearer token is what keeps other pages and hosts out; the listener may be
                # bound to a LAN address, so no Host allowlist is imposed here.
                security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            )
            self._started = asyncio.get_running_loop().create_future()
            self._runner = asyncio.create_task(
                self._run(self._manager, self._started), name="mcp-sessions"
            )
        assert self._started is not None
        await asyncio.shield(self._started)
        return self._manager

    async def _run(
        self, manager: StreamableHTTPSessionManager, started: asyncio.Future[None]
    ) -> None:
        try:
            async with manager.run():
                started.set_result(None)
                await self._stop.wait()
        except Exception as err:
            if not started.done():
                started.set_exception(err)
            else:
                log.exception("the MCP sessions stopped on an error")

    def close(self) -> None:
        """End every MCP session and refuse new requests (the gateway is shutting down)."""
        self.closed = True
        self._stop.set()

    async def wait_closed(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._runner


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _respond(
    send: Send,
    status: int,
    body: dict[str, Any],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": data})


def mcp_route(
    plugin: VoiceCallPlugin,
    authorised: Callable[[str | None], bool],
    on_shutdown: Callable[[asyncio.Queue[EventRecord | None]], bool],
) -> ASGIRouteHandler:
    """The ``/mcp`` route for the gateway app.

    Args:
        plugin: the gateway's plugin.
        authorised: the gateway's bearer-token check.
        on_shutdown: registers a queue that receives ``None`` when the gateway shuts down (the
            gateway's open-stream registry); the MCP sessions are then closed.
    """
    endpoint = McpEndpoint(plugin, authorised)
    shutdown: asyncio.Queue[EventRecord | None] = asyncio.Queue(1)
    if not on_shutdown(shutdown):
        endpoint.close()
    watcher: list[asyncio.Task[None]] = []

    async def watch() -> None:
        await shutdown.get()
        endpoint.close()

    @asgi(MCP_PATH, is_mount=True, copy_scope=True)
    async def mcp(scope: Any, receive: Any, send: Any) -> None:
        if not watcher:
            watcher.append(asyncio.create_task(watch(), name="mcp-shutdown-watch"))
        await endpoint(scope, receive, send)

    return mcp
