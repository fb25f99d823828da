"""Harnesses that let one contract suite run against every telephony adapter.

Each harness builds the adapter against its carrier (the mock is its own carrier; the real
carriers run against their simulators) and exposes what the callee heard, so the same test
functions can assert the same behaviour everywhere.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from voicecall.adapters.agent.rules import RuleBasedResponder
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.adapters.telephony.handset import SimulatedHandset
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.adapters.telephony.mock_stream import MockStream
from voicecall.adapters.websocket import WsConnect
from voicecall.config import AppConfig, parse_config
from voicecall.container import call_settings
from voicecall.domain.call import Call, CallState
from voicecall.domain.ports import Clock, TelephonyProvider
from voicecall.entrypoints.webhook_app import create_webhook_app
from voicecall.services.calls import CallService
from voicecall.services.events import EventFeed
from voicecall.testing.simtime import HeardLine, ScaledClock

ALLOWED = "+15551230001"
CALLEE = "+15557654321"
REPLIES = ("Yes, I can talk.", "Noon works.", "Bye now.")
# Simulated seconds per wall second: speech takes its real time in the simulators' clock,
# and the suite waits 1/SPEED of it. Timing assertions are made in simulated time.
SPEED = 10.0


class CarrierHarness(Protocol):
    """How the contract suite drives one carrier.

    ``build`` starts the carrier side (the mock is its own carrier; a real adapter gets its
    simulator, scripted with ``outcome`` and ``REPLIES``), points the carrier's webhook
    deliveries at ``webhook`` (our real webhook door, in-process) and returns our adapter.
    """

    name: str

    def plugin_config(self) -> dict[str, Any]:
        """Plugin config keys this carrier needs (provider, credentials, URLs)."""

    def build(
        self, config: AppConfig, clock: Clock, outcome: str, webhook: httpx.AsyncClient
    ) -> TelephonyProvider: ...

    def rebuild(self, config: AppConfig, clock: Clock) -> TelephonyProvider:
        """A new adapter on the same carrier: the gateway restarted, the carrier did not."""
        ...

    def heard(self, call: Call) -> list[str]:
        """What the callee heard on the call, in order; a line cut off ends in ``—``."""

    def played(self, call: Call) -> list[HeardLine]:
        """Each line played to the callee, with its start and end in simulated time."""

    def line_dead_at(self, call: Call) -> float | None:
        """When the carrier ended the call (simulated time), None while it is up."""

    async def caller_hangs_up(self, call: Call) -> None:
        """The callee puts the phone down now, whatever is playing."""

    async def ring_inbound(self, from_number: str | None) -> None:
        """The carrier delivers an inbound call from ``from_number`` to our webhook."""

    def rejections(self, call: Call) -> int:
        """How many times the carrier was asked to reject/hang up this inbound call."""

    def break_carrier(self) -> None:
        """From now on the carrier's REST API answers 5xx."""

    async def redeliver_last_webhook(self) -> httpx.Response:
        """Send the last webhook again, byte for byte (a carrier retry)."""

    async def forge_webhook(self, call: Call) -> httpx.Response:
        """Send a webhook that would add the caller speech "FORGED" to ``call``, with a wrong
        signature."""

    async def aclose(self) -> None: ...


class StreamHarness(CarrierHarness, Protocol):
    """A carrier whose media streams the contract drives (SPEC §5).

    ``enable_streams`` is called before ``build``: from then on the carrier opens streams to
    our listener through ``connect_ws`` (in-process) and puts a ``SimulatedHandset`` on its
    end, which talks over any bot line that has played ``barge_in_after_s``.
    """

    def enable_streams(self, connect_ws: WsConnect, barge_in_after_s: float | None) -> None: ...

    def handset(self, call: Call) -> SimulatedHandset | None:
        """The caller's handset on the call's stream, once the carrier opened one."""

    def stream_connections(self, call: Call) -> int:
        """How many times the carrier opened a stream for the call."""

    async def drop_stream(self, call: Call) -> None:
        """The network loses the call's stream socket; the call itself goes on."""


