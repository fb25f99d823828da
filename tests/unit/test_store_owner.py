"""One gateway per store: a second one is refused before it restores anything."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from voicecall.adapters.store.owner import LOCK_FILE, StoreInUse, StoreOwner


def test_a_second_owner_is_refused_naming_the_holder(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = StoreOwner.acquire(store)
    try:
        with pytest.raises(StoreInUse) as refused:
            StoreOwner.acquire(store)
        message = str(refused.value)
        assert f"the store {store} is in use by another voicecall gateway" in message
        assert f"(pid {os.getpid()})" in message
    finally:
        first.release()


def test_a_released_store_can_be_taken_again(tmp_path: Path) -> None:
    first = StoreOwner.acquire(tmp_path)
    first.release()
    first.release()  # idempotent
    assert not first.held
    second = StoreOwner.acquire(tmp_path)
    assert second.held
    second.release()


def test_the_lock_file_is_private_like_every_file_in_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    owner = StoreOwner.acquire(store)
    try:
        assert stat.S_IMODE((store / LOCK_FILE).stat().st_mode) == 0o600
        assert stat.S_IMODE(store.stat().st_mode) == 0o700
    finally:
        owner.release()
