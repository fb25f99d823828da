"""The SQLite call store: one file under the ``store`` directory.

Three things keep the event loop free and the webhook path fast without giving up
durability:

* **One writer thread, group commit.** SQLite is synchronous, so every statement runs on a
  single dedicated thread. Writes queue up and the thread commits everything queued so far in
  one transaction (WAL, ``synchronous=FULL``): many concurrent webhooks share one fsync, and
  each awaiting caller resumes only once its own write is durable.
* **Write-behind-commit memory.** Live calls and recently touched calls, and the dedupe keys
  of the retention window, are kept in memory, so the hot path (a carrier callback for a live
  call) reads nothing from disk and makes no thread hop. The memory is filled from the file at
  open and changes only once a write has committed: a failed write leaves memory as the file
  is, so what ``status`` shows never runs ahead of the disk. The live calls are also counted
  in memory, so capacity checks cost O(1) however many calls are live.
* **Dedupe keys without a wait.** A key is added to memory at once and its insert is queued
  ahead of any change the event causes, so when that change is durable the key is too; an
  event that changes nothing needs no durable key (applying it again changes nothing again).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from voicecall.adapters.store.codec import call_from_dict, call_to_record
from voicecall.adapters.store.files import private_directory, private_file
from voicecall.domain.call import TERMINAL_STATES, Call
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
CREATE INDEX IF NOT EXISTS seen_events_at ON seen_events (at);
CREATE TABLE IF NOT EXISTS event_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
"""

# Dedupe keys are kept this long: carriers stop retrying within hours.
SEEN_RETENTION_S = 48 * 3600
# Ended calls kept in memory for quick status lookups; live calls are always in memory.
_RECENT_ENDED = 1000


class _Write:
    __slots__ = ("args", "fn", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]):
        self.fn = fn
        self.args = args
        self.future = future