class MockHarness:
    name = "mock"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.carrier: MockTelephony | None = None
        self.webhook: httpx.AsyncClient | None = None
        self.last: bytes | None = None
        self.connect_ws: WsConnect | None = None
        self.barge_in_after_s: float | None = None

    def enable_streams(self, connect_ws: WsConnect, barge_in_after_s: float | None) -> None:
        self.connect_ws = connect_ws
        self.barge_in_after_s = barge_in_after_s

    def _stream(self, call: Call) -> MockStream | None:
        assert self.carrier is not None
        return self.carrier.stream_line(call.provider_call_id or "")

    def handset(self, call: Call) -> SimulatedHandset | None:
        stream = self._stream(call)
        return stream.handset if stream is not None else None

    def stream_connections(self, call: Call) -> int:
        stream = self._stream(call)
        return stream.connections if stream is not None else 0

    async def drop_stream(self, call: Call) -> None:
        stream = self._stream(call)
        assert stream is not None
        await stream.drop()

    def plugin_config(self) -> dict[str, Any]:
        return {"provider": "mock"}

    def build(
        self, config: AppConfig, clock: Clock, outcome: str, webhook: httpx.AsyncClient
    ) -> MockTelephony:
        self.webhook = webhook
        self.settings = MockSettings(
            answer_delay_ms=300,
            outcome=outcome,
            replies=REPLIES,
            barge_in_after_s=self.barge_in_after_s,
        )
        return self.rebuild(config, clock)

    def rebuild(self, config: AppConfig, clock: Clock) -> MockTelephony:
        # The mock carrier lives in the gateway's process: it restarts from its state file.
        self.carrier = MockTelephony(
            self.settings, clock, self.tmp / "mock-carrier.json", connect_ws=self.connect_ws
        )
        return self.carrier

    def heard(self, call: Call) -> list[str]:
        assert self.carrier is not None
        return self.carrier.heard(call.provider_call_id or "")

    def played(self, call: Call) -> list[HeardLine]:
        assert self.carrier is not None
        return [
            HeardLine(
                text=entry["text"],
                started_at=entry["startedAt"],
                ended_at=entry["endedAt"],
                whole=bool(entry.get("whole")),
            )
            for entry in self.carrier.played(call.provider_call_id or "")
        ]

    def line_dead_at(self, call: Call) -> float | None:
        assert self.carrier is not None
        return self.carrier.ended_at(call.provider_call_id or "")

    async def caller_hangs_up(self, call: Call) -> None:
        assert self.carrier is not None
        await self.carrier.caller_hangs_up(call.provider_call_id or "")

    async def ring_inbound(self, from_number: str | None) -> None:
        event: dict[str, Any] = {
            "type": "call.initiated",
            "providerCallId": f"mock-in-{uuid.uuid4().hex[:12]}",
            "direction": "inbound",
            "to": "+15550100000",
        }
        if from_number is not None:
            event["from"] = from_number
        self.last = json.dumps({"event": event}).encode()
        await self._post(self.last)

    async def _post(self, body: bytes) -> httpx.Response:
        assert self.webhook is not None
        response = await self.webhook.post(
            "/voice/webhook", content=body, headers={"content-type": "application/json"}
        )
        return response

    def rejections(self, call: Call) -> int:
        assert self.carrier is not None
        return self.carrier.counters(call.provider_call_id or "")["rejected"]

    def break_carrier(self) -> None:
        assert self.carrier is not None
        self.carrier.unavailable = True

    async def redeliver_last_webhook(self) -> httpx.Response:
        assert self.last is not None
        return await self._post(self.last)

    async def forge_webhook(self, call: Call) -> httpx.Response:
        raise NotImplementedError("the mock carrier signs nothing")

    async def aclose(self) -> None:
        return None


HARNESSES: dict[str, type[Any]] = {"mock": MockHarness}
# Each real carrier brings its harness (adapter + simulator) in tests/contract/harness_<name>.py.
for _carrier in ("twilio", "telnyx", "plivo"):
    try:
        _module = importlib.import_module(f"tests.contract.harness_{_carrier}")
    except ModuleNotFoundError as _missing:
        if _missing.name != f"tests.contract.harness_{_carrier}":
            raise
        continue
    HARNESSES[_carrier] = _module.Harness

