"""Keeps a tunnel up for the life of the gateway and the public address in step with it.

At start the tunnel must come up, or the gateway does not start (its error is the operator's
answer). Later, a drop is logged, new outbound calls are refused (see
:meth:`PublicAddress.check_outbound`), and the tunnel is re-established with a growing backoff;
live calls are left alone. A tunnel that comes back with a different URL (ngrok without a
reserved domain) is logged loudly: live calls' callbacks and the number's webhook at the carrier
still point at the old one. New outbound calls wait ``settle_s`` on the new URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from voicecall.domain.exposure import PublicAddress
from voicecall.domain.ports import Clock, TimerHandle, Tunnel, clock_sleep

__all__ = ["BACKOFF_S", "TunnelStartError", "TunnelSupervisor"]

log = logging.getLogger("voicecall.tunnel")

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class TunnelStartError(Exception):
    """The tunnel could not be established at start; the message is the tunnel's own."""


class TunnelSupervisor:
    """Opens ``tunnel``, feeds its URL to ``address``, and re-opens it when it drops.

    Args:
        tunnel: the tunnel adapter.
        address: the gateway's public address.
        clock: time for the backoff and the settling period.
        settle_s: how long a changed URL must stay up before outbound calls use it.
        backoff_s: waits between re-establishing attempts; the last one repeats.
    """

    def __init__(
        self,
        tunnel: Tunnel,
        address: PublicAddress,
        clock: Clock,
        *,
        settle_s: float = 30.0,
        backoff_s: Sequence[float] = BACKOFF_S,
    ) -> None:
        self.tunnel = tunnel
        self.address = address
        self.clock = clock
        self.settle_s = settle_s
        self.backoff_s = tuple(backoff_s)
        self._task: asyncio.Task[None] | None = None
        self._settle: TimerHandle | None = None
        self.reconnects = 0

    async def start(self) -> str:
        """Open the tunnel and adopt its URL; returns the webhook URL.

        Raises:
            TunnelStartError: the tunnel failed; nothing is left running.
        """
        try:
            base = await self.tunnel.open()
        except Exception as err:
            with contextlib.suppress(Exception):
                await self.tunnel.close()
            raise TunnelStartError(f"{self.tunnel.name} tunnel failed to start: {err}") from err
        self.address.adopt_base(base)
        log.info("%s tunnel up: webhooks at %s", self.tunnel.name, self.address.url)
        self._task = asyncio.create_task(self._watch())
        return self.address.url or base

    async def stop(self) -> None:
        """Stop watching and undo the tunnel."""
        if self._settle is not None:
            self._settle.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.tunnel.close()
        except Exception:
            log.exception("%s tunnel: closing failed", self.tunnel.name)

    async def _watch(self) -> None:
        while True:
            reason = await self.tunnel.wait_closed()
            self.address.drop(reason)
            log.warning(
                "%s tunnel dropped (%s); re-establishing it. Live calls are kept; new outbound "
                "calls are refused until it is back",
                self.tunnel.name,
                reason,
            )
            await self._reopen()

    async def _reopen(self) -> None:
        attempt = 0
        while True:
            await clock_sleep(self.clock, self.backoff_s[min(attempt, len(self.backoff_s) - 1)])
            attempt += 1
            with contextlib.suppress(Exception):
                await self.tunnel.close()
            try:
                base = await self.tunnel.open()
            except Exception as err:
                log.warning(
                    "%s tunnel: attempt %d to re-establish failed: %s",
                    self.tunnel.name,
                    attempt,
                    err,
                )
                continue
            break
        self.reconnects += 1
        old = self.address.url
        if self.address.adopt_base(base):
            log.error(
                "%s tunnel is back with a DIFFERENT public URL: %s (was %s). Calls in progress "
                "still send their callbacks to the old URL, and so does any webhook configured "
                "at the carrier: update it. Set tunnel.ngrokDomain to keep one URL. New "
                "outbound calls wait %.0f s on the new URL",
                self.tunnel.name,
                self.address.url,
                old,
                self.settle_s,
            )
            if self._settle is not None:
                self._settle.cancel()
            self._settle = self.clock.schedule(self.settle_s, self.address.settle)
        else:
            log.info("%s tunnel re-established at %s", self.tunnel.name, self.address.url)
