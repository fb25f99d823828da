"""The speech queue and the turn rules (domain/speech.py), table-driven, times as plain numbers."""

from __future__ import annotations

import pytest

from voicecall.domain.speech import SpeechQueue, UtteranceState, answers_prompt

Q, P, D, C = (
    UtteranceState.QUEUED,
    UtteranceState.PLAYING,
    UtteranceState.PLAYED,
    UtteranceState.CUT,
)


def queue_of(*ids: str) -> SpeechQueue:
    queue = SpeechQueue()
    for n, uid in enumerate(ids):
        queue.enqueue(uid, f"line {uid}", at=float(n))
    return queue


def states(queue: SpeechQueue) -> list[UtteranceState]:
    return [u.state for u in queue]


# Each row: a sequence of (action, utterance id or None, time) applied to a fresh queue a, b, c,
# and the states that must result.
@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], [Q, Q, Q]),
        ([("start", "a", 10)], [P, Q, Q]),
        ([("start", "a", 10), ("played", "a", 12)], [D, Q, Q]),
        # Playback is in order: news that b started means a finished.
        ([("start", "a", 10), ("start", "b", 12)], [D, P, Q]),
        # A fetch after a <Say> reports the end without a start.
        ([("played", "b", 12)], [D, D, Q]),
        ([("played", "c", 12)], [D, D, D]),
        # Repeats and unknown ids change nothing.
        ([("played", "a", 12), ("played", "a", 13), ("start", "a", 14)], [D, Q, Q]),
        ([("played", "zz", 12)], [Q, Q, Q]),
        # A hang-up cuts what plays and everything queued.
        ([("start", "a", 10), ("cut", None, 11)], [C, C, C]),
        ([("played", "a", 10), ("start", "b", 10), ("cut", None, 11)], [D, C, C]),
        # Nothing changes once final.
        ([("played", "c", 10), ("cut", None, 11)], [D, D, D]),
        ([("cut", None, 11), ("played", "c", 12)], [C, C, C]),
    ],
)
def test_queue_moves(steps: list[tuple[str, str | None, float]], expected: list[str]) -> None:
    queue = queue_of("a", "b", "c")
    for action, uid, at in steps:
        if action == "start":
            assert uid is not None
            queue.mark_started(uid, at)
        elif action == "played":
            assert uid is not None
            queue.mark_played(uid, at)
        else:
            queue.cut_all(at)
    assert states(queue) == expected


def test_enqueue_while_playing_appends_and_never_displaces() -> None:
    queue = queue_of("a")
    queue.mark_started("a", 1.0)
    queue.enqueue("b", "second", at=1.5)
    assert [(u.utterance_id, u.state) for u in queue] == [("a", P), ("b", Q)]
    assert queue.playing is not None and queue.playing.utterance_id == "a"
    assert [u.utterance_id for u in queue.pending] == ["a", "b"]
    with pytest.raises(ValueError, match="already queued"):
        queue.enqueue("a", "again", at=2.0)


def test_timestamps_record_when_the_caller_heard_it() -> None:
    queue = queue_of("a", "b")
    queue.mark_started("a", 10.0)
    changed = queue.mark_played("b", 15.0)
    a, b = list(queue)
    assert [u.utterance_id for u in changed] == ["a", "b"]
    assert (a.started_at, a.ended_at) == (10.0, 15.0)
    assert (b.started_at, b.ended_at) == (15.0, 15.0)
    assert queue.idle


def test_a_cut_line_knows_whether_any_of_it_was_heard() -> None:
    queue = queue_of("a", "b")
    queue.mark_started("a", 10.0)
    cut = queue.cut_all(11.0)
    assert [(u.utterance_id, u.was_heard, u.ended_at) for u in cut] == [
        ("a", True, 11.0),
        ("b", False, 11.0),
    ]


