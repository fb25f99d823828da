"""Edges of small domain values that mutation testing showed no test pinned down."""

from __future__ import annotations

import pytest

from voicecall.domain.errors import CallerError, CallNotFound
from voicecall.domain.replay import ReplayGuard


def test_replay_guard_takes_the_smallest_sensible_settings() -> None:
    guard = ReplayGuard(max_entries=1, window_seconds=0.5)
    assert len(guard) == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_entries": 0}, "max_entries must be at least 1"),
        ({"window_seconds": 0}, "window_seconds must be positive"),
        ({"window_seconds": -1}, "window_seconds must be positive"),
    ],
)
def test_replay_guard_refuses_settings_that_would_disable_it(
    options: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        ReplayGuard(**options)  # type: ignore[arg-type]
    assert str(refused.value) == message


def test_call_not_found_names_the_call() -> None:
    error = CallNotFound("abc")
    assert isinstance(error, CallerError)
    assert error.call_id == "abc"
    assert error.detail == "no call with id 'abc'"
