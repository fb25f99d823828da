"""EventDelivery: how the Twilio and mock adapters report news on a later clock tick."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from voicecall.adapters.telephony.delivery import EventDelivery
from voicecall.domain.events import CallAnswered, CallEvent
from voicecall.testing.clock import FakeClock


def answered(n: int) -> CallAnswered:
    return CallAnswered(call_id=f"c{n}", provider_call_id=f"p{n}", dedupe_key=f"p{n}:answered")


def bound() -> tuple[FakeClock, EventDelivery, list[CallEvent]]:
    """A delivery on a fake clock, bound to a sink that keeps what it is given."""
    clock = FakeClock()
    delivery = EventDelivery(clock, "test carrier")
    got: list[CallEvent] = []

    async def sink(events: Sequence[CallEvent]) -> None:
        got.extend(events)

    delivery.bind(sink)
    return clock, delivery, got


async def test_later_delivers_on_the_clock_not_before() -> None:
    clock, delivery, got = bound()
    delivery.later(1.0, answered(1))
    await clock.advance(0.5)
    assert got == []
    await clock.advance(0.5)
    assert got == [answered(1)]


async def test_nothing_bound_drops_and_a_failing_sink_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivery = EventDelivery(FakeClock(), "test carrier")
    await delivery.emit(answered(1))  # no sink yet: nothing to do, no error

    async def broken(events: Sequence[CallEvent]) -> None:
        raise RuntimeError("store is gone")

    delivery.bind(broken)
    await delivery.emit(answered(2))
    assert "test carrier: delivering call.answered failed" in caplog.text


async def test_cancel_all_stops_what_has_not_fired_and_the_list_stays_bounded() -> None:
    clock, delivery, got = bound()
    for n in range(300):
        delivery.later(0.0, answered(n))
    await clock.advance(0.0)
    assert len(got) == 300
    assert len(delivery._timers) == 256  # fired timers are forgotten past the bound
    delivery.later(5.0, answered(999))
    delivery.cancel_all()
    await clock.advance(10.0)
    assert len(got) == 300 and clock.pending == 0
