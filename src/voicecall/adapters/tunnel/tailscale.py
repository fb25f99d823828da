"""Tailscale Serve / Funnel through the ``tailscale`` CLI (1.52+ syntax), undone at stop.

Only the carrier paths are published (``--set-path``), never the gateway listener, so RPC stays
private. CLI reference: https://tailscale.com/kb/1242/tailscale-serve and
https://tailscale.com/kb/1311/tailscale-funnel . The public host is the node's MagicDNS name
(``tailscale status --json`` → ``Self.DNSName``). Every command runs as a subprocess of the
event loop, so nothing blocks it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Sequence

from voicecall.domain.ports import Clock, clock_sleep

__all__ = ["TailscaleError", "TailscaleTunnel"]


class TailscaleError(Exception):
    pass


class TailscaleTunnel:
    """The ``Tunnel`` port over ``tailscale serve`` (tailnet only) or ``funnel`` (internet).

    Args:
        mode: ``serve`` or ``funnel``.
        routes: (public path, local URL) pairs: the webhook path, and the stream path with
            streaming on.
        clock: paces the health check that notices a drop.
        check_every_s: how often ``tailscale status`` is asked whether the node is still up.
    """

    def __init__(
        self,
        mode: str,
        routes: Sequence[tuple[str, str]],
        clock: Clock,
        check_every_s: float = 30.0,
        binary: str = "tailscale",
    ) -> None:
        self.mode = mode
        self.name = f"tailscale-{mode}"
        self.routes = tuple(routes)
        self.clock = clock
        self.check_every_s = check_every_s
        self.binary = binary
        self._published: list[str] = []

    async def _run(self, *args: str) -> tuple[int, str, str]:
        binary = shutil.which(self.binary)
        if binary is None:
            raise TailscaleError("tailscale is not installed or not on PATH")
        proc = await asyncio.create_subprocess_exec(
            binary, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        except TimeoutError:
            proc.kill()
            raise TailscaleError(f"'tailscale {' '.join(args)}' did not finish in 60 s") from None
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def _dns_name(self) -> str:
        code, out, err = await self._run("status", "--json")
        if code != 0:
            raise TailscaleError(err.strip() or "tailscale status failed")
        try:
            status = json.loads(out)
            name = str(status["Self"]["DNSName"]).rstrip(".")
            state = status.get("BackendState", "Running")
        except (ValueError, KeyError, TypeError):
            raise TailscaleError("tailscale status --json gave no Self.DNSName") from None
        if state != "Running" or not name:
            raise TailscaleError(f"tailscale is not running (BackendState {state})")
        return name

    async def open(self) -> str:
        for path, target in self.routes:
            code, _, err = await self._run(self.mode, "--bg", "--yes", f"--set-path={path}", target)
            if code != 0:
                raise TailscaleError(err.strip() or f"tailscale {self.mode} failed")
            self._published.append(path)
        return f"https://{await self._dns_name()}"

    async def wait_closed(self) -> str:
        while True:
            await clock_sleep(self.clock, self.check_every_s)
            try:
                await self._dns_name()
            except TailscaleError as err:
                return str(err)

    async def close(self) -> None:
        published, self._published = self._published, []
        for path in published:
            await self._run(self.mode, f"--set-path={path}", "off")
