"""Refusals logged at a bounded rate: one line per client and reason per interval, with a
count.

A forger sending a thousand bad signatures a second must not write a thousand log lines a
second (a full disk is an outage too), yet the operator must still learn that it happens and
from where. The first refusal of a kind from a client is logged at once; the rest of the
interval is counted and reported with the next such line, or by ``flush``. Kinds are counted
apart so that one harmless refusal (``voicecall doctor``'s unsigned probe, a port scanner)
cannot hide a different one from the same address (a carrier whose signatures fail) for the
rest of the minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

__all__ = ["RefusalLog"]


@attrs.define
class _Window:
    opened_at: float
    suppressed: int = 0


class RefusalLog:
    """Args:
    logger: where the lines go (WARNING).
    now: the clock (the service's clock port, so tests step it).
    interval_s: one line per client and kind per this many seconds.
    max_clients: windows kept at most; the oldest are reported and dropped beyond it.
    """

    def __init__(
        self,
        logger: logging.Logger,
        now: Callable[[], float],
        interval_s: float = 60.0,
        max_clients: int = 10_000,
    ) -> None:
        self._log = logger
        self._now = now
        self.interval_s = interval_s
        self.max_clients = max_clients
        self._windows: dict[tuple[str, str], _Window] = {}

    def refused(self, client: str, message: str, *args: object, kind: str = "") -> None:
        """One refusal of ``kind`` from ``client``; ``message % args`` is logged if its window
        allows."""
        now = self._now()
        key = (client, kind)
        window = self._windows.get(key)
        if window is not None and now - window.opened_at < self.interval_s:
            window.suppressed += 1
            return
        earlier = window.suppressed if window is not None else 0
        self._windows.pop(key, None)
        self._windows[key] = _Window(now)
        suffix = f" (and {earlier} more from {client} in the last {self.interval_s:g} s)"
        self._log.warning(message + (suffix if earlier else ""), *args)
        while len(self._windows) > self.max_clients:
            oldest = next(iter(self._windows))
            self._report(oldest[0], self._windows.pop(oldest))

    def flush(self) -> None:
        """Report every window's suppressed count (at shutdown)."""
        for (client, _kind), window in list(self._windows.items()):
            self._report(client, window)
        self._windows.clear()

    def _report(self, client: str, window: _Window) -> None:
        if window.suppressed:
            self._log.warning(
                "%d more refused webhook request(s) from %s not logged one by one",
                window.suppressed,
                client,
            )
