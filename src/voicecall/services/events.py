"""The live call-event feed: persisted to the store's log, then fanned out to subscribers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from voicecall.domain.ports import CallStore, EventRecord

__all__ = ["EventFeed"]

log = logging.getLogger(__name__)


class EventFeed:
    """Appends each call event to the durable log and hands it to every live subscriber.

    The path that handles a call pays only for the durable append: handing the record to
    subscribers is one callback scheduled on the loop after the publisher moves on, however
    many subscribers there are. A slow subscriber never holds anything up: its queue is
    bounded (``queue_size``, its backlog) and, when full, it is emptied and given
    :data:`DROPPED`, so its consumer can close with a code and the client can reconnect with
    ``since`` and replay from the log.
    """

    DROPPED: Final = EventRecord(seq=-1, call_id="", type="feed.dropped", at=0.0, data={})

    def __init__(self, store: CallStore, queue_size: int = 1000) -> None:
        self._store = store
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[EventRecord | None]] = set()
        self._outbox: list[EventRecord] = []
        self._fan_out_pending = False
        self.dropped = 0  # subscribers dropped for falling behind; a soak figure

    async def publish(
        self, call_id: str, type: str, at: float, data: dict[str, Any]
    ) -> EventRecord:
        """Append to the log; the record goes to the subscribers once it is logged.

        What is in the log reaches the subscribers even if the publisher is cancelled while
        the append is in flight (a media stream's sender is cancelled when its call ends,
        perhaps mid-``speech.started``): the append finishes and is handed on regardless, or
        a subscriber would miss an event that ``since`` replays show.
        """
        append = asyncio.ensure_future(self._store.append_log(call_id, type, at, data))
        logged = asyncio.shield(append)
        # Added after the shield's own callback, so the publisher resumes before the fan-out.
        append.add_done_callback(lambda done: self._logged(done, call_id, type, at, data))
        seq = await logged
        return EventRecord(seq=seq, call_id=call_id, type=type, at=at, data=data)

    def _logged(
        self, done: asyncio.Future[int], call_id: str, type: str, at: float, data: dict[str, Any]
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # not in the log: nothing to hand on (the publisher, if any, gets the error)
        if self._subscribers:
            record = EventRecord(seq=done.result(), call_id=call_id, type=type, at=at, data=data)
            self._outbox.append(record)
            if not self._fan_out_pending:
                self._fan_out_pending = True
                asyncio.get_running_loop().call_soon(self._fan_out)

    def _fan_out(self) -> None:
        self._fan_out_pending = False
        records, self._outbox = self._outbox, []
        for queue in list(self._subscribers):
            for record in records:
                try:
                    queue.put_nowait(record)
                except asyncio.QueueFull:
                    self._drop(queue)
                    break

    def _drop(self, queue: asyncio.Queue[EventRecord | None]) -> None:
        self._subscribers.discard(queue)
        self.dropped += 1
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(self.DROPPED)
        log.warning("dropped an event subscriber %d events behind", self._queue_size)

    def subscribe(self) -> asyncio.Queue[EventRecord | None]:
        queue: asyncio.Queue[EventRecord | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[EventRecord | None]) -> None:
        self._subscribers.discard(queue)

    def is_subscribed(self, queue: asyncio.Queue[EventRecord | None]) -> bool:
        return queue in self._subscribers

    def close(self) -> None:
        self._fan_out()
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
        self._subscribers.clear()
