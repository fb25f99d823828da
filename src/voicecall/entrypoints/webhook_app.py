"""The webhook listener: the carrier paths and nothing else (SPEC §4)."""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from typing import Any

from litestar import Litestar, Request, Response, post
from litestar.di import Provide

from voicecall.config import AppConfig
from voicecall.domain.errors import CallerError, VoiceCallError
from voicecall.domain.webhook import WebhookRequest, WebhookResponse
from voicecall.services.calls import CallService

__all__ = ["MAX_WEBHOOK_BODY", "WebhookDoor", "create_webhook_app", "is_loopback_bind"]

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 1024 * 1024
MAX_IN_FLIGHT_PER_PEER = 32


def is_loopback_bind(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def _plain(status: int, message: str) -> Response[bytes]:
    return Response(message.encode(), status_code=status, media_type="text/plain")


class WebhookDoor:
    """Everything between a carrier's HTTP request and the call service."""

    def __init__(self, service: CallService, config: AppConfig) -> None:
        self.service = service
        self.config = config
        self._in_flight: Counter[str] = Counter()

    async def handle(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        peer = request.client.host if request.client else None
        peer_key = peer or "?"
        if self._in_flight[peer_key] >= MAX_IN_FLIGHT_PER_PEER:
            return _plain(429, "too many concurrent requests")
        self._in_flight[peer_key] += 1
        try:
            return await self._handle(request, peer)
        finally:
            self._in_flight[peer_key] -= 1
            if self._in_flight[peer_key] <= 0:
                del self._in_flight[peer_key]

    async def _handle(self, request: Request[Any, Any, Any], peer: str | None) -> Response[bytes]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
            return _plain(413, "body too large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BODY:
                return _plain(413, "body too large")
        webhook = WebhookRequest(
            method=request.method.upper(),
            path=request.scope["path"],
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in request.scope["headers"]
            ),
            body=bytes(body),
            peer=peer,
        )
        try:
            answer = await self.service.handle_webhook(webhook)
        except CallerError as err:
            return _plain(400, err.detail)
        except VoiceCallError as err:
            log.warning("webhook could not be applied: %s", err.detail)
            return _plain(503, "temporarily unavailable")
        except Exception:
            log.exception("webhook handling failed")
            return _plain(503, "temporarily unavailable")
        return _to_response(answer)


def _to_response(answer: WebhookResponse) -> Response[bytes]:
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


def create_webhook_app(service: CallService, config: AppConfig) -> Litestar:
    """The carrier-facing app: POST on ``serve.path`` only (other methods 405, paths 404)."""
    door = WebhookDoor(service, config)

    async def webhook(request: Request[Any, Any, Any], door: WebhookDoor) -> Response[bytes]:
        return await door.handle(request)

    handler = post(config.voice.serve.path, status_code=200, name="carrier-webhook")(webhook)
    if config.voice.provider == "mock" and not is_loopback_bind(config.voice.serve.bind):
        log.warning(
            "the mock carrier's webhook takes UNSIGNED events and is served on %s; "
            "anyone who can reach it can drive calls. Bind to 127.0.0.1 unless you mean it.",
            config.voice.serve.bind,
        )
    return Litestar(
        route_handlers=[handler],
        dependencies={"door": Provide(lambda: door, use_cache=True, sync_to_thread=False)},
        debug=False,
        openapi_config=None,
    )
