"""Latency of 200 concurrent ``initiate``s against 0, 200 and 1,000 live calls (prints).

The call service as ``voicecall serve`` builds it for the mock carrier: SQLite store (WAL,
group commit), the real clock, the mock carrier playing speech in simulated real time. The
live calls are conversation calls that have spoken their opening line and stay listening.
Then 200 ``initiate``s are issued at once, and each one's latency (until it returns: the call
committed and dialled) is recorded; ``--rounds`` bursts per level, the median p99 compared
(one burst's p99 swings by tens of percent on a shared machine). Target (issue 13): p99
grows less than 20% from 0 to 1,000 live calls, because the capacity check and live-call
lookups no longer list live calls.

    .venv/bin/python benchmarks/live_calls_latency.py [--live 0,200,1000] [--burst 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import tempfile
import time
from pathlib import Path

from voicecall.adapters.agent.rules import RuleBasedResponder
from voicecall.adapters.clock import SystemClock
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.domain.call import CallState
from voicecall.domain.policy import InboundPolicy, OutboundPolicy
from voicecall.services.calls import CallService, CallSettings
from voicecall.services.events import EventFeed

CALLEE = "+15557654321"


async def _service(directory: Path) -> CallService:
    clock = SystemClock()
    store = SqliteCallStore(directory)
    service = CallService(
        provider=MockTelephony(MockSettings(answer_delay_ms=50), clock),
        store=store,
        clock=clock,
        responder=RuleBasedResponder(),
        feed=EventFeed(store),
        settings=CallSettings(
            from_number="+15550100000",
            outbound=OutboundPolicy(max_concurrent_calls=100_000),
            inbound=InboundPolicy(),
            max_duration_s=3600.0,
        ),
    )
    await service.start()
    return service


async def _fill(service: CallService, live: int) -> None:
    ids = []
    for start in range(0, live, 200):
        batch = await asyncio.gather(
            *(
                service.initiate(CALLEE, "Hi.", "conversation")
                for _ in range(min(200, live - start))
            )
        )
        ids += [call.call_id for call in batch]
    for _ in range(600):
        calls = [await service.get(call_id) for call_id in ids]
        if all(c is not None and c.state is CallState.LISTENING for c in calls):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the live calls did not settle into listening")


async def _settle(service: CallService, live: int) -> None:
    for _ in range(600):
        if len(await service.list_calls(live_only=True, limit=100_000)) <= live:
            return
        await asyncio.sleep(0.1)


class GcPauses:
    """The cyclic collector's pauses while bursts run: its full collections walk every live
    object, so they cost more the more live calls there are, though no code of ours does."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0
        self.on = False
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.on:
            self.pauses.append((info["generation"], (time.perf_counter() - self._started) * 1000))

    def summary(self) -> str:
        full = [ms for generation, ms in self.pauses if generation == 2]
        total = sum(ms for _, ms in self.pauses)
        return (
            f"gc during bursts: {len(self.pauses)} collections, {total:.0f} ms in all;"
            f" {len(full)} full, longest {max(full, default=0.0):.0f} ms"
        )


async def _burst(service: CallService, burst: int) -> list[float]:
    async def one() -> float:
        start = time.perf_counter()
        await service.initiate(CALLEE, "The build is green.", "notify")
        return (time.perf_counter() - start) * 1000

    return sorted(await asyncio.gather(*(one() for _ in range(burst))))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--live", default="0,200,1000")
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="bursts per level (median p99)")
    args = parser.parse_args()
    # Calls still in flight when a round's service stops complain; the figures are the point.
    logging.getLogger("voicecall").setLevel(logging.CRITICAL)
    p99s = {}
    for live in [int(n) for n in args.live.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            service = await _service(Path(tmp))
            try:
                await _fill(service, live)
                await _burst(service, 20)  # warm-up
                await _settle(service, live)
                rounds = []
                pauses = GcPauses()
                for _ in range(args.rounds):
                    pauses.on = True
                    rounds.append(await _burst(service, args.burst))
                    pauses.on = False
                    # Let the burst's notify calls speak and hang up: each round then starts
                    # with the same live calls as the first.
                    await _settle(service, live)
            finally:
                await service.stop()
        round_p99 = sorted(times[max(int(len(times) * 0.99) - 1, 0)] for times in rounds)
        p99 = statistics.median(round_p99)
        p99s[live] = p99
        p50 = statistics.median(statistics.median(times) for times in rounds)
        print(
            f"{live:>5} live calls: {args.burst} concurrent initiates x {args.rounds}, median p50 "
            f"{p50:7.1f} ms, median p99 {p99:7.1f} ms (p99 per round "
            f"{', '.join(f'{v:.0f}' for v in round_p99)} ms)"
        )
        print(f"       {pauses.summary()}; {len(gc.get_objects())} objects tracked")
        gc.callbacks.remove(pauses._callback)
    lowest, highest = min(p99s), max(p99s)
    if lowest != highest and p99s[lowest] > 0:
        growth = (p99s[highest] / p99s[lowest] - 1) * 100
        print(f"p99 growth from {lowest} to {highest} live calls: {growth:+.0f}% (target < 20%)")


if __name__ == "__main__":
    asyncio.run(main())
