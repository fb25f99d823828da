"""The gateway listener: ``POST /rpc``, the ``/events`` WebSocket for ``tail``, ``GET /health``.

It is a separate listener from the webhook one, so exposing webhooks through a tunnel never
exposes RPC.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections import OrderedDict
from typing import Any

from litestar import Litestar, Request, Response, get, post, websocket
from litestar.connection import WebSocket
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, WebSocketDisconnect

from voicecall.domain.json_input import InvalidJson, parse_json
from voicecall.domain.ports import EventRecord
from voicecall.entrypoints.mcp_http import mcp_route
from voicecall.entrypoints.plugin import VoiceCallPlugin
from voicecall.entrypoints.rpc import error_envelope

__all__ = ["EventStreams", "create_gateway_app", "record_to_dict"]

log = logging.getLogger(__name__)

_MAX_RPC_BODY = 1024 * 1024


def record_to_dict(record: EventRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "callId": record.call_id,
        "type": record.type,
        "at": record.at,
        "data": record.data,
    }


class EventStreams:
    """The open ``/events`` streams, so that shutdown can end them.

    uvicorn waits for every running WebSocket handler before it returns from shutdown, and a
    handler parked on an idle feed would hold ``voicecall serve`` up after SIGTERM. ``close()``
    wakes every stream (it ends as if the feed had closed) and refuses any that connect later.
    """

    def __init__(self) -> None:
        self.closed = False
        self._open: set[asyncio.Queue[EventRecord | None]] = set()
        # Each record is serialised once, not once per subscriber.
        self._texts: OrderedDict[int, str] = OrderedDict()

    def text(self, record: EventRecord) -> str:
        """The JSON frame for ``record``, shared by every stream that sends it."""
        text = self._texts.get(record.seq)
        if text is None:
            text = self._texts[record.seq] = json.dumps(record_to_dict(record))
            if len(self._texts) > 2048:
                self._texts.popitem(last=False)
        return text

    def register(self, queue: asyncio.Queue[EventRecord | None]) -> bool:
        """Track one stream's queue; False when shutdown has begun (the stream must not start)."""
        if self.closed:
            return False
        self._open.add(queue)
        return True

    def forget(self, queue: asyncio.Queue[EventRecord | None]) -> None:
        self._open.discard(queue)

    def __len__(self) -> int:
        return len(self._open)

    def close(self) -> None:
        self.closed = True
        for queue in list(self._open):
            while True:
                try:
                    queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    # A full queue's stream is behind anyway; make room for the end marker.
                    queue.get_nowait()


_MAX_SEQ = 2**63 - 1


