"""A clock whose time moves only when told to: timers tested without sleeping."""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
from typing import Any

from voicecall.domain.ports import TimerCallback

__all__ = ["FakeClock"]


class _FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Satisfies the clock port; ``await advance(s)`` runs due timers in time order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._queue: list[tuple[float, int, _FakeTimer, TimerCallback]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def schedule(self, delay_s: float, callback: TimerCallback) -> _FakeTimer:
        timer = _FakeTimer()
        heapq.heappush(
            self._queue, (self._now + max(delay_s, 0.0), next(self._ids), timer, callback)
        )
        return timer

    @property
    def pending(self) -> int:
        return sum(1 for entry in self._queue if not entry[2].cancelled)

    async def advance(self, seconds: float = 0.0) -> None:
        """Move time forward, firing every timer that falls due (including ones they add)."""
        target = self._now + seconds
        while True:
            await _settle()
            if not self._queue or self._queue[0][0] > target:
                break
            due, _, timer, callback = heapq.heappop(self._queue)
            self._now = max(self._now, due)
            if timer.cancelled:
                continue
            result: Any = callback()
            if inspect.isawaitable(result):
                await result
        self._now = target
        await _settle()


async def _settle() -> None:
    # Let tasks woken by fired timers run (and the tasks they wake) before time moves on.
    for _ in range(25):
        await asyncio.sleep(0)
