"""The call entity and its state machine (SPEC §3)."""

from __future__ import annotations

import enum
from typing import Final

import attrs

from voicecall.domain.speech import SpeechQueue

__all__ = [
    "LIVE_STATES",
    "TERMINAL_STATES",
    "Call",
    "CallDirection",
    "CallMode",
    "CallState",
    "Speaker",
    "TranscriptEntry",
    "can_transition",
]


class CallState(enum.StrEnum):
    """Every state a call can be in; the last nine are terminal."""

    INITIATED = "initiated"
    RINGING = "ringing"
    ANSWERED = "answered"
    ACTIVE = "active"
    SPEAKING = "speaking"
    LISTENING = "listening"
    COMPLETED = "completed"
    HANGUP_USER = "hangup-user"
    HANGUP_BOT = "hangup-bot"
    TIMEOUT = "timeout"
    ERROR = "error"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_connected(self) -> bool:
        """True once the callee has picked up and until the call ends."""
        return self in _CONNECTED


TERMINAL_STATES: Final = frozenset(
    {
        CallState.COMPLETED,
        CallState.HANGUP_USER,
        CallState.HANGUP_BOT,
        CallState.TIMEOUT,
        CallState.ERROR,
        CallState.FAILED,
        CallState.NO_ANSWER,
        CallState.BUSY,
        CallState.VOICEMAIL,
    }
)
LIVE_STATES: Final = frozenset(set(CallState) - TERMINAL_STATES)
_CONNECTED: Final = frozenset(
    {CallState.ANSWERED, CallState.ACTIVE, CallState.SPEAKING, CallState.LISTENING}
)

# Rank of each live state: a move is legal only to a higher rank, except that speaking and
# listening share a rank and alternate freely.
_RANK: Final = {
    CallState.INITIATED: 0,
    CallState.RINGING: 1,
    CallState.ANSWERED: 2,
    CallState.ACTIVE: 3,
    CallState.SPEAKING: 4,
    CallState.LISTENING: 4,
}


def can_transition(current: CallState, target: CallState) -> bool:
    """Whether a call may move from ``current`` to ``target``.

    Moves go only forward; speaking and listening alternate freely; any live state may end;
    a terminal state never changes. Staying in the same state is not a move.
    """
    if current.is_terminal or current == target:
        return False
    if target.is_terminal:
        return True
    if {current, target} == {CallState.SPEAKING, CallState.LISTENING}:
        return True
    return _RANK[target] > _RANK[current]


class CallDirection(enum.StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class CallMode(enum.StrEnum):
    NOTIFY = "notify"
    CONVERSATION = "conversation"


class Speaker(enum.StrEnum):
    BOT = "bot"
    USER = "user"
    SYSTEM = "system"
    """Not said aloud: the agent's tool calls and their results, in order with the words."""


@attrs.frozen
class TranscriptEntry:
    """One line said on the call."""

    speaker: Speaker
    text: str
    at: float
    cut: bool = False
    """A bot line the caller heard only part of (a hang-up or barge-in stopped it)."""
    utterance_id: str | None = None


@attrs.define
class Call:
    """One phone call, inbound or outbound, from creation to its terminal state.

    Times are Unix seconds from the clock port. ``end_reason`` is the terminal state's name;
    ``end_detail`` says why in words where there is more to say (e.g. the inbound policy).
    """

    call_id: str
    provider: str
    direction: CallDirection
    from_number: str | None
    to_number: str | None
    mode: CallMode
    started_at: float
    state: CallState = CallState.INITIATED
    provider_call_id: str | None = None
    message: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    end_detail: str | None = None
    last_activity_at: float | None = None
    agent_goal: str | None = None
    """An outbound call the agent drives on its own towards this goal."""
    agent_outcome: str | None = None
    """The agent's one-line summary of how the call went, written as its last act."""
    transferred_to: str | None = None
    """The number the agent handed the call to (``end_reason`` is then ``transferred``)."""
    transcript: list[TranscriptEntry] = attrs.Factory(list)
    speech: SpeechQueue = attrs.Factory(SpeechQueue)

    @property
    def is_live(self) -> bool:
        return not self.state.is_terminal

    def transition(self, target: CallState, at: float, *, detail: str | None = None) -> bool:
        """Move to ``target`` if the state machine allows it; return whether the call changed.

        A move the machine refuses (backwards, or out of a terminal state) is ignored, not
        raised: carriers deliver events late and out of order.
        """
        if not can_transition(self.state, target):
            return False
        self.state = target
        self.last_activity_at = at
        if target.is_connected and self.answered_at is None:
            self.answered_at = at
        if target.is_terminal:
            self.ended_at = at
            self.end_reason = target.value
            self.end_detail = detail
        return True

    def add_transcript(
        self,
        speaker: Speaker,
        text: str,
        at: float,
        *,
        cut: bool = False,
        utterance_id: str | None = None,
    ) -> None:
        self.transcript.append(
            TranscriptEntry(speaker=speaker, text=text, at=at, cut=cut, utterance_id=utterance_id)
        )
        self.last_activity_at = at
