"""One contract for every call store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.domain.call import Call, CallDirection, CallMode, CallState, Speaker
from voicecall.domain.ports import CallStore


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CallStore]:
    made: CallStore = MemoryCallStore() if request.param == "memory" else SqliteCallStore(tmp_path)
    await made.open()
    yield made
    await made.close()


def _call(call_id: str, started: float, pid: str | None = None) -> Call:
    return Call(
        call_id=call_id,
        provider="mock",
        direction=CallDirection.OUTBOUND,
        from_number="+15550100000",
        to_number="+15551230001",
        mode=CallMode.CONVERSATION,
        started_at=started,
        provider_call_id=pid,
    )


async def test_round_trip_keeps_every_field(store: CallStore) -> None:
    call = _call("a", 10.0, "p-a")
    call.transition(CallState.ANSWERED, 11.0)
    call.add_transcript(Speaker.BOT, "hello", 11.5)
    call.add_transcript(Speaker.USER, "hi", 12.0)
    await store.save(call)
    loaded = await store.get("a")
    assert loaded == call
    assert loaded is not call


async def test_saved_copy_is_not_aliased(store: CallStore) -> None:
    call = _call("a", 10.0)
    await store.save(call)
    call.transition(CallState.RINGING, 11.0)
    loaded = await store.get("a")
    assert loaded is not None and loaded.state is CallState.INITIATED


async def test_lookup_by_provider_id_and_listing(store: CallStore) -> None:
    await store.save(_call("old", 1.0, "p1"))
    newer = _call("new", 2.0, "p2")
    await store.save(newer)
    ended = _call("ended", 3.0, "p3")
    ended.transition(CallState.BUSY, 4.0)
    await store.save(ended)
    assert (await store.find_by_provider_id("mock", "p2")).call_id == "new"  # type: ignore[union-attr]
    assert await store.find_by_provider_id("twilio", "p2") is None
    assert await store.get("missing") is None
    assert [c.call_id for c in await store.list_calls()] == ["ended", "new", "old"]
    assert [c.call_id for c in await store.list_calls(live_only=True)] == ["new", "old"]
    assert [c.call_id for c in await store.list_calls(limit=1)] == ["ended"]


async def test_dedupe_keys(store: CallStore) -> None:
    assert await store.remember_event("k", 1.0)
    assert not await store.remember_event("k", 2.0)
    assert await store.remember_event("k2", 2.0)


async def test_event_log(store: CallStore) -> None:
    first = await store.append_log("a", "call.state", 1.0, {"state": "ringing"})
    second = await store.append_log("a", "call.state", 2.0, {"state": "answered"})
    assert second > first
    records = await store.log_since(first)
    assert [(r.seq, r.data["state"]) for r in records] == [(second, "answered")]
    assert len(await store.log_since(0)) == 2


async def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    store = SqliteCallStore(tmp_path)
    await store.open()
    await store.save(_call("a", 1.0, "p"))
    await store.remember_event("k", 1.0)
    await store.close()
    again = SqliteCallStore(tmp_path)
    await again.open()
    assert (await again.get("a")) is not None
    assert not await again.remember_event("k", 2.0)
    assert oct((tmp_path / "calls.sqlite3").stat().st_mode & 0o777) == "0o600"
    await again.close()


async def test_prune_drops_old_log_entries_and_old_ended_calls_only(store: CallStore) -> None:
    for at in (1.0, 2.0, 50.0, 60.0, 70.0):
        await store.append_log("x", "call.state", at, {"at": at})
    old_ended = _call("old-ended", 5.0)
    old_ended.transition(CallState.COMPLETED, 6.0)
    await store.save(old_ended)
    old_live = _call("old-live", 5.0)
    await store.save(old_live)
    await store.save(_call("new", 55.0))
    assert len(await store.list_calls(live_only=True)) == 2
    assert await store.prune(before=40.0, max_events=2) == 3
    assert [r.at for r in await store.log_since(0)] == [60.0, 70.0]
    assert await store.get("old-live") is not None
    assert await store.get("old-ended") is None
    assert await store.get("new") is not None
    # Sequence numbers go on from where they were: a `since` stays meaningful.
    seq = await store.append_log("x", "call.state", 80.0, {})
    assert seq == 6


async def test_the_live_list_follows_saves(store: CallStore) -> None:
    call = _call("a", 1.0)
    await store.save(call)
    await store.save(_call("b", 2.0))
    assert [c.call_id for c in await store.list_calls(live_only=True)] == ["b", "a"]
    call.transition(CallState.COMPLETED, 3.0)
    await store.save(call)
    assert [c.call_id for c in await store.list_calls(live_only=True)] == ["b"]
