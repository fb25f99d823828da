"""An in-memory call store: the fake for unit tests, held to the same contract as SQLite."""

from __future__ import annotations

from typing import Any

from voicecall.adapters.store.codec import call_from_dict, call_to_record
from voicecall.domain.call import Call
from voicecall.domain.ports import EventRecord

__all__ = ["MemoryCallStore"]


class MemoryCallStore:
    """Keeps copies, never live references, so it behaves like a real store."""

    def __init__(self) -> None:
        self._calls: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._seen: dict[str, float] = {}
        self._log: list[EventRecord] = []
        self._seq = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def save(self, call: Call) -> None:
        if call.call_id not in self._calls:
            self._order.append(call.call_id)
        self._calls[call.call_id] = call_to_record(call)

    async def get(self, call_id: str) -> Call | None:
        record = self._calls.get(call_id)
        return call_from_dict(record) if record is not None else None

    async def find_by_provider_id(self, provider: str, provider_call_id: str) -> Call | None:
        for record in self._calls.values():
            if record["provider"] == provider and record["provider_call_id"] == provider_call_id:
                return call_from_dict(record)
        return None

    async def prune(self, before: float, max_events: int) -> int:
        kept = [r for r in self._log if r.at >= before][-max_events:] if max_events else []
        removed = len(self._log) - len(kept)
        self._log = kept
        for call_id, record in list(self._calls.items()):
            call = call_from_dict(record)
            if not call.is_live and call.started_at < before:
                del self._calls[call_id]
                self._order.remove(call_id)
        return removed

    async def list_calls(self, *, live_only: bool = False, limit: int = 100) -> list[Call]:
        calls = [call_from_dict(self._calls[call_id]) for call_id in reversed(self._order)]
        calls.sort(key=lambda call: call.started_at, reverse=True)
        if live_only:
            calls = [call for call in calls if call.is_live]
        return calls[:limit]

    async def remember_event(self, dedupe_key: str, at: float) -> bool:
        if dedupe_key in self._seen:
            return False
        self._seen[dedupe_key] = at
        return True

    async def forget_event(self, dedupe_key: str) -> None:
        self._seen.pop(dedupe_key, None)

    async def append_log(self, call_id: str, type: str, at: float, data: dict[str, Any]) -> int:
        self._seq += 1
        seq = self._seq
        self._log.append(EventRecord(seq=seq, call_id=call_id, type=type, at=at, data=data))
        return seq

    async def log_since(self, seq: int, limit: int = 1000) -> list[EventRecord]:
        return [record for record in self._log if record.seq > seq][:limit]
