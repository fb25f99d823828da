"""Secrets the gateway makes for itself and keeps in the store directory (mode 0600)."""

from __future__ import annotations

import secrets
from pathlib import Path

from voicecall.adapters.store.files import write_private

__all__ = ["load_or_create_secret"]


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    """The secret saved at ``path``, or a new random one written there 0600 (directory 0700).

    Stream tokens are signed with it; keeping it across restarts keeps tokens minted before a
    restart verifiable after it.
    """
    try:
        data = path.read_bytes()
        if len(data) >= size:
            return data
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(size)
    # Created 0600 from the first byte, then moved into place, so it is never half-written.
    write_private(path, secret)
    return secret