# The adapters the contract suite covers; the guard test keeps this equal to the container's.
TELEPHONY_ADAPTERS = sorted(HARNESSES)
# The adapters whose media streams it covers; a guard keeps this equal to the list above.
STREAM_ADAPTERS = sorted(name for name, cls in HARNESSES.items() if hasattr(cls, "enable_streams"))


class Line:
    """A call service over one adapter behind the real webhook door, with waiting helpers."""

    def __init__(
        self,
        harness: CarrierHarness,
        service: CallService,
        webhook: httpx.AsyncClient,
        clock: ScaledClock,
        *,
        door: _LateApp,
        config: AppConfig,
        store_dir: Path,
    ):
        self.harness = harness
        self.service = service
        self.webhook = webhook
        self.clock = clock
        self.door = door
        self.config = config
        self.store_dir = store_dir

    async def restart(self) -> None:
        """The gateway stops and starts again on the same store; the carrier goes on.

        The carrier's requests meanwhile wait at the door and reach the new gateway.
        """
        self.door.open.clear()
        await self.service.stop()
        store = SqliteCallStore(self.store_dir / "store")
        service = CallService(
            provider=self.harness.rebuild(self.config, self.clock),
            store=store,
            clock=self.clock,
            responder=RuleBasedResponder(),
            feed=EventFeed(store),
            settings=call_settings(self.config),
        )
        self.door.app = create_webhook_app(service, self.config)
        await service.start()
        self.service = service
        self.door.open.set()

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

    async def wait_for(self, predicate: Any, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not await _maybe_await(predicate()):
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.01)

    async def only_call(self) -> Call:
        await self.wait_for(self._has_call)
        [call] = await self.service.list_calls()
        return call

    async def _has_call(self) -> bool:
        return len(await self.service.list_calls()) == 1


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return await value
    return value


@pytest.fixture(params=TELEPHONY_ADAPTERS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> CarrierHarness:
    harness: CarrierHarness = HARNESSES[request.param](tmp_path)
    return harness


def line_config(
    harness: CarrierHarness, tmp: Path, notify_hangup_delay_s: float = 0.5
) -> AppConfig:
    plugin: dict[str, Any] = {
        "enabled": True,
        "fromNumber": "+15550100000",
        "inboundPolicy": "allowlist",
        "allowFrom": [ALLOWED],
        "maxConcurrentCalls": 2,
        "outbound": {"notifyHangupDelaySec": notify_hangup_delay_s},
        "ringTimeoutMs": 30000,
        "transcriptTimeoutMs": 60000,
        "store": str(tmp / "store"),
        "serve": {"bind": "127.0.0.1", "port": 3334, "path": "/voice/webhook"},
    }
    plugin.update(harness.plugin_config())
    return parse_config({"plugins": {"entries": {"voice-call": {"config": plugin}}}}, env={})


async def open_line(
    harness: CarrierHarness,
    tmp: Path,
    outcome: str = "answer",
    *,
    notify_hangup_delay_s: float = 0.5,
    speed: float = SPEED,
) -> Line:
    config = line_config(harness, tmp, notify_hangup_delay_s)
    clock = ScaledClock(speed)
    door = _LateApp()
    webhook = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=door, client=("127.0.0.1", 40123)),
        base_url="http://127.0.0.1:3334",
    )
    provider = harness.build(config, clock, outcome, webhook)
    store = SqliteCallStore(tmp / "store")
    service = CallService(
        provider=provider,
        store=store,
        clock=clock,
        responder=RuleBasedResponder(),
        feed=EventFeed(store),
        settings=call_settings(config),
    )
    door.app = create_webhook_app(service, config)
    await service.start()
    return Line(harness, service, webhook, clock, door=door, config=config, store_dir=tmp)


class _LateApp:
    """The webhook app, filled in once the service exists (the carrier needs the URL first).

    While ``paused``, requests wait at the door, as behind a proxy that holds connections
    while the gateway restarts, then reach whichever app is set when it resumes.
    """

    def __init__(self) -> None:
        self.app: Any = None
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.open.wait()
        await self.app(scope, receive, send)


@pytest.fixture
async def line(harness: CarrierHarness, tmp_path: Path) -> AsyncIterator[Line]:
    opened = await open_line(harness, tmp_path)
    yield opened
    await opened.service.stop()
    await opened.webhook.aclose()
    await harness.aclose()
