"""Shutdown ends every open ``/events`` stream (uvicorn waits for each one before it exits)."""

from __future__ import annotations

import asyncio

from voicecall.domain.ports import EventRecord
from voicecall.entrypoints.gateway_app import EventStreams


def record(seq: int) -> EventRecord:
    return EventRecord(seq=seq, call_id="c", type="call.state", at=0.0, data={})


async def test_close_wakes_a_stream_parked_on_an_idle_feed() -> None:
    streams = EventStreams()
    queue: asyncio.Queue[EventRecord | None] = asyncio.Queue(10)
    assert streams.register(queue)
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)  # the getter is parked, as the /events handler is between events
    assert not waiting.done()
    streams.close()
    assert await waiting is None  # the handler's "feed closed" marker


async def test_close_reaches_a_stream_whose_queue_is_full() -> None:
    streams = EventStreams()
    queue: asyncio.Queue[EventRecord | None] = asyncio.Queue(2)
    streams.register(queue)
    queue.put_nowait(record(1))
    queue.put_nowait(record(2))
    streams.close()
    drained = [queue.get_nowait() for _ in range(queue.qsize())]
    assert drained[-1] is None
    assert drained[:-1] == [record(2)]


def test_no_stream_may_start_once_shutdown_has_begun() -> None:
    streams = EventStreams()
    early: asyncio.Queue[EventRecord | None] = asyncio.Queue(1)
    assert streams.register(early)
    assert len(streams) == 1
    streams.close()
    late: asyncio.Queue[EventRecord | None] = asyncio.Queue(1)
    assert streams.register(late) is False
    assert late.empty()  # never registered, so never sent anything


def test_a_forgotten_stream_is_not_woken() -> None:
    streams = EventStreams()
    queue: asyncio.Queue[EventRecord | None] = asyncio.Queue(1)
    streams.register(queue)
    streams.forget(queue)
    assert len(streams) == 0
    streams.close()
    assert queue.empty()
