"""``clock_sleep``: a wait measured on the clock port, so a fake clock's time drives it."""

from __future__ import annotations

import asyncio

from voicecall.domain.ports import clock_sleep
from voicecall.testing.clock import FakeClock


async def _yield(times: int = 5) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


async def test_a_zero_wait_returns_without_the_clock_moving() -> None:
    clock = FakeClock()
    for seconds in (0, 0.0, -1.0):
        sleeper = asyncio.ensure_future(clock_sleep(clock, seconds))
        await _yield()
        assert sleeper.done()
        assert clock.pending == 0


async def test_a_positive_wait_ends_when_the_clock_reaches_it() -> None:
    clock = FakeClock()
    sleeper = asyncio.ensure_future(clock_sleep(clock, 2.0))
    await _yield()
    assert not sleeper.done()
    await clock.advance(1.9)
    assert not sleeper.done()
    await clock.advance(0.1)
    await _yield()
    assert sleeper.done()
    assert clock.pending == 0