class SqliteCallStore:
    """Durable call state in ``<directory>/calls.sqlite3``."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory).expanduser()
        self.path = self.directory / "calls.sqlite3"
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[_Write] = []
        self._queue_lock = threading.Lock()
        self._draining = False
        # Memory: every live call, plus the most recently ended ones.
        self._records: dict[str, dict[str, Any]] = {}
        self._live: set[str] = set()
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._by_provider: dict[tuple[str, str], str] = {}
        self._seen: dict[str, float] = {}
        self.commits = 0  # transactions committed; a test and benchmark figure

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voicecall-store")
        live, seen = await self._read(self._open_sync)
        for record in live:
            self._remember_record(record)
        self._seen = seen

    def _open_sync(self) -> tuple[list[dict[str, Any]], dict[str, float]]:
        private_directory(self.directory)
        # The database is 0600 before SQLite opens it: SQLite creates the -wal and -shm files
        # with the database file's permissions (https://www.sqlite.org/tempfiles.html), and
        # they hold message text too. Older stores' files are tightened as well.
        private_file(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        self._conn = conn
        newest = conn.execute("SELECT MAX(at) FROM seen_events").fetchone()[0]
        if newest is not None:
            conn.execute("DELETE FROM seen_events WHERE at < ?", (newest - SEEN_RETENTION_S,))
        live = [json.loads(row[0]) for row in conn.execute("SELECT data FROM calls WHERE live = 1")]
        seen = dict(conn.execute("SELECT key, at FROM seen_events").fetchall())
        return live, seen

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._read(self._close_sync)  # runs after every queued write
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ calls

    async def save(self, call: Call) -> None:
        record = call_to_record(call)
        await self._write(self._save_sync, record, json.dumps(record))
        # Only now: had the write failed, memory would still agree with the file.
        self._remember_record(record)

    def _save_sync(self, record: dict[str, Any], data: str) -> None:
        self._db().execute(
            "INSERT INTO calls (call_id, provider, provider_call_id, state, live, started_at,"
            " data) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(call_id) DO UPDATE SET"
            " provider_call_id=excluded.provider_call_id, state=excluded.state,"
            " live=excluded.live, data=excluded.data",
            (
                record["call_id"],
                record["provider"],
                record["provider_call_id"],
                record["state"],
                int(_is_live(record)),
                record["started_at"],
                data,
            ),
        )

    async def get(self, call_id: str) -> Call | None:
        record = self._records.get(call_id)
        if record is None:
            row = await self._read(
                self._one, "SELECT data FROM calls WHERE call_id = ?", (call_id,)
            )
            if not row:
                return None
            record = json.loads(row[0])
        return call_from_dict(record)

    async def find_by_provider_id(self, provider: str, provider_call_id: str) -> Call | None:
        call_id = self._by_provider.get((provider, provider_call_id))
        if call_id is not None and call_id in self._records:
            return call_from_dict(self._records[call_id])
        row = await self._read(
            self._one,
            "SELECT data FROM calls WHERE provider = ? AND provider_call_id = ?"
            " ORDER BY started_at DESC LIMIT 1",
            (provider, provider_call_id),
        )
        return call_from_dict(json.loads(row[0])) if row else None

    async def list_calls(self, *, live_only: bool = False, limit: int = 100) -> list[Call]:
        if live_only:
            live = [self._records[call_id] for call_id in self._live]
            live.sort(key=lambda r: r["started_at"], reverse=True)
            return [call_from_dict(record) for record in live[:limit]]
        rows = await self._read(
            self._all,
            "SELECT data FROM calls ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [call_from_dict(json.loads(row[0])) for row in rows]

    def _remember_record(self, record: dict[str, Any]) -> None:
        call_id = record["call_id"]
        self._records[call_id] = record
        if record.get("provider_call_id"):
            self._by_provider[(record["provider"], record["provider_call_id"])] = call_id
        if _is_live(record):
            self._live.add(call_id)
            self._ended.pop(call_id, None)
            return
        self._live.discard(call_id)
        self._ended[call_id] = None
        self._ended.move_to_end(call_id)
        while len(self._ended) > _RECENT_ENDED:
            self._forget_record(next(iter(self._ended)))

    def _forget_record(self, call_id: str) -> None:
        self._ended.pop(call_id, None)
        dropped = self._records.pop(call_id, None)
        if dropped and dropped.get("provider_call_id"):
            self._by_provider.pop((dropped["provider"], dropped["provider_call_id"]), None)

    # ------------------------------------------------------------------ dedupe keys

    async def remember_event(self, dedupe_key: str, at: float) -> bool:
        if dedupe_key in self._seen:
            return False
        self._seen[dedupe_key] = at
        if len(self._seen) % 10_000 == 0:
            self._prune_seen(at)
        # Queued, not awaited: it commits with (or before) whatever change the event causes.
        self._enqueue(self._remember_sync, (dedupe_key, at)).add_done_callback(_retrieve)
        return True

    async def forget_event(self, dedupe_key: str) -> None:
        self._seen.pop(dedupe_key, None)
        try:
            await self._write(self._forget_sync, dedupe_key)
        except TransientError:
            pass  # the insert it undoes most likely failed with it; memory no longer has it

    def _forget_sync(self, key: str) -> None:
        self._db().execute("DELETE FROM seen_events WHERE key = ?", (key,))

    def _remember_sync(self, key: str, at: float) -> None:
        self._db().execute("INSERT OR IGNORE INTO seen_events (key, at) VALUES (?, ?)", (key, at))

    def _prune_seen(self, now: float) -> None:
        cutoff = now - SEEN_RETENTION_S
        for key in [k for k, at in self._seen.items() if at < cutoff]:
            del self._seen[key]
        self._enqueue(self._prune_sync, (cutoff,)).add_done_callback(_retrieve)

    def _prune_sync(self, cutoff: float) -> None:
        self._db().execute("DELETE FROM seen_events WHERE at < ?", (cutoff,))

    # ------------------------------------------------------------------ event log

    async def append_log(self, call_id: str, type: str, at: float, data: dict[str, Any]) -> int:
        seq: int = await self._write(self._append_sync, call_id, type, at, json.dumps(data))
        return seq

    def _append_sync(self, call_id: str, type: str, at: float, data: str) -> int:
        cursor = self._db().execute(
            "INSERT INTO event_log (call_id, type, at, data) VALUES (?, ?, ?, ?)",
            (call_id, type, at, data),
        )
        return int(cursor.lastrowid or 0)

    async def log_since(self, seq: int, limit: int = 1000) -> list[EventRecord]:
        rows = await self._read(
            self._all,
            "SELECT seq, call_id, type, at, data FROM event_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [
            EventRecord(seq=row[0], call_id=row[1], type=row[2], at=row[3], data=json.loads(row[4]))
            for row in rows
        ]

    async def prune(self, before: float, max_events: int) -> int:
        """Drop log entries older than ``before`` and all but the newest ``max_events``, and
        calls that ended before ``before``; returns how many log entries went."""
        removed: int = await self._write(self._prune_log_sync, before, max_events)
        for call_id in [c for c in self._ended if self._records[c]["started_at"] < before]:
            self._forget_record(call_id)
        return removed

    def _prune_log_sync(self, before: float, max_events: int) -> int:
        db = self._db()
        gone = db.execute("DELETE FROM event_log WHERE at < ?", (before,)).rowcount
        newest = db.execute("SELECT MAX(seq) FROM event_log").fetchone()[0]
        if newest is not None:
            gone += db.execute(
                "DELETE FROM event_log WHERE seq <= ?", (newest - max_events,)
            ).rowcount
        # An ended call stays queryable for the retention period, then goes with its events.
        db.execute("DELETE FROM calls WHERE live = 0 AND started_at < ?", (before,))
        return int(gone)

    # ------------------------------------------------------------------ the writer thread

    def _write(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self._enqueue(fn, args)

    def _enqueue(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> asyncio.Future[Any]:
        if self._executor is None or self._loop is None:
            raise TransientError("the call store is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        with self._queue_lock:
            self._queue.append(_Write(fn, args, future))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain)
        return future

    def _drain(self) -> None:
        """On the writer thread: commit everything queued, one transaction per batch."""
        while True:
            with self._queue_lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._draining = False
                    return
            outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                for write in batch:
                    # A savepoint per write: one bad write fails alone, not its batch-mates.
                    db.execute("SAVEPOINT w")
                    try:
                        result = write.fn(*write.args)
                    except sqlite3.Error as err:
                        db.execute("ROLLBACK TO w")
                        outcomes.append((write.future, None, err))
                    else:
                        outcomes.append((write.future, result, None))
                    db.execute("RELEASE w")
                db.execute("COMMIT")
                self.commits += 1
            except sqlite3.Error as err:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                outcomes = [(write.future, None, err) for write in batch]
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_settle, outcomes)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
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

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self._db().execute(sql, params).fetchone()

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._db().execute(sql, params).fetchall()


_TERMINAL_VALUES = frozenset(state.value for state in TERMINAL_STATES)


def _is_live(record: dict[str, Any]) -> bool:
    return record["state"] not in _TERMINAL_VALUES


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Nobody awaits these writes; a failure is already logged by the next awaited one.
    if not future.cancelled():
        future.exception()


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(TransientError(f"call store error: {error}"))
        else:
            future.set_result(result)
