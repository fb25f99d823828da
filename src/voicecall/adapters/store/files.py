"""Files in the store directory are private: the directory 0700, every file 0600.

The store holds message text (the database and its WAL), tokens and secrets. ``mkdir(mode=…)``
only applies to a directory it creates, and a file's mode follows the umask, so both are set
explicitly, whatever existed before.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["private_directory", "private_file", "write_private"]


def private_directory(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700 even if it already existed."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def private_file(path: Path) -> None:
    """Create ``path`` empty if missing, and make it 0600 either way."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``; the file is 0600 from its first byte."""
    private_directory(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
