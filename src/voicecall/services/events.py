"""The live call-event feed: persisted to the store's log, then fanned out to subscribers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from voicecall.domain.ports import CallStore, EventRecord

__all__ = ["EventFeed"]

log = logging.getLogger(__name__)


class EventFeed:
    """Appends each call event to the durable log and hands it to every live subscriber.

    A slow subscriber never holds up a call: its queue is bounded and, when full, it is
    dropped (it can reconnect with ``since`` and replay from the log).
    """

    def __init__(self, store: CallStore, queue_size: int = 1000) -> None:
        self._store = store
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[EventRecord | None]] = set()

    async def publish(
        self, call_id: str, type: str, at: float, data: dict[str, Any]
    ) -> EventRecord:
        seq = await self._store.append_log(call_id, type, at, data)
        record = EventRecord(seq=seq, call_id=call_id, type=type, at=at, data=data)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(record)
            except asyncio.QueueFull:
                log.warning("dropping a slow event subscriber (queue full)")
                self._subscribers.discard(queue)
        return record

    def subscribe(self) -> asyncio.Queue[EventRecord | None]:
        queue: asyncio.Queue[EventRecord | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[EventRecord | None]) -> None:
        self._subscribers.discard(queue)

    def is_subscribed(self, queue: asyncio.Queue[EventRecord | None]) -> bool:
        return queue in self._subscribers

    def close(self) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
        self._subscribers.clear()
