"""The call state machine, table-driven over every pair of states (SPEC §3)."""

from __future__ import annotations

import itertools

import pytest

from voicecall.domain.call import (
    LIVE_STATES,
    TERMINAL_STATES,
    Call,
    CallDirection,
    CallMode,
    CallState,
    Speaker,
    TranscriptEntry,
    can_transition,
)

S = CallState
ORDER = [S.INITIATED, S.RINGING, S.ANSWERED, S.ACTIVE, S.SPEAKING, S.LISTENING]


def expected(current: CallState, target: CallState) -> bool:
    """The rule, written independently of the implementation's ranks."""
    if current in TERMINAL_STATES or current == target:
        return False
    if target in TERMINAL_STATES:
        return True
    if {current, target} == {S.SPEAKING, S.LISTENING}:
        return True
    return ORDER.index(target) > ORDER.index(current)


ALL_PAIRS = list(itertools.product(list(CallState), repeat=2))


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: s.value)
def test_every_move(current: CallState, target: CallState) -> None:
    assert can_transition(current, target) is expected(current, target)


LEGAL = [
    (S.INITIATED, S.RINGING),
    (S.INITIATED, S.ANSWERED),
    (S.RINGING, S.ANSWERED),
    (S.ANSWERED, S.ACTIVE),
    (S.ACTIVE, S.SPEAKING),
    (S.SPEAKING, S.LISTENING),
    (S.LISTENING, S.SPEAKING),
    (S.ANSWERED, S.LISTENING),
    (S.INITIATED, S.NO_ANSWER),
    (S.RINGING, S.BUSY),
    (S.LISTENING, S.HANGUP_USER),
    (S.SPEAKING, S.TIMEOUT),
]
ILLEGAL = [
    (S.RINGING, S.INITIATED),
    (S.ANSWERED, S.RINGING),
    (S.ACTIVE, S.ANSWERED),
    (S.SPEAKING, S.ACTIVE),
    (S.LISTENING, S.ANSWERED),
    (S.COMPLETED, S.RINGING),
    (S.COMPLETED, S.HANGUP_BOT),
    (S.BUSY, S.ANSWERED),
    (S.HANGUP_USER, S.LISTENING),
]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_named_legal_moves(current: CallState, target: CallState) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_named_illegal_moves(current: CallState, target: CallState) -> None:
    assert not can_transition(current, target)


def test_states_partition() -> None:
    assert LIVE_STATES | TERMINAL_STATES == set(CallState)
    assert not LIVE_STATES & TERMINAL_STATES
    assert len(TERMINAL_STATES) == 9


def _call() -> Call:
    return Call(
        call_id="c1",
        provider="mock",
        direction=CallDirection.OUTBOUND,
        from_number="+15550100000",
        to_number="+15551230001",
        mode=CallMode.NOTIFY,
        started_at=100.0,
    )


def test_transition_stamps_times_from_the_caller() -> None:
    call = _call()
    assert call.transition(S.RINGING, 101.0)
    assert call.answered_at is None
    assert call.transition(S.ANSWERED, 102.5)
    assert call.answered_at == 102.5
    assert call.transition(S.SPEAKING, 103.0)
    assert call.answered_at == 102.5
    assert call.transition(S.COMPLETED, 110.0, detail="done")
    assert (call.ended_at, call.end_reason, call.end_detail) == (110.0, "completed", "done")


def test_terminal_state_never_changes() -> None:
    call = _call()
    call.transition(S.BUSY, 101.0)
    for target in CallState:
        assert not call.transition(target, 200.0)
    assert call.state is S.BUSY
    assert call.ended_at == 101.0


def test_refused_move_changes_nothing() -> None:
    call = _call()
    call.transition(S.ANSWERED, 101.0)
    before = (call.state, call.last_activity_at, call.answered_at)
    assert not call.transition(S.RINGING, 150.0)
    assert (call.state, call.last_activity_at, call.answered_at) == before


def test_every_move_and_every_transcript_line_is_activity() -> None:
    call = _call()
    assert call.transition(S.RINGING, 101.0)
    assert call.last_activity_at == 101.0
    assert call.transition(S.ANSWERED, 102.0)
    assert call.last_activity_at == 102.0
    call.add_transcript(Speaker.USER, "hello", 105.0)
    assert call.last_activity_at == 105.0


def test_a_transcript_line_is_whole_unless_marked_cut_and_keeps_its_utterance() -> None:
    call = _call()
    call.add_transcript(Speaker.USER, "hello", 105.0)
    call.add_transcript(Speaker.BOT, "good morn", 106.0, cut=True, utterance_id="u-1")
    assert call.transcript == [
        TranscriptEntry(speaker=Speaker.USER, text="hello", at=105.0),
        TranscriptEntry(
            speaker=Speaker.BOT, text="good morn", at=106.0, cut=True, utterance_id="u-1"
        ),
    ]
    assert call.transcript[0].cut is False
    assert call.transcript[0].utterance_id is None
