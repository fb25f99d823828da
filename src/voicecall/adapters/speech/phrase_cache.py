"""A phrase cache in front of a synthesiser: a line said before plays without a request.

Keyed by a hash of the text and of every parameter that changes the audio (the wrapped
synthesiser's ``cache_key``: provider, model, voice, instructions, voice settings, speed,
language, output format). Entries are the finished μ-law audio, one file each, written
atomically with mode 0600 in a 0700 directory under the store; the least recently used are
removed once the directory holds more than ``max_bytes``. File I/O runs in a worker thread.
An utterance cut off part-way (barge-in) is not stored: only whole syntheses are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import pathlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

from voicecall.adapters.store.files import private_directory

__all__ = ["CacheableSynthesizer", "CachedSynthesizer"]

log = logging.getLogger(__name__)

_CHUNK = 1600  # 200 ms of μ-law per chunk handed on from the cache


class CacheableSynthesizer(Protocol):
    name: str

    def cache_key(self, voice: str | None) -> dict[str, Any]: ...

    def synthesize(self, text: str, voice: str | None) -> AsyncIterator[bytes]: ...


class CachedSynthesizer:
    """Wraps a synthesiser with an on-disk phrase cache.

    Args:
        inner: the synthesiser that makes audio on a miss.
        directory: where entries live (created 0700).
        max_bytes: the size the cache is trimmed back to after each new entry.
        language: the call language, part of the key (it can change the audio).
    """

    def __init__(
        self,
        inner: CacheableSynthesizer,
        directory: pathlib.Path,
        *,
        max_bytes: int = 32 * 1024 * 1024,
        language: str | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.directory = directory
        self.max_bytes = max_bytes
        self.language = language
        self.hits = 0
        self.misses = 0

    def key(self, text: str, voice: str | None) -> str:
        material = {"text": text, "language": self.language, **self.inner.cache_key(voice)}
        encoded = json.dumps(material, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(encoded).hexdigest()

    async def synthesize(self, text: str, voice: str | None) -> AsyncIterator[bytes]:
        path = self.directory / f"{self.key(text, voice)}.ulaw"
        cached = await asyncio.to_thread(_read, path)
        if cached is not None:
            self.hits += 1
            for offset in range(0, len(cached), _CHUNK):
                yield cached[offset : offset + _CHUNK]
            return
        self.misses += 1
        audio = bytearray()
        async for chunk in self.inner.synthesize(text, voice):
            audio += chunk
            yield chunk
        if audio:
            try:
                await asyncio.to_thread(_store, self.directory, path, bytes(audio), self.max_bytes)
            except OSError as err:
                log.warning("phrase cache: could not store an entry (%s)", err)


def _read(path: pathlib.Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        os.utime(path)  # recently used: trimmed last
    except OSError:
        pass
    return data or None


def _store(directory: pathlib.Path, path: pathlib.Path, audio: bytes, max_bytes: int) -> None:
    private_directory(directory)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(audio)
    os.replace(temporary, path)
    _trim(directory, max_bytes)


def _trim(directory: pathlib.Path, max_bytes: int) -> None:
    entries = []
    for entry in directory.glob("*.ulaw"):
        try:
            stat = entry.stat()
        except OSError:
            continue
        entries.append((stat.st_mtime, stat.st_size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries, key=lambda e: (e[0], e[2].name)):
        if total <= max_bytes:
            break
        try:
            entry.unlink()
        except OSError:
            continue
        total -= size
