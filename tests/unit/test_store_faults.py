"""Memory never runs ahead of disk: a store that fails mid-operation, for each use case.

Two faults: at the store port (a ``CallStore`` whose writes raise, as a store that lost its
disk answers), and under SQLite's own write-behind memory (its transactions fail, as on a
disk I/O error). Either way the use case fails with a clear error and every read afterwards
shows what was committed, never the unsaved change; once the store works again, so does the
call.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.adapters.telephony.mock import MockSettings
from voicecall.domain.call import Call, CallState
from voicecall.domain.errors import TransientError
from voicecall.domain.events import CallAnswered
from voicecall.domain.policy import OutboundPolicy

from .conftest import CALLEE, Rig, make_rig, make_settings


class FailingStore:
    """A ``CallStore`` whose writes fail while ``broken``; everything else is ``inner``'s."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.broken = False

    async def save(self, call: Call) -> None:
        if self.broken:
            raise TransientError("call store error: disk I/O error")
        await self.inner.save(call)

    async def append_log(self, call_id: str, type: str, at: float, data: dict[str, Any]) -> int:
        if self.broken:
            raise TransientError("call store error: disk I/O error")
        seq: int = await self.inner.append_log(call_id, type, at, data)
        return seq

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class BrokenDisk:
    """SQLite's transactions fail while ``broken`` (its memory must not change either)."""

    def __init__(self, store: SqliteCallStore) -> None:
        self.broken = False
        for name in ("_save_sync", "_append_sync"):
            original = getattr(store, name)
            setattr(store, name, self._failing(original))

    def _failing(self, original: Any) -> Any:
        def write(*args: Any) -> Any:
            if self.broken:
                raise sqlite3.OperationalError("disk I/O error")
            return original(*args)

        return write


@pytest.fixture(params=["port", "sqlite-disk"])
async def faulty(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Rig, Any]]:
    settings = make_settings(outbound=OutboundPolicy(max_concurrent_calls=5))
    mock = MockSettings(answer_delay_ms=300)
    fault: Any
    if request.param == "port":
        fault = store = FailingStore(MemoryCallStore())
    else:
        store = SqliteCallStore(tmp_path)
        fault = None
    rig = await make_rig(settings=settings, mock=mock, store=store)  # type: ignore[arg-type]
    if fault is None:
        fault = BrokenDisk(store)
    yield rig, fault
    fault.broken = False
    await rig.service.stop()


async def _connected(rig: Rig) -> Call:
    call = await rig.service.initiate(CALLEE, "Hello.", "conversation")
    await rig.clock.advance(0.3)
    await rig.clock.advance(1.0)  # "Hello." played: listening
    live = await rig.service.get(call.call_id)
    assert live is not None and live.state is CallState.LISTENING
    return live


async def test_initiate_with_a_failing_store_leaves_no_call(faulty: tuple[Rig, Any]) -> None:
    rig, fault = faulty
    fault.broken = True
    with pytest.raises(TransientError):
        await rig.service.initiate(CALLEE, "Hello.", "notify")
    assert await rig.service.list_calls(live_only=True) == []
    assert await rig.store.list_calls(live_only=True) == []
    assert rig.carrier.dials == []
    fault.broken = False
    await rig.service.initiate(CALLEE, "Hello.", "notify")  # the slot was not taken


async def test_speak_with_a_failing_store_shows_no_unsaved_line(faulty: tuple[Rig, Any]) -> None:
    rig, fault = faulty
    call = await _connected(rig)
    before = await rig.service.get(call.call_id)
    fault.broken = True
    with pytest.raises(TransientError):
        await rig.service.speak(call.call_id, "This line is never saved.")
    after = await rig.service.get(call.call_id)
    assert after == before
    assert "This line is never saved." not in [u.text for u in after.speech]  # type: ignore[union-attr]
    fault.broken = False
    await rig.service.speak(call.call_id, "This one is.")
    saved = await rig.service.get(call.call_id)
    assert [u.text for u in saved.speech][-1] == "This one is."  # type: ignore[union-attr]


async def test_continue_with_a_failing_store_leaves_no_prompt_or_turn(
    faulty: tuple[Rig, Any],
) -> None:
    rig, fault = faulty
    call = await _connected(rig)
    before = await rig.service.get(call.call_id)
    fault.broken = True
    with pytest.raises(TransientError):
        await rig.service.continue_call(call.call_id, "Are you there?")
    assert await rig.service.get(call.call_id) == before
    fault.broken = False
    turn = asyncio.ensure_future(rig.service.continue_call(call.call_id, "Are you there?"))
    # The disk store writes on worker threads, which take real time on a loaded machine: give
    # them that between ticks, and let at most 10 simulated seconds pass (far less than the
    # transcript timeout), so a slow write delays the turn but never times it out.
    start = rig.clock.now()
    for _ in range(1000):
        if turn.done():
            break
        await asyncio.sleep(0.01)
        if rig.clock.now() - start < 10.0:
            await rig.clock.advance(0.5)
    assert isinstance(turn.result(), str)  # a new turn could start: the failed one left none


async def test_end_with_a_failing_store_still_shows_the_committed_state(
    faulty: tuple[Rig, Any],
) -> None:
    rig, fault = faulty
    call = await _connected(rig)
    fault.broken = True
    with pytest.raises(TransientError):
        await rig.service.end(call.call_id)
    shown = await rig.service.get(call.call_id)
    assert shown is not None and shown.state is CallState.LISTENING and shown.ended_at is None


async def test_a_webhook_whose_change_failed_is_applied_when_the_carrier_retries(
    faulty: tuple[Rig, Any],
) -> None:
    rig, fault = faulty
    call = await rig.service.initiate(CALLEE, "Hello.", "conversation")
    pcid = (await rig.service.get(call.call_id)).provider_call_id  # type: ignore[union-attr]
    answered = CallAnswered(provider_call_id=pcid, dedupe_key="answer-1")
    fault.broken = True
    with pytest.raises(TransientError):
        await rig.service.apply_events([answered])
    shown = await rig.service.get(call.call_id)
    assert shown is not None and shown.state is CallState.INITIATED
    fault.broken = False
    # The carrier retries the same webhook (a 503 was answered): it is not taken as a repeat.
    await rig.service.apply_events([answered])
    shown = await rig.service.get(call.call_id)
    assert shown is not None and shown.state.is_connected
