"""Pairing state in the store directory: ``pairing.json``, mode 0600, replaced atomically.

A small JSON file rather than a table in the call database: it is read and written a few times
a day, an operator can inspect it, and it keeps working whichever call store is configured.
The file is written from a worker thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from voicecall.domain.pairing import ApprovedNumber, PairingBook, PairingRequest

__all__ = ["FilePairingStore", "MemoryPairingStore", "book_from_dict", "book_to_dict"]

_VERSION = 1


def book_to_dict(book: PairingBook) -> dict[str, Any]:
    return {
        "version": _VERSION,
        "pending": [
            {
                "code": r.code,
                "number": r.number,
                "issuedAt": r.issued_at,
                "expiresAt": r.expires_at,
                "callId": r.call_id,
            }
            for r in book.pending
        ],
        "approved": [
            {"number": a.number, "approvedAt": a.approved_at, "code": a.code}
            for a in book.approved.values()
        ],
        "issued": {number: list(times) for number, times in book.issued.items()},
    }


def book_from_dict(data: dict[str, Any]) -> PairingBook:
    """The book saved as ``data``; ``ValueError`` naming what is wrong with a damaged file."""
    try:
        pending = [
            PairingRequest(
                code=str(r["code"]),
                number=str(r["number"]),
                issued_at=float(r["issuedAt"]),
                expires_at=float(r["expiresAt"]),
                call_id=r.get("callId"),
            )
            for r in data.get("pending", [])
        ]
        approved = {
            str(a["number"]): ApprovedNumber(
                str(a["number"]), float(a["approvedAt"]), a.get("code")
            )
            for a in data.get("approved", [])
        }
        issued = {
            str(number): [float(at) for at in times]
            for number, times in dict(data.get("issued", {})).items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"pairing.json is damaged: {err!r}") from None
    return PairingBook(pending=pending, approved=approved, issued=issued)


class FilePairingStore:
    """``PairingStore`` over ``<store>/pairing.json``."""

    def __init__(self, directory: Path | str) -> None:
        self.path = Path(directory).expanduser() / "pairing.json"
        self._lock = asyncio.Lock()

    async def load(self) -> PairingBook:
        async with self._lock:
            return await asyncio.to_thread(self._load_sync)

    async def save(self, book: PairingBook) -> None:
        data = json.dumps(book_to_dict(book), indent=1).encode()
        async with self._lock:
            await asyncio.to_thread(self._save_sync, data)

    def _load_sync(self) -> PairingBook:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return PairingBook()
        try:
            data = json.loads(raw)
        except ValueError as err:
            raise ValueError(f"{self.path} is not JSON: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.path} does not hold a JSON object")
        return book_from_dict(data)

    def _save_sync(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        # 0600 from the first byte, fsynced, then moved over the old file: never half-written.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class MemoryPairingStore:
    """``PairingStore`` in memory (tests, and the shape a shared store would take)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] | None = None

    async def load(self) -> PairingBook:
        return book_from_dict(self._data) if self._data is not None else PairingBook()

    async def save(self, book: PairingBook) -> None:
        # A copy through the same dict form the file uses, so callers cannot alias it.
        self._data = json.loads(json.dumps(book_to_dict(book)))
