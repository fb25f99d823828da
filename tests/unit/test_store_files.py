"""Every file the store directory holds is 0600 and the directory 0700, whatever existed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from voicecall.adapters.speech.phrase_cache import _store as cache_audio
from voicecall.adapters.store.secret import load_or_create_secret
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.config import parse_config
from voicecall.domain.call import Call, CallDirection, CallMode
from voicecall.entrypoints.token import ensure_gateway_token
from voicecall.testing.clock import FakeClock


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_every_store_file_is_private_in_an_existing_0755_directory(tmp_path: Path) -> None:
    store_dir = tmp_path / "voice-calls"
    store_dir.mkdir(mode=0o755)
    os.chmod(store_dir, 0o755)
    # A database an older version left world-readable.
    (store_dir / "calls.sqlite3").touch(mode=0o644)
    os.chmod(store_dir / "calls.sqlite3", 0o644)

    store = SqliteCallStore(store_dir)
    await store.open()
    await store.save(
        Call(
            call_id="a",
            provider="mock",
            direction=CallDirection.OUTBOUND,
            from_number="+15550100000",
            to_number="+15557654321",
            mode=CallMode.NOTIFY,
            started_at=1.0,
            message="the WAL holds this text",
        )
    )
    carrier = MockTelephony(MockSettings(), FakeClock(), state_path=store_dir / "mock-carrier.json")
    await carrier._save()
    config = parse_config(
        {"plugins": {"entries": {"voice-call": {"config": {"store": str(store_dir)}}}}}, {}
    )
    ensure_gateway_token(config)
    load_or_create_secret(store_dir / "stream-secret")
    cache_audio(store_dir / "tts-cache", store_dir / "tts-cache" / "x.ulaw", b"\xff" * 10, 10**6)

    files = sorted(p for p in store_dir.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert {
        "calls.sqlite3",
        "calls.sqlite3-wal",
        "calls.sqlite3-shm",
        "mock-carrier.json",
        "gateway-token",
        "stream-secret",
        "x.ulaw",
    } <= names, names
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: "0o600" for p in files}
    dirs = [store_dir, *(p for p in store_dir.rglob("*") if p.is_dir())]
    assert {str(d): oct(_mode(d)) for d in dirs} == {str(d): "0o700" for d in dirs}
    await store.close()
