"""Harnesses that let one contract suite run against every telephony adapter.

Each harness builds the adapter against its carrier (the mock is its own carrier; the real
carriers run against their simulators) and exposes what the callee heard, so the same test
functions can assert the same behaviour everywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from voicecall.adapters.agent.rules import RuleBasedResponder
from voicecall.adapters.clock import SystemClock
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.domain.call import Call, CallState
from voicecall.domain.events import CallEvent
from voicecall.domain.policy import InboundPolicy, InboundPolicyMode, OutboundPolicy
from voicecall.domain.ports import TelephonyProvider
from voicecall.services.calls import CallService, CallSettings
from voicecall.services.events import EventFeed

ALLOWED = "+15551230001"
CALLEE = "+15557654321"
REPLIES = ("Yes, I can talk.", "Noon works.", "Bye now.")

# The adapters the contract suite covers; the guard test keeps this equal to the container's.
TELEPHONY_ADAPTERS = ["mock"]


class CarrierHarness(Protocol):
    name: str

    def build(self, outcome: str) -> TelephonyProvider: ...

    def heard(self, call: Call) -> list[str]: ...

    def ring_inbound(self, from_number: str | None) -> CallEvent: ...

    def rejections(self, call: Call) -> int: ...

    def break_carrier(self) -> None: ...

    async def aclose(self) -> None: ...


class MockHarness:
    name = "mock"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.carrier: MockTelephony | None = None

    def build(self, outcome: str) -> MockTelephony:
        self.carrier = MockTelephony(
            MockSettings(answer_delay_ms=20, outcome=outcome, replies=REPLIES),
            SystemClock(),
            self.tmp / "mock-carrier.json",
        )
        return self.carrier

    def heard(self, call: Call) -> list[str]:
        assert self.carrier is not None
        return self.carrier.heard(call.provider_call_id or "")

    def ring_inbound(self, from_number: str | None) -> CallEvent:
        assert self.carrier is not None
        return self.carrier.simulate_inbound(from_number, "+15550100000")

    def rejections(self, call: Call) -> int:
        assert self.carrier is not None
        return self.carrier.counters(call.provider_call_id or "")["rejected"]

    def break_carrier(self) -> None:
        assert self.carrier is not None
        self.carrier.unavailable = True

    async def aclose(self) -> None:
        return None


HARNESSES: dict[str, type[Any]] = {"mock": MockHarness}


class Line:
    """A call service over one adapter, with helpers to wait for states in real time."""

    def __init__(self, harness: CarrierHarness, service: CallService) -> None:
        self.harness = harness
        self.service = service

    async def wait_state(self, call_id: str, *wanted: CallState, within: float = 5.0) -> Call:
        deadline = time.monotonic() + within
        while True:
            call = await self.service.get(call_id)
            assert call is not None
            if call.state in wanted:
                return call
            if time.monotonic() > deadline:
                raise AssertionError(f"call stuck in {call.state.value}, wanted {wanted}")
            await asyncio.sleep(0.01)


@pytest.fixture(params=TELEPHONY_ADAPTERS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> CarrierHarness:
    harness: CarrierHarness = HARNESSES[request.param](tmp_path)
    return harness


async def open_line(harness: CarrierHarness, tmp: Path, outcome: str = "answer") -> Line:
    provider = harness.build(outcome)
    store = SqliteCallStore(tmp / "store")
    service = CallService(
        provider=provider,
        store=store,
        clock=SystemClock(),
        responder=RuleBasedResponder(),
        feed=EventFeed(store),
        settings=CallSettings(
            from_number="+15550100000",
            outbound=OutboundPolicy(max_concurrent_calls=2, notify_hangup_delay_sec=0.05),
            inbound=InboundPolicy(InboundPolicyMode.ALLOWLIST, frozenset({ALLOWED})),
            ring_timeout_s=5.0,
            transcript_timeout_s=5.0,
        ),
    )
    await service.start()
    return Line(harness, service)


@pytest.fixture
async def line(harness: CarrierHarness, tmp_path: Path) -> AsyncIterator[Line]:
    opened = await open_line(harness, tmp_path)
    yield opened
    await opened.service.stop()
    await harness.aclose()
