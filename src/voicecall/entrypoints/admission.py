"""Admission to the webhook door: a short bounded queue per client, a global cap, and
stalled requests that lose their place to the next one.

Every request is unverified when it arrives: the signature covers the body, so until the body
is read a carrier and an attacker look the same. Refusing a peer's request as soon as it has
``per_peer`` in flight lets anyone who shares the carrier's address (every request behind
ngrok, Tailscale or a proxy does) shut the carrier out with requests whose bodies never come.
So instead:

* a request beyond the per-client limit waits in a short FIFO queue (``max_queued``, at most
  ``queue_wait_s``) rather than being refused at once;
* a request still reading its body after ``stall_grace_s`` (a carrier sends a few hundred
  bytes at once) is *stalled*: when another request needs its place, it is evicted (answered
  408) and the newcomer takes the slot. A request that stalls loses its place, not the next
  one;
* ``max_total`` requests in flight across all clients protects the process (503 beyond it,
  after the same eviction of stalled readers).

Times are the event loop's monotonic clock: this is I/O scheduling, not call logic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable

import attrs

__all__ = ["Admission", "AdmissionRefused", "Ticket"]


class AdmissionRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.define(eq=False)
class Ticket:
    """One admitted request. ``reading`` until its body is in; ``evicted`` when it lost its
    place for stalling: ``on_evict`` is then called once (the door ends the body read, which
    answers 408)."""

    client: str
    admitted_at: float
    reading: bool = True
    evicted: bool = False
    on_evict: Callable[[], None] | None = None

    def body_read(self) -> None:
        self.reading = False


@attrs.define
class _Client:
    active: list[Ticket] = attrs.Factory(list)
    waiting: deque[asyncio.Future[None]] = attrs.Factory(deque)


class Admission:
    """Who may be in the door now.

    Args:
        per_peer: requests one client may have in flight.
        max_total: requests in flight across every client.
        max_queued: requests one client may have waiting for a place.
        queue_wait_s: how long a request waits for a place before a 429.
        stall_grace_s: a request still reading its body after this is stalled and may be
            evicted for a newcomer.
    """

    def __init__(
        self,
        *,
        per_peer: int = 32,
        max_total: int = 512,
        max_queued: int = 64,
        queue_wait_s: float = 2.0,
        stall_grace_s: float = 0.5,
    ) -> None:
        self.per_peer = per_peer
        self.max_total = max_total
        self.max_queued = max_queued
        self.queue_wait_s = queue_wait_s
        self.stall_grace_s = stall_grace_s
        self._clients: dict[str, _Client] = {}
        self._total = 0
        self.evictions = 0

    @property
    def in_flight(self) -> int:
        return self._total

    @contextlib.asynccontextmanager
    async def admit(self, client: str) -> AsyncIterator[Ticket]:
        """Hold a place for the request while the block runs.

        Raises:
            AdmissionRefused: 429 (the client's queue is full or the wait ran out) or 503
                (the process is at its global cap).
        """
        ticket = await self._enter(client)
        try:
            yield ticket
        finally:
            self._leave(ticket)

    async def _enter(self, client: str) -> Ticket:
        loop = asyncio.get_running_loop()
        state = self._clients.setdefault(client, _Client())
        if self._total >= self.max_total and not self._evict(self._all_tickets(), loop.time()):
            self._forget_if_idle(client, state)
            raise AdmissionRefused(503, "the gateway is at capacity")
        if len(state.active) < self.per_peer or self._evict(state.active, loop.time()):
            return self._take(client, state, loop.time())
        if len(state.waiting) >= self.max_queued:
            raise AdmissionRefused(429, "too many concurrent requests")
        deadline = loop.time() + self.queue_wait_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._forget_if_idle(client, state)
                raise AdmissionRefused(429, "too many concurrent requests")
            wake: asyncio.Future[None] = loop.create_future()
            state.waiting.append(wake)
            try:
                # Woken when a place frees; also look again as readers cross the stall grace.
                await asyncio.wait_for(
                    asyncio.shield(wake), min(remaining, self.stall_grace_s / 2 or remaining)
                )
            except TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    state.waiting.remove(wake)
            now = loop.time()
            if self._total < self.max_total or self._evict(self._all_tickets(), now):
                if len(state.active) < self.per_peer or self._evict(state.active, now):
                    return self._take(client, state, now)

    def _take(self, client: str, state: _Client, now: float) -> Ticket:
        ticket = Ticket(client, now)
        state.active.append(ticket)
        self._total += 1
        return ticket

    def _evict(self, tickets: list[Ticket], now: float) -> bool:
        """Evict the oldest stalled reader among ``tickets``; True if one lost its place."""
        for ticket in tickets:  # oldest first
            if (
                ticket.reading
                and not ticket.evicted
                and now - ticket.admitted_at >= self.stall_grace_s
            ):
                ticket.evicted = True
                self.evictions += 1
                self._release(ticket)
                if ticket.on_evict is not None:
                    ticket.on_evict()
                return True
        return False

    def _all_tickets(self) -> list[Ticket]:
        tickets = [t for state in self._clients.values() for t in state.active]
        tickets.sort(key=lambda t: t.admitted_at)
        return tickets

    def _leave(self, ticket: Ticket) -> None:
        if not ticket.evicted:
            self._release(ticket)

    def _release(self, ticket: Ticket) -> None:
        state = self._clients.get(ticket.client)
        if state is None or ticket not in state.active:
            return
        state.active.remove(ticket)
        self._total -= 1
        while state.waiting:
            wake = state.waiting.popleft()
            if not wake.done():
                wake.set_result(None)
                break
        self._forget_if_idle(ticket.client, state)

    def _forget_if_idle(self, client: str, state: _Client) -> None:
        if not state.active and not state.waiting:
            self._clients.pop(client, None)
