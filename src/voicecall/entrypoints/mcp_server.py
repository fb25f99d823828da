"""``voice_call`` for every agent host: the Model Context Protocol server.

One server definition, two ways to reach the gateway:

- ``voicecall mcp`` runs it on stdio and talks to the running gateway over RPC and the
  ``/events`` feed, exactly as the CLI does (:class:`RemoteGateway`); it never starts a webhook
  server, and when no gateway is running its tools answer with an error naming
  ``voicecall serve`` while the server itself keeps running.
- the gateway mounts the same server at ``/mcp`` (:mod:`voicecall.entrypoints.mcp_http`), where
  it drives the plugin in process (:class:`LocalGateway`).

Tools: ``voice_call`` (the shared definition in :mod:`voicecall.entrypoints.tool`) and
``list_calls``. Resources: ``voicecall://calls`` and ``voicecall://calls/{callId}``, with
resource-updated notifications that follow the gateway's event feed (``resources/subscribe`` on
handshake-era connections, ``subscriptions/listen`` on 2026-07-28 ones). Pairing decisions stay
with the operator and are deliberately not tools.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError

from voicecall import __version__
from voicecall.config import AppConfig
from voicecall.domain.errors import CallerError
from voicecall.entrypoints.client import AsyncGatewayClient, ClientError
from voicecall.entrypoints.plugin import VoiceCallPlugin
from voicecall.entrypoints.tool import VOICE_CALL_TOOL_SCHEMA, voice_call_request

__all__ = [
    "CALLS_URI",
    "LIST_CALLS_TOOL",
    "GatewayBackend",
    "LocalGateway",
    "RemoteGateway",
    "VoiceCallMcp",
    "run_stdio",
]

log = logging.getLogger(__name__)

CALLS_URI = "voicecall://calls"
CALL_URI_TEMPLATE = "voicecall://calls/{callId}"
_CALL_URI_PREFIX = CALLS_URI + "/"

PROGRESS_INTERVAL_S = 5.0
"""How often a waiting ``continue_call`` tells the host it is still waiting."""

_RECONNECT_MAX_S = 10.0

LIST_CALLS_TOOL: dict[str, Any] = {
    "name": "list_calls",
    "description": (
        "List phone calls, newest first, each with its callId, state, numbers and transcript. "
        "Use active=true for only the calls still in progress."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "active": {"type": "boolean", "description": "Only calls that are still live."},
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10000,
                "description": "At most this many calls (default 100).",
            },
        },
        "additionalProperties": False,
    },
}

_INSTRUCTIONS = (
    "This server gives you a telephone. Use the voice_call tool to place calls (initiate_call), "
    "talk (continue_call waits for the callee's answer; speak_to_user does not), hang up "
    "(end_call) and check on a call (get_status). Numbers are E.164, like +15551234567. "
    "Read voicecall://calls/{callId} for a call's live transcript, or subscribe to it to be told "
    "when the call changes."
)


class GatewayError(Exception):
    """The gateway refused or could not be asked; ``code`` and ``message`` are the RPC's own."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class GatewayBackend(Protocol):
    """How the MCP server reaches the gateway: over RPC, or in the gateway's own process."""

    wait_budget_s: float
    """The longest a ``continue_call`` can take (ring timeout plus transcript timeout)."""

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one RPC method; returns its payload or raises :class:`GatewayError`."""
        ...

    def call_events(self) -> AsyncIterator[list[str]]:
        """Batches of call ids whose calls just changed, following the gateway's event feed.

        Ends only when cancelled; a gateway that goes away is waited for.
        """
        ...

    async def aclose(self) -> None: ...


def _wait_budget_s(config: AppConfig) -> float:
    return (config.voice.ring_timeout_ms + config.voice.transcript_timeout_ms) / 1000


class RemoteGateway:
    """The running gateway, over RPC and the ``/events`` WebSocket, as the CLI reaches it."""

    def __init__(self, config: AppConfig) -> None:
        self._client = AsyncGatewayClient(config)
        self.wait_budget_s = _wait_budget_s(config)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            # The long methods may wait out a whole turn; the gateway bounds them itself.
            return await self._client.call(method, params, read_timeout_s=self.wait_budget_s + 30)
        except ClientError as err:
            raise GatewayError(err.code, err.message) from None

    async def call_events(self) -> AsyncIterator[list[str]]:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        headers = {"Authorization": f"Bearer {self._client.token}"} if self._client.token else {}
        since = 0
        delay = 0.5
        while True:
            try:
                async with connect(
                    f"{self._client.ws_url}?since={since}", additional_headers=headers
                ) as socket:
                    delay = 0.5
                    async for batch in _batches(socket):
                        ids: list[str] = []
                        for message in batch:
                            event = json.loads(message)
                            if isinstance(event.get("seq"), int):
                                since = max(since, event["seq"])
                            if isinstance(event.get("callId"), str):
                                ids.append(event["callId"])
                        if ids:
                            yield ids
            except (OSError, ConnectionClosed, InvalidStatus) as err:
                log.debug("event feed unavailable (%s); retrying in %.1f s", err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)

    async def aclose(self) -> None:
        await self._client.aclose()


async def _batches(socket: Any) -> AsyncIterator[list[str | bytes]]:
    """Messages grouped by what has already arrived, so a replayed backlog is one batch.

    A reconnect replays the log after the last event seen; the first connection replays it all.
    Grouping what is already buffered turns that burst into one notification per resource
    instead of one per old event (resource updates are level triggers: "read it again").
    """
    while True:
        first = await socket.recv()
        batch = [first]
        while True:
            try:
                # A zero-timeout receive takes only what is already buffered; cancelling
                # ``recv`` loses nothing (websockets documents it as cancellation-safe).
                batch.append(await asyncio.wait_for(socket.recv(), timeout=0.001))
            except TimeoutError:
                break
        yield batch


class LocalGateway:
    """The gateway's own plugin, for the server mounted on the gateway listener."""

    def __init__(self, plugin: VoiceCallPlugin) -> None:
        self._plugin = plugin
        self.wait_budget_s = _wait_budget_s(plugin.config)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = await self._plugin.call_rpc(method, params)
        if not answer["ok"]:
            raise GatewayError(answer["error"]["code"], answer["error"]["message"])
        payload: dict[str, Any] = answer["payload"]
        return payload

    async def call_events(self) -> AsyncIterator[list[str]]:
        feed = self._plugin.service.feed
        while True:
            queue = feed.subscribe()
            try:
                while True:
                    try:
                        record = await asyncio.wait_for(queue.get(), timeout=15)
                    except TimeoutError:
                        if not feed.is_subscribed(queue):
                            break  # dropped for falling behind: subscribe again
                        continue
                    if record is None:
                        return
                    ids = [record.call_id]
                    while not queue.empty():
                        more = queue.get_nowait()
                        if more is None:
                            yield ids
                            return
                        ids.append(more.call_id)
                    yield ids
            finally:
                feed.unsubscribe(queue)

    async def aclose(self) -> None:
        return None


