"""One gateway per store: an exclusive lock on ``<store>/gateway.lock`` while a gateway runs.

Each gateway restores the live calls it finds in its store and owns their speech queues, timers
and media streams from then on. A second gateway started on the same store (another config file
with other ports, a host gateway loading the plugin beside ``voicecall serve``) would own the
same calls too: lines spoken twice, two hang-up timers, a ``maxConcurrentCalls`` count neither
sees whole. So the second one is refused before it restores anything.

The lock is ``flock(2)``: the kernel drops it when the process dies, so a gateway killed with
SIGKILL leaves nothing stale behind and its restart takes the lock at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from voicecall.adapters.store.files import private_directory

__all__ = ["LOCK_FILE", "StoreInUse", "StoreOwner"]

LOCK_FILE = "gateway.lock"


class StoreInUse(Exception):
    """Another running gateway holds the store."""


class StoreOwner:
    """This process's hold on a store directory; :meth:`release` lets it go."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, store: Path) -> StoreOwner:
        """Take the store, or raise :class:`StoreInUse` naming the process that has it.

        Raises:
            StoreInUse: another gateway (in this process or another) holds the lock.
        """
        path = private_directory(store) / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.chmod(path, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StoreInUse(
                f"the store {store} is in use by another voicecall gateway{holder}; "
                "stop it first, or give this one its own store"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder's pid is written for the message above; the lock, not the text, decides.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let the store go (idempotent). The file stays; an unlocked file means nothing."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
