"""A rig for the webhook door: the real Litestar app with the real carrier verifiers, reached
over ASGI with a chosen peer address, in front of a real call service on SQLite.

The carrier behind the door is a ``SignedCarrier``: the mock's call handling plus one real
signature verifier. A verified form body that carries ``CallSid`` and ``SpeechResult`` becomes a
caller-speech event (a side effect we can count); any other verified body is acknowledged with
the carrier's empty answer and changes nothing, as the issue asks of carriers whose events are
not interpreted yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from voicecall.adapters.agent.rules import RuleBasedResponder
from voicecall.adapters.clock import SystemClock
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.config import AppConfig, parse_config
from voicecall.container import call_settings
from voicecall.domain.call import Call, CallDirection, CallMode, CallState
from voicecall.domain.errors import CallerError
from voicecall.domain.events import CallEvent, CallSpeech
from voicecall.domain.signed_url import Verification
from voicecall.domain.webhook import WebhookRequest, WebhookResponse
from voicecall.entrypoints.webhook_app import WebhookDoor, create_webhook_app
from voicecall.services.calls import CallService
from voicecall.services.events import EventFeed

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response />'
LIVE_SID = "CA1234567890ABCDE"


class Verifier:
    """What the door needs of a carrier's verifier (the real ones satisfy it)."""

    def has_signature_headers(self, header_names: Iterable[str]) -> bool: ...

    def verify(self, request: WebhookRequest) -> Verification: ...


class SignedCarrier(MockTelephony):
    signs_webhooks = True

    def __init__(self, name: str, verifier: Any, clock: SystemClock, block: asyncio.Event | None):
        super().__init__(MockSettings(answer_delay_ms=10), clock)
        self.name = name
        self.verifier = verifier
        self.applied: list[bytes] = []
        self.block = block
        self.entered = 0
        # A carrier whose bodies are not forms (Telnyx) plugs in its own stand-in parser.
        self.parse_body: Callable[[bytes], None] | None = None

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        return bool(self.verifier.has_signature_headers(header_names))

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        verdict: Verification = self.verifier.verify(request)
        return verdict

    async def parse_webhook(self, request: WebhookRequest) -> Sequence[CallEvent]:
        self.entered += 1
        if self.block is not None:
            await self.block.wait()
        self.applied.append(request.body)
        if self.parse_body is not None:
            self.parse_body(request.body)
            return []
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        if "Malformed" in form:
            raise CallerError("the webhook lacks CallStatus")
        if "CallSid" in form and "SpeechResult" in form:
            return [
                CallSpeech(
                    provider_call_id=form["CallSid"][0],
                    transcript=form["SpeechResult"][0],
                    dedupe_key=f"{form['CallSid'][0]}:{form.get('SequenceNumber', ['0'])[0]}",
                )
            ]
        return []

    def webhook_response(self, request: WebhookRequest, calls: Sequence[Call]) -> WebhookResponse:
        return WebhookResponse(200, EMPTY_TWIML, "text/xml")


class Door:
    """One webhook listener over one store; ``restart()`` builds a new one on the same store."""

    def __init__(
        self,
        tmp: Path,
        provider: str,
        verifier_factory: Callable[[AppConfig], Any] | None,
        plugin: dict[str, Any],
        peer: str = "203.0.113.9",
        block: asyncio.Event | None = None,
        **door_options: Any,
    ) -> None:
        self.tmp = tmp
        self.peer = peer
        self.block = block
        self.door_options = door_options
        settings: dict[str, Any] = {
            "enabled": True,
            "provider": "mock",
            "store": str(tmp / "store"),
            "serve": {"bind": "127.0.0.1", "port": 3334, "path": "/voice/webhook"},
        }
        settings.update(plugin)
        self.config = parse_config(
            {"plugins": {"entries": {"voice-call": {"config": settings}}}}, env={}
        )
        self.provider = provider
        self.verifier_factory = verifier_factory
        self.service: CallService | None = None
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> Door:
        clock = SystemClock()
        carrier: MockTelephony
        if self.verifier_factory is None:
            carrier = MockTelephony(MockSettings(answer_delay_ms=10), clock)
        else:
            carrier = SignedCarrier(
                self.provider, self.verifier_factory(self.config), clock, self.block
            )
        store = SqliteCallStore(self.tmp / "store")
        self.service = CallService(
            provider=carrier,
            store=store,
            clock=clock,
            responder=RuleBasedResponder(),
            feed=EventFeed(store),
            settings=call_settings(self.config),
        )
        await self.service.start()
        door = WebhookDoor(self.service, self.config, **self.door_options)
        app = create_webhook_app(self.service, self.config, door)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(self.peer, 40123)),
            base_url="http://127.0.0.1:3334",
        )
        return self

    @property
    def carrier(self) -> SignedCarrier:
        assert self.service is not None
        carrier = self.service.provider
        assert isinstance(carrier, SignedCarrier)
        return carrier

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        assert self.client is not None
        return await self.client.post(path, content=body, headers=headers or {}, **kwargs)

    async def live_call(self, provider_call_id: str = LIVE_SID) -> Call:
        """A call already listening on the carrier side, as if placed earlier."""
        assert self.service is not None
        now = self.service.clock.now()
        call = Call(
            call_id="call-under-test",
            provider=self.provider,
            direction=CallDirection.OUTBOUND,
            from_number="+15550100000",
            to_number="+15551230001",
            mode=CallMode.CONVERSATION,
            started_at=now,
            provider_call_id=provider_call_id,
            state=CallState.LISTENING,
            answered_at=now,
            last_activity_at=now,
        )
        await self.service.store.save(call)
        return call

    async def transcript(self) -> list[str]:
        assert self.service is not None
        call = await self.service.get("call-under-test")
        return [line.text for line in call.transcript] if call else []

    async def log_size(self) -> int:
        assert self.service is not None
        return len(await self.service.store.log_since(0))

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.service is not None:
            await self.service.stop()

    async def restart(self) -> Door:
        await self.stop()
        return await self.start()


@pytest.fixture
async def door_under_fuzz(tmp_path: Path) -> AsyncIterator[Door]:
    from tests.door.test_door import TWILIO_PUBLIC, twilio_verifier

    door = await Door(tmp_path, "twilio", twilio_verifier(), dict(TWILIO_PUBLIC)).start()
    await door.live_call()
    yield door
    await door.stop()
