"""Shared fakes for service tests: fake clock, in-memory store, the mock carrier."""

from __future__ import annotations

import attrs
import pytest

from voicecall.adapters.agent.rules import RuleBasedResponder
from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.domain.policy import InboundPolicy, InboundPolicyMode, OutboundPolicy
from voicecall.services.calls import CallService, CallSettings
from voicecall.services.events import EventFeed
from voicecall.testing.clock import FakeClock

ALLOWED = "+15551230001"
CALLEE = "+15557654321"


@attrs.define
class Rig:
    clock: FakeClock
    store: MemoryCallStore
    carrier: MockTelephony
    service: CallService
    feed: EventFeed


def make_settings(**overrides: object) -> CallSettings:
    base: dict[str, object] = {
        "from_number": "+15550100000",
        "outbound": OutboundPolicy(max_concurrent_calls=1, notify_hangup_delay_sec=3.0),
        "inbound": InboundPolicy(InboundPolicyMode.ALLOWLIST, frozenset({ALLOWED})),
        "max_duration_s": 300.0,
        "ring_timeout_s": 30.0,
        "transcript_timeout_s": 180.0,
        "response_timeout_s": 30.0,
        "stale_call_reaper_s": 120.0,
    }
    base.update(overrides)
    return CallSettings(**base)  # type: ignore[arg-type]


async def make_rig(
    *,
    settings: CallSettings | None = None,
    mock: MockSettings | None = None,
    store: MemoryCallStore | None = None,
    carrier: MockTelephony | None = None,
    clock: FakeClock | None = None,
    responder: object | None = None,
    media: object | None = None,
) -> Rig:
    clock = clock or FakeClock()
    store = store or MemoryCallStore()
    carrier = carrier or MockTelephony(mock or MockSettings(answer_delay_ms=300), clock)
    feed = EventFeed(store)
    service = CallService(
        provider=carrier,
        store=store,
        clock=clock,
        responder=responder or RuleBasedResponder(),  # type: ignore[arg-type]
        feed=feed,
        settings=settings or make_settings(),
        media=media,  # type: ignore[arg-type]
    )
    await service.start()
    return Rig(clock, store, carrier, service, feed)


@pytest.fixture
async def rig() -> Rig:
    r = await make_rig()
    yield r
    await r.service.stop()
