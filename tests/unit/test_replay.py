"""ReplayGuard: a verified request seen before is answered as before, within bounded memory."""

from __future__ import annotations

import pytest

from voicecall.domain.replay import CachedAnswer, ReplayGuard
from voicecall.domain.webhook import WebhookResponse

TWIML = WebhookResponse(
    status=200, body=b"<Response><Say>hi</Say></Response>", content_type="text/xml"
)
EMPTY = WebhookResponse(status=204)


def test_unknown_key_is_not_seen() -> None:
    assert ReplayGuard().seen("twilio:abc", now=0.0) is None


def test_replay_gets_the_exact_earlier_answer() -> None:
    guard = ReplayGuard()
    guard.remember("twilio:abc", now=100.0, answer=TWIML)
    cached = guard.seen("twilio:abc", now=101.0)
    assert cached == CachedAnswer(response=TWIML, first_seen=100.0)
    assert cached is not None
    assert (cached.response.status, cached.response.body, cached.response.content_type) == (
        200,
        b"<Response><Say>hi</Say></Response>",
        "text/xml",
    )


def test_keys_are_independent() -> None:
    guard = ReplayGuard()
    guard.remember("a", now=0.0, answer=TWIML)
    guard.remember("b", now=0.0, answer=EMPTY)
    assert guard.seen("a", 1.0) is not None
    assert guard.seen("a", 1.0).response == TWIML  # type: ignore[union-attr]
    assert guard.seen("b", 1.0).response == EMPTY  # type: ignore[union-attr]
    assert guard.seen("c", 1.0) is None


def test_default_window_is_ten_minutes() -> None:
    guard = ReplayGuard()
    guard.remember("k", now=1_000.0, answer=TWIML)
    assert guard.seen("k", now=1_000.0 + 599.9) is not None
    assert guard.seen("k", now=1_000.0 + 600.0) is None


def test_expired_entries_are_dropped_from_memory() -> None:
    guard = ReplayGuard(window_seconds=10)
    for i in range(5):
        guard.remember(f"k{i}", now=float(i), answer=EMPTY)
    assert len(guard) == 5
    guard.remember("late", now=13.5, answer=EMPTY)  # k0..k3 are now 10 s or older
    assert len(guard) == 2
    assert guard.seen("k3", now=13.5) is None
    assert guard.seen("k4", now=13.5) is not None
    assert guard.seen("anything", now=100.0) is None
    assert len(guard) == 0


def test_eviction_at_the_bound_drops_the_oldest() -> None:
    guard = ReplayGuard(max_entries=3, window_seconds=600)
    for i in range(3):
        guard.remember(f"k{i}", now=float(i), answer=EMPTY)
    assert len(guard) == 3
    guard.remember("k3", now=3.0, answer=EMPTY)
    assert len(guard) == 3
    assert guard.seen("k0", now=4.0) is None
    assert [guard.seen(f"k{i}", now=4.0) is not None for i in (1, 2, 3)] == [True, True, True]


def test_default_bound_is_ten_thousand() -> None:
    guard = ReplayGuard()
    for i in range(10_001):
        guard.remember(f"k{i}", now=0.0, answer=EMPTY)
    assert len(guard) == 10_000
    assert guard.seen("k0", now=0.0) is None
    assert guard.seen("k1", now=0.0) is not None
    assert guard.seen("k10000", now=0.0) is not None


def test_remembering_again_refreshes_and_moves_to_newest() -> None:
    guard = ReplayGuard(max_entries=2, window_seconds=10)
    guard.remember("a", now=0.0, answer=EMPTY)
    guard.remember("b", now=1.0, answer=EMPTY)
    guard.remember("a", now=2.0, answer=TWIML)
    guard.remember("c", now=3.0, answer=EMPTY)  # evicts b, the oldest now
    assert guard.seen("b", now=3.0) is None
    assert guard.seen("a", now=3.0) == CachedAnswer(response=TWIML, first_seen=2.0)
    assert guard.seen("a", now=11.9) is not None


@pytest.mark.parametrize(
    ("max_entries", "window_seconds"), [(0, 600), (-1, 600), (10, 0), (10, -5)]
)
def test_nonsense_limits_are_refused(max_entries: int, window_seconds: float) -> None:
    with pytest.raises(ValueError):
        ReplayGuard(max_entries=max_entries, window_seconds=window_seconds)
