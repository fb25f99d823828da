"""The SQLite call store: one file under the ``store`` directory.

SQLite is synchronous, so every statement runs on one dedicated worker thread: the event loop
never waits on the disk, and the single connection serialises writes without extra locks.
Each write is committed (WAL, ``synchronous=FULL``) before the awaiting caller resumes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from voicecall.adapters.store.codec import call_from_dict, call_to_record
from voicecall.domain.call import Call
from voicecall.domain.errors import TransientError
from voicecall.domain.ports import EventRecord

__all__ = ["SqliteCallStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    provider_call_id TEXT,
    state TEXT NOT NULL,
    live INTEGER NOT NULL,
    started_at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_provider_id ON calls (provider, provider_call_id);
CREATE INDEX IF NOT EXISTS calls_live ON calls (live, started_at);
CREATE TABLE IF NOT EXISTS seen_events (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS event_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
"""

# Dedupe keys older than this are pruned: carriers stop retrying long before.
_SEEN_RETENTION_S = 7 * 24 * 3600


class SqliteCallStore:
    """Durable call state in ``<directory>/calls.sqlite3``."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory).expanduser()
        self.path = self.directory / "calls.sqlite3"
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._writes = 0

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voicecall-store")
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        os.chmod(self.path, 0o600)
        self._conn = conn

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise TransientError("the call store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as err:
            raise TransientError(f"call store error: {err}") from err

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("store closed")
        return self._conn

    # -- calls

    async def save(self, call: Call) -> None:
        record = call_to_record(call)
        await self._run(self._save_sync, call, json.dumps(record))

    def _save_sync(self, call: Call, data: str) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO calls (call_id, provider, provider_call_id, state, live, started_at,"
                " data) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(call_id) DO UPDATE SET"
                " provider_call_id=excluded.provider_call_id, state=excluded.state,"
                " live=excluded.live, data=excluded.data",
                (
                    call.call_id,
                    call.provider,
                    call.provider_call_id,
                    call.state.value,
                    int(call.is_live),
                    call.started_at,
                    data,
                ),
            )

    async def get(self, call_id: str) -> Call | None:
        row = await self._run(self._one, "SELECT data FROM calls WHERE call_id = ?", (call_id,))
        return call_from_dict(json.loads(row[0])) if row else None

    async def find_by_provider_id(self, provider: str, provider_call_id: str) -> Call | None:
        row = await self._run(
            self._one,
            "SELECT data FROM calls WHERE provider = ? AND provider_call_id = ?"
            " ORDER BY started_at DESC LIMIT 1",
            (provider, provider_call_id),
        )
        return call_from_dict(json.loads(row[0])) if row else None

    async def list_calls(self, *, live_only: bool = False, limit: int = 100) -> list[Call]:
        where = "WHERE live = 1 " if live_only else ""
        rows = await self._run(
            self._all,
            f"SELECT data FROM calls {where}ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [call_from_dict(json.loads(row[0])) for row in rows]

    # -- dedupe keys

    async def remember_event(self, dedupe_key: str, at: float) -> bool:
        return await self._run(self._remember_sync, dedupe_key, at)

    def _remember_sync(self, key: str, at: float) -> bool:
        with self._db() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO seen_events (key, at) VALUES (?, ?)", (key, at)
            )
            self._writes += 1
            if self._writes % 1000 == 0:
                db.execute("DELETE FROM seen_events WHERE at < ?", (at - _SEEN_RETENTION_S,))
            return cursor.rowcount == 1

    # -- event log

    async def append_log(self, call_id: str, type: str, at: float, data: dict[str, Any]) -> int:
        return await self._run(self._append_sync, call_id, type, at, json.dumps(data))

    def _append_sync(self, call_id: str, type: str, at: float, data: str) -> int:
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO event_log (call_id, type, at, data) VALUES (?, ?, ?, ?)",
                (call_id, type, at, data),
            )
            return int(cursor.lastrowid or 0)

    async def log_since(self, seq: int, limit: int = 1000) -> list[EventRecord]:
        rows = await self._run(
            self._all,
            "SELECT seq, call_id, type, at, data FROM event_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [
            EventRecord(seq=row[0], call_id=row[1], type=row[2], at=row[3], data=json.loads(row[4]))
            for row in rows
        ]

    # -- plumbing

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self._db().execute(sql, params).fetchone()

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._db().execute(sql, params).fetchall()
