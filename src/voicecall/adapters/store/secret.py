"""Secrets the gateway makes for itself and keeps in the store directory (mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_bytes(size)
    # Created 0600 from the first byte, then moved into place, so it is never half-written.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return secret
