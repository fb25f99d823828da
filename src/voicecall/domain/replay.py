"""Replay protection for verified webhooks (SPEC §4).

Carriers retry, and a captured request can be sent again. A verified request whose signature
material was seen within the window is answered exactly as the first time and causes no
second side effect. Memory is bounded: past ``max_entries`` the oldest entry goes first.
Time is passed in, so this is pure and tested without sleeping.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

from voicecall.domain.webhook import WebhookResponse

__all__ = ["CachedAnswer", "ReplayGuard"]


@attrs.frozen
class CachedAnswer:
    """What was answered the first time a request was seen, and when."""

    response: WebhookResponse
    first_seen: float


class ReplayGuard:
    """Remembers verified requests by replay key for ``window_seconds``.

    Not thread-safe: the webhook listener calls it from one event loop. Between ``seen``
    returning None and ``remember`` a concurrent duplicate can slip through; the caller
    serialises per key if that matters (state changes are idempotent by event dedupe anyway).
    """

    def __init__(self, max_entries: int = 10_000, window_seconds: float = 600) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self._max_entries = max_entries
        self._window = window_seconds
        self._entries: OrderedDict[str, CachedAnswer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _expired(self, entry: CachedAnswer, now: float) -> bool:
        return now - entry.first_seen >= self._window

    def _drop_expired(self, now: float) -> None:
        # Entries are kept in insertion order, which is time order for a monotonic clock.
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if not self._expired(oldest, now):
                break
            self._entries.popitem(last=False)

    def seen(self, key: str, now: float) -> CachedAnswer | None:
        """The earlier answer for ``key`` if it was remembered within the window, else None."""
        self._drop_expired(now)
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, now):
            return None
        return entry

    def remember(self, key: str, now: float, answer: WebhookResponse) -> None:
        """Store the answer given to ``key``; evicts expired entries, then the oldest."""
        self._drop_expired(now)
        self._entries.pop(key, None)
        self._entries[key] = CachedAnswer(response=answer, first_seen=now)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
