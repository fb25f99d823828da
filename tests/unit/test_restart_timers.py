"""The restart window (SPEC §3 "Restart"): a gateway that crashed with a call in any live state
restores it, and the call's timers run on from where they were, not from zero and not never.

A crash is modelled as a store holding the call as the old process last saved it, and a new
service started on that store with the fake clock already moved on by the time the gateway
was down. Nothing here sleeps.

The notify-hold timer is left out on purpose: its semantics (hang up N s after the message was
*played*) are being reworked, and its restart test belongs with that change.
"""

from __future__ import annotations

import pytest

from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.domain.call import Call, CallDirection, CallMode, CallState
from voicecall.domain.ports import CarrierStatus, CarrierStatusKind, DialRequest, DialResult
from voicecall.testing.clock import FakeClock

from .conftest import CALLEE, Rig, make_rig, make_settings

RING_S = 30.0
MAX_S = 300.0
T0 = 1_700_000_000.0
LIVE_STATES = [
    CallState.INITIATED,
    CallState.RINGING,
    CallState.ANSWERED,
    CallState.ACTIVE,
    CallState.SPEAKING,
    CallState.LISTENING,
]
UNANSWERED = [CallState.INITIATED, CallState.RINGING]
CONNECTED = [s for s in LIVE_STATES if s not in UNANSWERED]


class CarrierAfterCrash(MockTelephony):
    """The mock carrier, answering ``status`` as told: the call is up, or nobody can say."""

    def __init__(self, clock: FakeClock, kind: CarrierStatusKind) -> None:
        super().__init__(MockSettings(answer_delay_ms=300), clock)
        self.kind = kind

    async def status(self, call: Call) -> CarrierStatus:
        return CarrierStatus(self.kind)

    async def dial(self, request: DialRequest) -> DialResult:
        raise AssertionError("a restart must never dial")


def saved_call(state: CallState, *, answered_after: float | None) -> Call:
    """A call as the crashed gateway last saved it."""
    answered_at = None if answered_after is None else T0 + answered_after
    return Call(
        call_id="restored",
        provider="mock",
        direction=CallDirection.OUTBOUND,
        from_number="+15550100000",
        to_number=CALLEE,
        mode=CallMode.CONVERSATION,
        started_at=T0,
        provider_call_id="mock-restored",
        state=state,
        answered_at=answered_at,
        last_activity_at=answered_at or T0,
    )


async def restart_at(
    call: Call, down_until: float, kind: CarrierStatusKind = CarrierStatusKind.LIVE
) -> Rig:
    store = MemoryCallStore()
    await store.open()
    await store.save(call)
    clock = FakeClock(start=T0 + down_until)
    carrier = CarrierAfterCrash(clock, kind)
    settings = make_settings(ring_timeout_s=RING_S, max_duration_s=MAX_S, stale_call_reaper_s=1e9)
    return await make_rig(settings=settings, store=store, carrier=carrier, clock=clock)


async def state_of(rig: Rig) -> CallState:
    call = await rig.service.get("restored")
    assert call is not None
    return call.state


@pytest.mark.parametrize("kind", [CarrierStatusKind.LIVE, CarrierStatusKind.UNKNOWN])
@pytest.mark.parametrize("state", UNANSWERED)
@pytest.mark.parametrize("down_s", [0.0, 12.0, 29.0])
async def test_an_unanswered_call_rings_out_on_the_time_it_had_left(
    state: CallState, down_s: float, kind: CarrierStatusKind
) -> None:
    rig = await restart_at(saved_call(state, answered_after=None), down_s, kind)
    try:
        assert await state_of(rig) is state  # restored as it was, never re-dialled
        left = RING_S - down_s
        await rig.clock.advance(left - 0.5)
        assert await state_of(rig) is state
        await rig.clock.advance(1.0)
        call = await rig.service.get("restored")
        assert call is not None
        assert call.state is CallState.NO_ANSWER
        assert call.ended_at == pytest.approx(T0 + RING_S, abs=0.01)
    finally:
        await rig.service.stop()


@pytest.mark.parametrize("state", UNANSWERED)
async def test_a_call_whose_ring_time_ran_out_while_down_ends_at_once(state: CallState) -> None:
    rig = await restart_at(saved_call(state, answered_after=None), RING_S + 40.0)
    try:
        assert await state_of(rig) is state
        await rig.clock.advance(0.0)
        assert await state_of(rig) is CallState.NO_ANSWER
    finally:
        await rig.service.stop()


@pytest.mark.parametrize("kind", [CarrierStatusKind.LIVE, CarrierStatusKind.UNKNOWN])
@pytest.mark.parametrize("state", CONNECTED)
async def test_a_connected_call_times_out_on_the_time_it_had_left(
    state: CallState, kind: CarrierStatusKind
) -> None:
    # Answered 5 s after it started, the gateway down until 100 s: 205 s of the 300 remain.
    rig = await restart_at(saved_call(state, answered_after=5.0), 100.0, kind)
    try:
        assert await state_of(rig) is state
        await rig.clock.advance(204.5)
        assert await state_of(rig) is state
        await rig.clock.advance(1.0)
        call = await rig.service.get("restored")
        assert call is not None
        assert call.state is CallState.TIMEOUT
        assert call.ended_at == pytest.approx(T0 + 5.0 + MAX_S, abs=0.01)
    finally:
        await rig.service.stop()


@pytest.mark.parametrize("state", CONNECTED)
async def test_a_connected_call_is_not_rung_out(state: CallState) -> None:
    # Down past the ring timeout: a connected call must not end no-answer when it fires.
    rig = await restart_at(saved_call(state, answered_after=5.0), 10.0)
    try:
        await rig.clock.advance(RING_S * 2)
        assert await state_of(rig) is state
    finally:
        await rig.service.stop()


async def test_a_call_whose_max_duration_ran_out_while_down_ends_at_once() -> None:
    rig = await restart_at(saved_call(CallState.LISTENING, answered_after=5.0), MAX_S + 60.0)
    try:
        await rig.clock.advance(0.0)
        assert await state_of(rig) is CallState.TIMEOUT
    finally:
        await rig.service.stop()


@pytest.mark.parametrize("state", LIVE_STATES)
async def test_a_call_the_carrier_says_ended_is_closed_not_timed(state: CallState) -> None:
    answered = None if state in UNANSWERED else 5.0
    rig = await restart_at(
        saved_call(state, answered_after=answered), 10.0, CarrierStatusKind.ENDED
    )
    try:
        call = await rig.service.get("restored")
        assert call is not None and call.state.is_terminal
        assert rig.clock.pending == 1  # only the stale-call reaper: no call timer left behind
    finally:
        await rig.service.stop()
