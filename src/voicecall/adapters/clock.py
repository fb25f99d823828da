"""The system clock: wall time and event-loop timers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

from voicecall.domain.ports import TimerCallback

__all__ = ["SystemClock"]

log = logging.getLogger(__name__)


class _LoopTimer:
    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self._handle = handle
        self.task: asyncio.Task[Any] | None = None

    def cancel(self) -> None:
        self._handle.cancel()


class SystemClock:
    """Real time. Timers run on the running event loop; async callbacks become tasks."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def schedule(self, delay_s: float, callback: TimerCallback) -> _LoopTimer:
        loop = asyncio.get_running_loop()
        timer: _LoopTimer

        def fire() -> None:
            try:
                result = callback()
            except Exception:
                log.exception("timer callback failed")
                return
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._done)

        timer = _LoopTimer(loop.call_later(max(delay_s, 0.0), fire))
        return timer

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("timer task failed", exc_info=task.exception())