def _tool(definition: dict[str, Any], annotations: types.ToolAnnotations) -> types.Tool:
    # The gateway tool's own schema object, not a copy: hosts see exactly what the plugin offers.
    return types.Tool(
        name=definition["name"],
        description=definition["description"],
        input_schema=definition["parameters"],
        annotations=annotations,
    )


def _text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2)


def _ok(payload: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=_text(payload))], structured_content=payload
    )


def _tool_error(code: str, message: str) -> types.CallToolResult:
    body = {"error": {"code": code, "message": message}}
    return types.CallToolResult(
        content=[types.TextContent(text=_text(body))], structured_content=body, is_error=True
    )


def _call_id_of(uri: str) -> str | None:
    if uri.startswith(_CALL_URI_PREFIX) and len(uri) > len(_CALL_URI_PREFIX):
        call_id = uri[len(_CALL_URI_PREFIX) :]
        if "/" not in call_id:
            return call_id
    return None


def _known_uri(uri: str) -> bool:
    return uri == CALLS_URI or _call_id_of(uri) is not None


def _peer(session: ServerSession) -> object:
    # One ServerSession is made per request; the connection behind it is what identifies a
    # subscriber across its subscribe and unsubscribe requests. The SDK keeps it private.
    return getattr(session, "_connection", session)


