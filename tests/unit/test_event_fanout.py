"""Event fan-out is off the call path, and a slow subscriber is dropped after its backlog."""

from __future__ import annotations

import asyncio
from typing import Any

from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.services.events import EventFeed


class SlowLog(MemoryCallStore):
    """A store whose log appends wait for ``gate``: a write still in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def append_log(self, call_id: str, type: str, at: float, data: dict[str, Any]) -> int:
        await self.gate.wait()
        return await super().append_log(call_id, type, at, data)


async def test_publish_hands_records_on_after_the_publisher_moves_on() -> None:
    feed = EventFeed(MemoryCallStore())
    queues = [feed.subscribe() for _ in range(200)]
    record = await feed.publish("c", "call.state", 1.0, {})
    # The publisher paid for the durable append only; no subscriber was touched yet.
    assert all(queue.empty() for queue in queues)
    await asyncio.sleep(0)
    assert all(queue.get_nowait() == record for queue in queues)


async def test_a_subscriber_past_its_backlog_is_dropped_with_a_marker() -> None:
    feed = EventFeed(MemoryCallStore(), queue_size=3)
    slow = feed.subscribe()
    fast = feed.subscribe()
    for n in range(5):
        await feed.publish("c", "call.state", float(n), {"n": n})
        await asyncio.sleep(0)
        while not fast.empty():
            fast.get_nowait()
    assert not feed.is_subscribed(slow)
    assert feed.is_subscribed(fast)
    assert feed.dropped == 1
    # Its backlog is gone; the consumer learns it was dropped (the gateway closes with 4429).
    assert slow.get_nowait() is EventFeed.DROPPED
    assert slow.empty()


async def test_close_delivers_what_was_published_then_ends() -> None:
    feed = EventFeed(MemoryCallStore())
    queue = feed.subscribe()
    record = await feed.publish("c", "call.state", 1.0, {})
    feed.close()
    assert queue.get_nowait() == record
    assert queue.get_nowait() is None


async def test_an_event_logged_after_its_publisher_was_cancelled_still_reaches_subscribers() -> (
    None
):
    # A media stream's sender is cancelled when its call ends, perhaps mid-publish: the append
    # it started still lands in the log, so every subscriber must get it too, or it misses an
    # event a since= replay shows (the soak's subscribers each missed a few speech.started).
    store = SlowLog()
    feed = EventFeed(store)
    queue = feed.subscribe()
    publisher = asyncio.ensure_future(feed.publish("c", "speech.started", 1.0, {}))
    await asyncio.sleep(0)
    publisher.cancel()
    await asyncio.sleep(0)
    assert publisher.cancelled()
    store.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    [logged] = await store.log_since(0)
    assert queue.get_nowait() == logged
    assert queue.empty()


async def test_records_reach_subscribers_in_log_order() -> None:
    store = SlowLog()
    feed = EventFeed(store)
    queue = feed.subscribe()
    publishers = [
        asyncio.ensure_future(feed.publish("c", "call.state", float(n), {"n": n})) for n in range(5)
    ]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(*publishers)
    await asyncio.sleep(0)
    seqs = [queue.get_nowait().seq for _ in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
