"""Simulated time for the simulated carriers: speech takes time, as on a real line.

Every simulator and the service under test share one ``ScaledClock``. It satisfies the clock
port and runs ``speed`` times faster than the wall clock, so a five-second message is heard in
five *simulated* seconds while a test waits only ``5 / speed`` real ones. Timing assertions are
made in simulated time (``clock.now()``), never on the wall clock.

``HeardLine`` is what a simulated callee records of each thing it was played: when it started,
when it stopped, and whether it was heard whole.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import attrs

from voicecall.adapters.clock import SystemClock
from voicecall.domain.ports import TimerCallback

__all__ = ["DEFAULT_CHARS_PER_SEC", "HeardLine", "ScaledClock", "speech_seconds"]

# About how fast a carrier's text-to-speech talks: ~150 words a minute.
DEFAULT_CHARS_PER_SEC: Final = 15.0


def speech_seconds(text: str, chars_per_sec: float = DEFAULT_CHARS_PER_SEC) -> float:
    """How long saying ``text`` takes, in simulated seconds."""
    return max(len(text.strip()), 1) / chars_per_sec


class ScaledClock(SystemClock):
    """Wall time sped up ``speed`` times; satisfies the clock port.

    Args:
        speed: simulated seconds per wall second (1.0 is real time).
        start: the simulated Unix time at creation (default: now).
    """

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        super().__init__()
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._wall0 = time.monotonic()
        self._start = time.time() if start is None else start

    def now(self) -> float:
        return self._start + (time.monotonic() - self._wall0) * self.speed

    def monotonic(self) -> float:
        return (time.monotonic() - self._wall0) * self.speed

    def wall(self, seconds: float) -> float:
        """Wall seconds that ``seconds`` of simulated time take."""
        return max(seconds, 0.0) / self.speed

    def schedule(self, delay_s: float, callback: TimerCallback):  # type: ignore[no-untyped-def]
        return super().schedule(self.wall(delay_s), callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.wall(seconds))

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` of simulated time for ``event``; True if it was set."""
        try:
            await asyncio.wait_for(event.wait(), self.wall(seconds))
        except TimeoutError:
            return False
        return True


@attrs.define
class HeardLine:
    """One thing the simulated callee was played.

    Attributes:
        text: the words as the carrier was asked to say them.
        started_at: simulated time the first word reached the callee.
        ended_at: simulated time it stopped (None while still playing).
        whole: True when it played to the end; False when something cut it off.
    """

    text: str
    started_at: float
    ended_at: float | None = None
    whole: bool = False

    def render(self) -> str:
        """The text, with a cut line shown as ``text—`` (what the callee heard, then the cut)."""
        return self.text if self.whole else f"{self.text}—"