# answers_prompt: the reply is the first final transcript that began after the prompt began.
# Queue: opening "o", prompt "p", later line "l". Rows give what has started and how the
# carrier tells which line the speech follows.
@pytest.mark.parametrize(
    ("started", "heard_after", "speech_started_at", "answers"),
    [
        # The carrier's recogniser: judged by the line the listen went with.
        ({"o": 0.0}, "o", None, False),  # an answer to the opening
        ({"o": 0.0, "p": 5.0}, "o", None, False),  # arrives while the prompt plays: still "o"
        ({"o": 0.0, "p": 5.0}, "p", None, True),
        ({"o": 0.0, "p": 5.0, "l": 9.0}, "l", None, True),  # a later line: still a reply
        ({"o": 0.0}, "p", None, True),  # the listen went with the prompt
        ({"o": 0.0}, "unknown-line", None, False),
        # A media stream: judged by when the caller began to speak.
        ({"o": 0.0, "p": 5.0}, None, 4.9, False),
        ({"o": 0.0, "p": 5.0}, None, 5.0, True),
        ({"o": 0.0, "p": 5.0}, None, 7.5, True),
        ({"o": 0.0}, None, 7.5, False),  # the prompt has not begun playing
        # Neither: any final transcript once the prompt has begun playing.
        ({"o": 0.0, "p": 5.0}, None, None, True),
        ({"o": 0.0}, None, None, False),
    ],
)
def test_answers_prompt(
    started: dict[str, float],
    heard_after: str | None,
    speech_started_at: float | None,
    answers: bool,
) -> None:
    queue = queue_of("o", "p", "l")
    for uid, at in started.items():
        queue.mark_started(uid, at)
    got = answers_prompt(queue, "p", heard_after=heard_after, speech_started_at=speech_started_at)
    assert got is answers


def test_answers_prompt_for_an_unknown_prompt_is_false() -> None:
    queue = queue_of("o")
    queue.mark_started("o", 0.0)
    assert not answers_prompt(queue, "nope", heard_after="o", speech_started_at=None)


def test_a_line_starts_once() -> None:
    queue = queue_of("a", "b")
    assert [u.utterance_id for u in queue.mark_started("a", 10)] == ["a"]
    assert queue.mark_started("a", 11) == []
    line = queue.get("a")
    assert line is not None and line.started_at == 10
    queue.mark_played("a", 12)
    assert not line.start(13)
    assert (line.state, line.started_at) == (D, 10)


def test_news_that_a_line_started_finishes_the_earlier_ones_at_that_time() -> None:
    queue = queue_of("a", "b", "c")
    changed = queue.mark_started("b", 10)
    assert [(u.utterance_id, u.state, u.ended_at) for u in changed] == [
        ("a", D, 10),
        ("b", P, None),
    ]


def test_cut_stops_that_line_and_keeps_the_rest_queued() -> None:
    queue = queue_of("a", "b", "c", "d")
    queue.mark_started("b", 10)
    changed = queue.cut_at("c", 12, rest=False)
    assert [(u.utterance_id, u.state, u.ended_at) for u in changed] == [
        ("b", D, 12),
        ("c", C, 12),
    ]
    assert states(queue) == [D, D, C, Q]
    assert queue.cut_at("c", 13, rest=False) == []


def test_cut_with_rest_drops_every_later_line_too() -> None:
    queue = queue_of("a", "b", "c", "d")
    queue.mark_started("a", 10)
    changed = queue.cut_at("b", 12, rest=True)
    assert [(u.utterance_id, u.state, u.ended_at) for u in changed] == [
        ("a", D, 12),
        ("b", C, 12),
        ("c", C, 12),
        ("d", C, 12),
    ]
    assert queue.cut_at("x", 13, rest=True) == []


def test_index_of_an_unknown_line_is_a_key_error_naming_it() -> None:
    queue = queue_of("a", "b")
    assert queue.index("b") == 1
    with pytest.raises(KeyError) as missing:
        queue.index("zz")
    assert missing.value.args == ("zz",)


def test_playing_is_the_line_heard_now_and_last_played_the_latest_heard_whole() -> None:
    queue = SpeechQueue()
    for uid in ("a", "b", "c", "d"):
        queue.enqueue(uid, uid.upper(), at=0.0)
    assert queue.playing is None and queue.last_played is None
    queue.mark_played("b", at=2.0)  # "a" before it was heard whole too
    queue.mark_started("c", at=2.0)
    assert queue.playing is not None and queue.playing.utterance_id == "c"
    assert queue.last_played is not None and queue.last_played.utterance_id == "b"
    queue.cut_at("c", at=3.0, rest=True)  # a cut line was not heard whole
    assert queue.playing is None
    assert queue.last_played.utterance_id == "b"
