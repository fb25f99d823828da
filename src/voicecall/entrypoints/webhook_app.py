"""The webhook listener: the carrier paths and nothing else (SPEC §4).

Order matters here, and each step refuses as early and as cheaply as it can:

1. routing: exact path (a trailing slash tolerated), POST only (405), other paths 404;
2. admission (``admission.py``): per client (the TCP peer, or the rightmost untrusted
   ``X-Forwarded-For`` hop under the same trust as the URL), a place among ``max_in_flight``
   or a short wait in a bounded queue (429 when it runs out); a global cap (503); a request
   still reading its body after a short grace loses its place to the next one (408);
3. the carrier's signature headers must be present before a byte of the body is read (401);
4. the body is read with a size cap (413) and a tight deadline (408): a carrier sends a few
   hundred bytes at once;
5. the signature is verified against the URL the carrier signed (401, one log line naming the
   URL(s) checked, never a secret);
6. a verified request whose signature material was seen in the last 10 minutes is answered
   exactly as before and causes nothing (replay);
7. only then is the body parsed (400 when malformed) and applied.

Refusals are logged at most once per client and kind per minute, with a count (``refusal_log.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Litestar, Request, Response, WebSocket, post, websocket
from litestar.di import NamedDependency, Provide
from litestar.exceptions import WebSocketDisconnect

from voicecall.config import AppConfig, url_trust_settings
from voicecall.domain.client_address import client_address
from voicecall.domain.errors import CallerError, VoiceCallError
from voicecall.domain.ports import MediaStreaming
from voicecall.domain.replay import ReplayGuard
from voicecall.domain.signed_url import is_loopback
from voicecall.domain.webhook import WebhookRequest, WebhookResponse
from voicecall.entrypoints.admission import Admission, AdmissionRefused, Ticket
from voicecall.entrypoints.refusal_log import RefusalLog
from voicecall.services.calls import CallService

__all__ = [
    "BODY_STALL_TIMEOUT_S",
    "MAX_IN_FLIGHT_PER_PEER",
    "MAX_WEBHOOK_BODY",
    "WebhookDoor",
    "create_webhook_app",
]

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 1024 * 1024
MAX_IN_FLIGHT_PER_PEER = 32
# The whole body of an unverified request must arrive within this (a carrier's is a few
# hundred bytes sent at once; 1 MiB, the cap, still fits at ~200 kB/s).
BODY_STALL_TIMEOUT_S = 5.0


SELF_TEST_PARAM = "voicecallSelfTest"


def _is_self_test(query: str) -> bool:
    return any(part.split("=", 1)[0] == SELF_TEST_PARAM for part in query.split("&") if part)


def _plain(status: int, message: str) -> Response[bytes]:
    return Response(message.encode(), status_code=status, media_type="text/plain")


class _Refused(Exception):
    def __init__(self, status: int, message: str, log_line: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.log_line = log_line


class WebhookDoor:
    """Everything between a carrier's HTTP request and the call service.

    Args:
        service: applies verified webhooks.
        config: the validated settings (serve path, skipSignatureVerification).
        replay: the replay cache; one per listener.
        max_body: body cap in bytes.
        max_in_flight: requests one client may have in flight at once (more wait briefly).
        body_timeout_s: the deadline for one request's whole body.
        admission: the admission policy; by default one built from ``max_in_flight``.
    """

    def __init__(
        self,
        service: CallService,
        config: AppConfig,
        replay: ReplayGuard | None = None,
        *,
        max_body: int = MAX_WEBHOOK_BODY,
        max_in_flight: int = MAX_IN_FLIGHT_PER_PEER,
        body_timeout_s: float = BODY_STALL_TIMEOUT_S,
        admission: Admission | None = None,
    ) -> None:
        self.service = service
        self.provider = service.provider
        self.skip_verification = config.voice.skip_signature_verification
        self.replay = replay or ReplayGuard()
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.body_timeout_s = body_timeout_s
        self.admission = admission or Admission(per_peer=max_in_flight)
        self.trust = url_trust_settings(config.voice)
        self.refusals = RefusalLog(log, service.clock.now)
        self._pending: dict[str, asyncio.Future[WebhookResponse]] = {}

    async def handle(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        peer = request.client.host if request.client else None
        headers = tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in request.scope["headers"]
        )
        client = client_address(WebhookRequest("POST", "", "", headers, b"", peer), self.trust)
        client_key = client or "unknown peer"
        try:
            async with self.admission.admit(client_key) as ticket:
                return await self._handle(request, peer, headers, ticket)
        except AdmissionRefused as refused:
            self.refusals.refused(
                client_key,
                "webhook refused for %s: %s",
                client_key,
                refused.message,
                kind="admission",
            )
            return _plain(refused.status, refused.message)
        except _Refused as refused:
            if refused.log_line:
                self.refusals.refused(client_key, refused.log_line, kind=refused.message)
            return _plain(refused.status, refused.message)
        except Exception:
            # Nothing a carrier sends may turn into a 500; the carrier will retry a 503.
            log.exception("webhook handling failed")
            return _plain(503, "temporarily unavailable")

    async def _handle(
        self,
        request: Request[Any, Any, Any],
        peer: str | None,
        headers: tuple[tuple[str, str], ...],
        ticket: Ticket,
    ) -> Response[bytes]:
        verify = self.provider.signs_webhooks and not self.skip_verification
        if verify and not self.provider.has_signature_headers(name for name, _ in headers):
            ticket.body_read()
            raise _Refused(
                401,
                "missing signature",
                f"refused {self.provider.name} webhook from {ticket.client}: no signature headers",
            )
        body = await self._read_body(request, ticket)
        webhook = WebhookRequest(
            method=request.method.upper(),
            path=_path_as_received(request.scope),
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            peer=peer,
        )
        replay_key: str | None = None
        if verify:
            verdict = self.provider.verify_webhook(webhook)
            if not verdict.ok:
                self.refusals.refused(
                    ticket.client,
                    "refused %s webhook from %s: %s; URL(s) checked: %s",
                    self.provider.name,
                    ticket.client,
                    verdict.reason,
                    ", ".join(verdict.checked_urls) or "none",
                    kind="signature",
                )
                return _plain(401, "invalid signature")
            replay_key = verdict.replay_key
        if verify and _is_self_test(webhook.query):
            # `voicecall doctor` signed this as the carrier would: it came through the public
            # path and verified. Say so and change nothing (no call, no replay entry).
            return _plain(200, "voicecall self-test verified")
        if replay_key is None:
            return _to_response(await self._apply(webhook))
        return _to_response(await self._apply_once(replay_key, webhook))

    async def _apply_once(self, key: str, webhook: WebhookRequest) -> WebhookResponse:
        """Apply a verified request unless its signature material was seen; same answer."""
        cached = self.replay.seen(key, self.service.clock.now())
        if cached is not None:
            log.info("replayed %s webhook answered from cache", self.provider.name)
            return cached.response
        pending = self._pending.get(key)
        if pending is not None:
            # The same request is being handled right now: share its answer.
            return await asyncio.shield(pending)
        future: asyncio.Future[WebhookResponse] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            answer = await self._apply(webhook)
            if answer.status < 300:
                self.replay.remember(key, self.service.clock.now(), answer)
            future.set_result(answer)
            return answer
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: a lone request need not log it twice
            raise
        finally:
            del self._pending[key]

    async def _apply(self, webhook: WebhookRequest) -> WebhookResponse:
        try:
            return await self.service.handle_webhook(webhook)
        except CallerError as err:
            return WebhookResponse(400, err.detail.encode(), "text/plain")
        except VoiceCallError as err:
            log.warning("webhook could not be applied: %s", err.detail)
            return WebhookResponse(503, b"temporarily unavailable", "text/plain")

    async def _read_body(self, request: Request[Any, Any, Any], ticket: Ticket) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            ticket.body_read()
            raise _Refused(413 if declared.isdigit() else 400, "bad or oversized body")
        body = bytearray()
        loop = asyncio.get_running_loop()
        try:
            # One deadline for the whole body (at most 1 MiB): cheaper than one per chunk.
            # Evicted for stalling, the request's deadline is brought forward to now.
            async with asyncio.timeout(self.body_timeout_s) as deadline:
                ticket.on_evict = lambda: deadline.reschedule(loop.time())
                if ticket.evicted:
                    deadline.reschedule(loop.time())
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > self.max_body:
                        raise _Refused(413, "body too large")
        except TimeoutError:
            why = "lost its place to another request" if ticket.evicted else "timed out"
            raise _Refused(
                408,
                "body stalled",
                f"{self.provider.name} webhook from {ticket.client}: body stalled and {why}",
            ) from None
        finally:
            ticket.on_evict = None
            ticket.body_read()
        return bytes(body)


def _path_as_received(scope: Any) -> str:
    # Litestar normalises scope["path"] (a trailing slash is dropped for routing); the
    # carrier signed the path exactly as it sent it, percent-encoding included.
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1").split("?", 1)[0]
    return str(scope["path"])


def _to_response(answer: WebhookResponse) -> Response[bytes]:
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


async def carrier_webhook(
    request: Request[Any, Any, Any], door: NamedDependency[WebhookDoor]
) -> Response[bytes]:
    """The one carrier path (mounted at ``serve.path``)."""
    return await door.handle(request)


def create_webhook_app(
    service: CallService, config: AppConfig, door: WebhookDoor | None = None
) -> Litestar:
    """The carrier-facing app: POST on ``serve.path`` only (other methods 405, paths 404)."""
    door = door or WebhookDoor(service, config)
    voice = config.voice
    if voice.provider == "mock" and not is_loopback(voice.serve.bind):
        log.warning(
            "the mock carrier's webhook takes UNSIGNED events and is served on %s; "
            "anyone who can reach it can drive calls. Bind to 127.0.0.1 unless you mean it.",
            voice.serve.bind,
        )
    handler = post(voice.serve.path, status_code=200, name="carrier-webhook")(carrier_webhook)
    handlers: list[Any] = [handler]
    media = getattr(service, "media", None)
    provider = service.provider if media is not None else None
    if media is not None and isinstance(provider, MediaStreaming):

        async def media_stream(socket: WebSocket[Any, Any, Any]) -> None:
            """A carrier's media stream (``streaming.streamPath``); the service checks its
            token before a byte of audio moves."""
            await socket.accept()
            await media.run(_StreamSocket(socket), provider.stream_dialect())

        handlers.append(websocket(voice.streaming.stream_path, name="media-stream")(media_stream))
    return Litestar(
        route_handlers=handlers,
        dependencies={"door": Provide(lambda: door, use_cache=True, sync_to_thread=False)},
        debug=False,
        openapi_config=None,
        logging_config=None,
    )


class _StreamSocket:
    """Litestar's WebSocket as the media service's ``StreamSocket``."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self._socket = socket
        self._closed = False

    async def send_text(self, text: str) -> None:
        await self._socket.send_text(text)

    async def receive_text(self) -> str | None:
        if self._closed:
            return None
        try:
            message = await self._socket.receive_data(mode="text")
        except WebSocketDisconnect:
            self._closed = True
            return None
        except (RuntimeError, UnicodeDecodeError):  # a binary or broken frame
            return None
        return message if isinstance(message, str) else None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._socket.close(code=code, reason=reason)
        except (RuntimeError, WebSocketDisconnect):
            return