class VoiceCallMcp:
    """The MCP server over one :class:`GatewayBackend`.

    Args:
        backend: how to reach the gateway.
    """

    def __init__(self, backend: GatewayBackend) -> None:
        self.backend = backend
        self.bus = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.bus)
        self._subscribers: dict[str, dict[object, ServerSession]] = {}
        self._listeners = 0
        self._task_group: TaskGroup | None = None
        self._following = False
        self.server: Server[dict[str, Any]] = Server(
            "voicecall",
            version=__version__,
            title="voicecall: a telephone for your agent",
            instructions=_INSTRUCTIONS,
            lifespan=self._lifespan,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_resource_templates,
            on_read_resource=self._read_resource,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._unsubscribe,
            on_subscriptions_listen=self._listen,
        )

    def initialization_options(self) -> Any:
        return self.server.create_initialization_options(NotificationOptions())

    @asynccontextmanager
    async def _lifespan(self, _server: Server[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        async with anyio.create_task_group() as group:
            self._task_group = group
            try:
                yield {}
            finally:
                self._task_group = None
                self._following = False
                self.listen.close()
                group.cancel_scope.cancel()

    # ------------------------------------------------------------------ tools

    async def _list_tools(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                _tool(
                    VOICE_CALL_TOOL_SCHEMA,
                    types.ToolAnnotations(
                        title="Phone call",
                        read_only_hint=False,
                        destructive_hint=True,
                        open_world_hint=True,
                    ),
                ),
                _tool(
                    LIST_CALLS_TOOL,
                    types.ToolAnnotations(
                        title="List phone calls", read_only_hint=True, open_world_hint=False
                    ),
                ),
            ]
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = params.arguments or {}
        try:
            if params.name == VOICE_CALL_TOOL_SCHEMA["name"]:
                method, rpc_params = voice_call_request(arguments)
            elif params.name == LIST_CALLS_TOOL["name"]:
                method, rpc_params = "voicecall.list", _list_params(arguments)
            else:
                return _tool_error("invalid_request", f"unknown tool {params.name!r}")
        except CallerError as err:
            return _tool_error(err.code, err.detail)
        try:
            if method == "voicecall.continue":
                payload = await self._wait_with_progress(ctx, method, rpc_params)
            else:
                payload = await self.backend.call(method, rpc_params)
        except GatewayError as err:
            return _tool_error(err.code, err.message)
        return _ok(payload)

    async def _wait_with_progress(
        self, ctx: ServerRequestContext[Any], method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Run a long method, telling the host every few seconds that it is still waiting.

        A host that cancels the request cancels this scope: the wait stops (the RPC request is
        closed) and the call itself carries on.
        """
        budget = self.backend.wait_budget_s
        started = time.monotonic()

        async def report() -> None:
            while True:
                waited = time.monotonic() - started
                await ctx.session.report_progress(
                    progress=round(waited, 1),
                    total=budget,
                    message=f"waiting for the callee to answer ({waited:.0f} s so far)",
                )
                await anyio.sleep(PROGRESS_INTERVAL_S)

        refused: GatewayError | None = None
        payload: dict[str, Any] = {}
        async with anyio.create_task_group() as group:
            group.start_soon(report)
            try:
                payload = await self.backend.call(method, params)
            except GatewayError as err:
                refused = err  # raised outside, so the task group does not wrap it in a group
            finally:
                group.cancel_scope.cancel()
        if refused is not None:
            raise refused
        return payload

    # ------------------------------------------------------------------ resources

    async def _list_resources(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=CALLS_URI,
                    name="calls",
                    title="Phone calls",
                    description="Every call, newest first, with state and transcript.",
                    mime_type="application/json",
                )
            ]
        )

    async def _list_resource_templates(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=CALL_URI_TEMPLATE,
                    name="call",
                    title="One phone call",
                    description="One call's state and transcript; subscribe to follow it live.",
                    mime_type="application/json",
                )
            ]
        )

    async def _read_resource(
        self, _ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            if uri == CALLS_URI:
                payload = await self.backend.call("voicecall.list", {})
            elif (call_id := _call_id_of(uri)) is not None:
                status = await self.backend.call("voicecall.status", {"callId": call_id})
                if not status.get("found"):
                    raise MCPError(types.INVALID_PARAMS, f"no call with id {call_id!r}", uri)
                payload = status["call"]
            else:
                raise MCPError(types.INVALID_PARAMS, f"unknown resource {uri!r}", uri)
        except GatewayError as err:
            raise MCPError(types.INTERNAL_ERROR, err.message, {"code": err.code}) from None
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(
                    uri=uri, mime_type="application/json", text=_text(payload)
                )
            ]
        )

    async def _subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        uri = str(params.uri)
        if not _known_uri(uri):
            raise MCPError(types.INVALID_PARAMS, f"unknown resource {uri!r}", uri)
        self._subscribers.setdefault(uri, {})[_peer(ctx.session)] = ctx.session
        self._follow()
        return types.EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        uri = str(params.uri)
        peers = self._subscribers.get(uri, {})
        peers.pop(_peer(ctx.session), None)
        if not peers:
            self._subscribers.pop(uri, None)
        return types.EmptyResult()

    async def _listen(
        self, ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        self._follow()
        return await self.listen(ctx, params)

    def _follow(self) -> None:
        """Start following the gateway's feed once somebody is interested."""
        if self._following or self._task_group is None:
            return
        self._following = True
        self._task_group.start_soon(self._follow_feed)

    async def _follow_feed(self) -> None:
        try:
            async for call_ids in self.backend.call_events():
                uris = {CALLS_URI, *(_CALL_URI_PREFIX + call_id for call_id in call_ids)}
                for uri in sorted(uris):
                    await self._announce(uri)
        finally:
            self._following = False

    async def _announce(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri=uri))
        for peer, session in list(self._subscribers.get(uri, {}).items()):
            try:
                await session.send_resource_updated(uri)
            except Exception as err:  # the subscriber's connection is gone
                log.debug("dropping subscriber to %s: %s", uri, err)
                self._subscribers.get(uri, {}).pop(peer, None)


def _list_params(arguments: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(arguments) - {"active", "limit"})
    if unknown:
        raise CallerError(f"list_calls does not take: {', '.join(unknown)}")
    return dict(arguments)


async def serve_stdio(mcp: VoiceCallMcp) -> None:
    """Serve ``mcp`` on this process's stdin and stdout until the host closes them."""
    from mcp.server.stdio import stdio_server

    try:
        async with stdio_server() as (read_stream, write_stream):
            await mcp.server.run(read_stream, write_stream, mcp.initialization_options())
    finally:
        await mcp.backend.aclose()


def run_stdio(config: AppConfig) -> int:
    """``voicecall mcp``: the MCP server on stdio over the running gateway."""
    anyio.run(serve_stdio, VoiceCallMcp(RemoteGateway(config)))
    return 0