def _parse_since(raw: str) -> int | None:
    """``since`` as a log sequence number; None unless it is 0..2^63-1 (SQLite's INTEGER)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if value <= _MAX_SEQ else None


def _authorised(presented: str | None, token: str) -> bool:
    if not presented:
        return False
    scheme, _, value = presented.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def _json(status: int, body: dict[str, Any]) -> Response[bytes]:
    return Response(json.dumps(body).encode(), status_code=status, media_type="application/json")


@post("/rpc", status_code=200)
async def rpc(
    request: Request[Any, Any, Any], plugin: VoiceCallPlugin, token: str
) -> Response[bytes]:
    """One RPC call: ``{"method": …, "params": {…}}`` with a bearer token."""
    if not _authorised(request.headers.get("authorization"), token):
        return _json(401, error_envelope("unauthorized", "missing or wrong gateway token"))
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_RPC_BODY:
            return _json(413, error_envelope("too_large", "request body over 1 MiB"))
    try:
        message = parse_json(body)
    except InvalidJson as err:
        return _json(400, error_envelope("invalid_request", err.detail))
    if not isinstance(message, dict):
        return _json(400, error_envelope("invalid_request", 'expected {"method": …, "params": …}'))
    answer = await plugin.call_rpc(message.get("method"), message.get("params"))
    return _json(200, answer)


@get("/health")
async def health(plugin: NamedDependency[VoiceCallPlugin]) -> dict[str, Any]:
    return {"ok": True, "provider": plugin.service.provider.name}


@websocket("/events")
async def events(
    socket: WebSocket[Any, Any, Any],
    plugin: NamedDependency[VoiceCallPlugin],
    token: NamedDependency[str],
    streams: NamedDependency[EventStreams],
) -> None:
    """Stream call events as JSON text frames; ``?since=N`` first replays the log after N.

    ``?since=now`` (what ``voicecall tail`` sends by default) replays nothing: only events
    recorded after the stream was opened are sent.
    """
    presented = socket.headers.get("authorization")
    if presented is None and socket.query_params.get("token"):
        presented = f"Bearer {socket.query_params.get('token')}"
    if not _authorised(presented, token):
        await socket.close(code=4401, reason="unauthorized")
        return
    raw_since = socket.query_params.get("since", "0")
    from_now = raw_since == "now"
    since = 0 if from_now else _parse_since(raw_since)
    if since is None:
        # Accepted first so the client reads the code (a refusal before accept is a bare 403).
        await socket.accept()
        await socket.close(code=4400, reason="since must be 'now' or an integer 0..2^63-1")
        return
    feed = plugin.service.feed
    queue = feed.subscribe()
    if not streams.register(queue):
        feed.unsubscribe(queue)
        await socket.close(code=1001, reason="the gateway is shutting down")
        return
    await socket.accept()
    last = since
    try:
        # Subscribe first, then replay, so nothing falls between the log and the live feed.
        replayed = False
        while not from_now:
            backlog = await plugin.service.store.log_since(last, limit=500)
            for record in backlog:
                await socket.send_text(streams.text(record))
                last = record.seq
                replayed = True
            if len(backlog) < 500:
                break
        if not replayed:
            # Nothing after `since` (it may even be beyond the newest event): everything
            # published from now on is new, whatever its number.
            last = -1
        while True:
            item: EventRecord | None
            if not queue.empty():
                # A backlog is read without a timer: wait_for costs a task per record, and a
                # stream behind must catch up cheaply or it falls further behind.
                item = queue.get_nowait()
            else:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    if not feed.is_subscribed(queue):
                        break
                    await socket.send_text(json.dumps({"type": "keepalive"}))
                    continue
            if item is None:
                break
            record = item
            if record is feed.DROPPED:
                await socket.close(
                    code=4429, reason=f"too far behind; reconnect with since={max(last, 0)}"
                )
                return
            if record.seq <= last:
                continue
            await socket.send_text(streams.text(record))
            last = record.seq
    except (WebSocketDisconnect, OSError):
        # uvicorn reports a client gone mid-send as ClientDisconnected, an OSError that is not
        # a ConnectionError; uncaught, the stream would end with 1011 and a traceback.
        pass
    finally:
        streams.forget(queue)
        feed.unsubscribe(queue)
    try:
        await socket.close()
    except Exception:  # the peer may already be gone
        pass


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Litestar's own refusals (404, 405…) keep their status; anything else is logged here
    with its traceback and the client gets a 503 envelope with no detail, never a 500."""
    if isinstance(exc, HTTPException):
        return _json(exc.status_code, error_envelope("invalid_request", exc.detail))
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(503, error_envelope("internal", "internal error; see the gateway log"))


def create_gateway_app(
    plugin: VoiceCallPlugin, token: str, streams: EventStreams | None = None
) -> Litestar:
    """The gateway's Litestar app, with the plugin and token injected through ``Provide``.

    Args:
        plugin: the voice-call plugin whose RPC methods and event feed are served.
        token: the bearer token RPC and ``/events`` require.
        streams: the registry of open event streams; pass one to be able to end them at
            shutdown (``voicecall serve`` does).
    """
    if streams is None:  # not ``or``: an empty registry is falsy
        streams = EventStreams()
    return Litestar(
        route_handlers=[
            rpc,
            health,
            events,
            # The MCP server for remote agent hosts, behind the same token; its sessions end
            # with the event streams at shutdown.
            mcp_route(plugin, lambda presented: _authorised(presented, token), streams.register),
        ],
        dependencies={
            "plugin": Provide(lambda: plugin, use_cache=True, sync_to_thread=False),
            "token": Provide(lambda: token, use_cache=True, sync_to_thread=False),
            "streams": Provide(lambda: streams, use_cache=True, sync_to_thread=False),
        },
        exception_handlers={Exception: _unexpected},
        debug=False,
        openapi_config=None,
        logging_config=None,
    )
