"""How a carrier adapter hands what it learnt outside a webhook to the service.

Some news reaches an adapter while the service may be holding the call's lock (Twilio has
fetched the document that starts a line; the mock's simulated callee answered), so it is
delivered on a later clock tick, as a carrier's webhook would arrive. The adapter keeps
those timers so closing it cancels what has not fired yet.
"""

from __future__ import annotations

import logging
from typing import Final

from voicecall.domain.events import CallEvent
from voicecall.domain.ports import Clock, EventSink, TimerCallback, TimerHandle

__all__ = ["EventDelivery"]

log = logging.getLogger(__name__)

_KEEP: Final = 256
"""Timers remembered for cancelling; older ones have long fired (they are scheduled a few
seconds ahead at most), and a long call must not grow the list without bound."""


class EventDelivery:
    """The sink an adapter reports to, and the timers it set for later reports.

    Args:
        clock: the timers' clock.
        carrier: names the carrier when a delivery fails, in the log.
    """

    def __init__(self, clock: Clock, carrier: str) -> None:
        self.clock = clock
        self.carrier = carrier
        self._sink: EventSink | None = None
        self._timers: list[TimerHandle] = []

    def bind(self, sink: EventSink) -> None:
        self._sink = sink

    async def emit(self, event: CallEvent) -> None:
        """Deliver ``event`` now; nothing is bound yet → dropped; a failing sink is logged."""
        if self._sink is None:
            return
        try:
            await self._sink([event])
        except Exception:
            log.exception("%s: delivering %s failed", self.carrier, event.type)

    def later(self, delay_s: float, event: CallEvent) -> None:
        """Deliver ``event`` ``delay_s`` seconds from now (0: on the next tick)."""
        self.schedule(delay_s, lambda: self.emit(event))

    def schedule(self, delay_s: float, callback: TimerCallback) -> TimerHandle:
        """Run ``callback`` on the clock, cancelled by ``cancel_all`` if it has not run."""
        timer = self.clock.schedule(delay_s, callback)
        self._timers.append(timer)
        if len(self._timers) > _KEEP:
            del self._timers[:-_KEEP]
        return timer

    def cancel_all(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
