"""The 1 MiB body cap (SPEC §4 "Limits") at its edge, on both ways a body can arrive: with a
declared ``Content-Length`` and chunked with none. Up to and including 1 MiB is read; one
byte more is 413 and changes nothing.

One door serves every example of a test: the mock carrier's empty event list changes no state
and the mock signs nothing (no replay cache), so no example can affect the next.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voicecall.entrypoints.webhook_app import MAX_WEBHOOK_BODY

from .conftest import Door

MIB = 1024 * 1024
EMPTY_EVENTS = b'{"events": []}'
# Sizes around the edge, and anywhere between nothing and twice the cap.
SIZES = st.one_of(st.integers(MIB - 64, MIB + 64), st.integers(len(EMPTY_EVENTS), 2 * MIB))


def body_of(size: int) -> bytes:
    # Valid JSON at every size (trailing whitespace), so a body under the cap is a 200.
    return EMPTY_EVENTS + b" " * (size - len(EMPTY_EVENTS))


def test_the_cap_is_one_mebibyte() -> None:
    assert MAX_WEBHOOK_BODY == MIB


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[Door]:
    opened = await Door(tmp_path, "mock", None, {}).start()
    yield opened
    await opened.stop()


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(size=SIZES)
@example(size=MIB)
@example(size=MIB + 1)
@example(size=MIB - 1)
async def test_declared_length_at_and_around_the_cap(door: Door, size: int) -> None:
    response = await door.post("/voice/webhook", body_of(size))
    assert response.status_code == (200 if size <= MIB else 413), size
    assert await door.log_size() == 0


@SETTINGS
@given(size=SIZES, chunk=st.integers(1000, 256 * 1024))
@example(size=MIB, chunk=65536)
@example(size=MIB + 1, chunk=65536)
@example(size=MIB + 1, chunk=MIB)  # the last byte alone in its own chunk
@example(size=MIB, chunk=MIB - 1)
async def test_chunked_body_at_and_around_the_cap(door: Door, size: int, chunk: int) -> None:
    assert door.client is not None
    body = body_of(size)

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    response = await door.client.post("/voice/webhook", content=chunked())
    assert "content-length" not in response.request.headers
    assert response.status_code == (200 if size <= MIB else 413), (size, chunk)
    assert await door.log_size() == 0
