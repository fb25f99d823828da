"""Event fan-out is off the call path, and a slow subscriber is dropped after its backlog."""

from __future__ import annotations

import asyncio

from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.services.events import EventFeed


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
