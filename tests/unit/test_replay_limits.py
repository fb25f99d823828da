"""ReplayGuard's limits at their edges: the smallest memory and window it accepts."""

from __future__ import annotations

import pytest

from voicecall.domain.replay import ReplayGuard
from voicecall.domain.webhook import WebhookResponse

EMPTY = WebhookResponse(status=204)


def test_a_memory_of_one_keeps_the_newest() -> None:
    guard = ReplayGuard(max_entries=1, window_seconds=600)
    guard.remember("a", now=0.0, answer=EMPTY)
    assert guard.seen("a", now=1.0) is not None
    guard.remember("b", now=1.0, answer=EMPTY)
    assert len(guard) == 1
    assert guard.seen("a", now=1.0) is None
    assert guard.seen("b", now=1.0) is not None


def test_a_window_under_a_second_is_accepted() -> None:
    guard = ReplayGuard(max_entries=10, window_seconds=0.5)
    guard.remember("a", now=0.0, answer=EMPTY)
    assert guard.seen("a", now=0.4) is not None
    assert guard.seen("a", now=0.5) is None


def test_a_window_of_one_second() -> None:
    guard = ReplayGuard(max_entries=10, window_seconds=1)
    guard.remember("a", now=0.0, answer=EMPTY)
    assert guard.seen("a", now=0.9) is not None
    assert guard.seen("a", now=1.0) is None


def test_memory_bound_of_two() -> None:
    guard = ReplayGuard(max_entries=2, window_seconds=600)
    for key in ("a", "b", "c"):
        guard.remember(key, now=0.0, answer=EMPTY)
    assert len(guard) == 2
    assert guard.seen("a", now=0.0) is None


@pytest.mark.parametrize(
    ("max_entries", "window_seconds", "message"),
    [
        (0, 600, "^max_entries must be at least 1$"),
        (10, 0, "^window_seconds must be positive$"),
    ],
)
def test_nonsense_limits_say_which(max_entries: int, window_seconds: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReplayGuard(max_entries=max_entries, window_seconds=window_seconds)
