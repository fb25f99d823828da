"""Speech that is heard: each call's ordered queue of utterances and the turn-taking rules.

An utterance moves ``queued → playing → played``, or to ``cut`` when a hang-up or a barge-in
stops it. One plays at a time, in the order it was queued; ``speak`` only ever appends. The
carrier tells us what was played (SPEC §3): a Telnyx ``call.speak.ended``, the next TwiML/XML
fetch after a ``<Say>``/``<Speak>``, a media-stream mark. Because playback is strictly in
order, news that an utterance started or finished also settles every utterance before it.

Everything here is pure: times come in as arguments, from the clock port.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

import attrs

__all__ = [
    "AfterSpeech",
    "Playback",
    "SpeechQueue",
    "SpokenLine",
    "Utterance",
    "UtteranceState",
    "answers_prompt",
]


class UtteranceState(enum.StrEnum):
    QUEUED = "queued"
    PLAYING = "playing"
    PLAYED = "played"
    CUT = "cut"

    @property
    def is_final(self) -> bool:
        return self in (UtteranceState.PLAYED, UtteranceState.CUT)


@attrs.define
class Utterance:
    """One thing the bot says.

    Attributes:
        utterance_id: unique within the call; the carrier reports playback by it.
        text: the words.
        queued_at: when ``speak``/``continue`` (or the service itself) queued it.
        started_at: when the caller began to hear it; None until then (and for a line cut
            before it ever started).
        ended_at: when it was played whole or cut.
    """

    utterance_id: str
    text: str
    queued_at: float
    state: UtteranceState = UtteranceState.QUEUED
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def was_heard(self) -> bool:
        """True once any of it reached the caller."""
        return self.started_at is not None

    def start(self, at: float) -> bool:
        if self.state is not UtteranceState.QUEUED:
            return False
        self.state = UtteranceState.PLAYING
        self.started_at = at
        return True

    def finish(self, at: float) -> bool:
        if self.state.is_final:
            return False
        if self.started_at is None:
            # The carrier reported the end without the start (a TwiML fetch after a <Say>).
            self.started_at = at
        self.state = UtteranceState.PLAYED
        self.ended_at = at
        return True

    def cut(self, at: float) -> bool:
        if self.state.is_final:
            return False
        self.state = UtteranceState.CUT
        self.ended_at = at
        return True


@attrs.define
class SpeechQueue:
    """A call's utterances in the order they were queued (and therefore played)."""

    utterances: list[Utterance] = attrs.Factory(list)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __len__(self) -> int:
        return len(self.utterances)

    def enqueue(self, utterance_id: str, text: str, at: float) -> Utterance:
        """Append a line; it never displaces anything already queued or playing."""
        if self.get(utterance_id) is not None:
            raise ValueError(f"utterance {utterance_id!r} is already queued")
        utterance = Utterance(utterance_id=utterance_id, text=text, queued_at=at)
        self.utterances.append(utterance)
        return utterance

    def get(self, utterance_id: str | None) -> Utterance | None:
        if utterance_id is None:
            return None
        return next((u for u in self.utterances if u.utterance_id == utterance_id), None)

    def index(self, utterance_id: str) -> int:
        for position, utterance in enumerate(self.utterances):
            if utterance.utterance_id == utterance_id:
                return position
        raise KeyError(utterance_id)

    @property
    def playing(self) -> Utterance | None:
        """The line being heard now; at most one (a line starting finishes those before)."""
        return next((u for u in self.utterances if u.state is UtteranceState.PLAYING), None)

    @property
    def last_played(self) -> Utterance | None:
        """The line most recently heard whole."""
        return next(
            (u for u in reversed(self.utterances) if u.state is UtteranceState.PLAYED), None
        )

    @property
    def pending(self) -> list[Utterance]:
        """Lines not yet played whole or cut, in order."""
        return [u for u in self.utterances if not u.state.is_final]

    @property
    def idle(self) -> bool:
        """Nothing queued or playing."""
        return not self.pending

    def mark_started(self, utterance_id: str, at: float) -> list[Utterance]:
        """The carrier began playing ``utterance_id``: every earlier line has finished.

        Returns the utterances whose state changed, in order (empty for an unknown id or a
        repeat).
        """
        if self.get(utterance_id) is None:
            return []
        changed = self._finish_before(utterance_id, at)
        target = self.get(utterance_id)
        if target is not None and target.start(at):
            changed.append(target)
        return changed

    def mark_played(self, utterance_id: str, at: float) -> list[Utterance]:
        """The caller has heard ``utterance_id`` whole, so also every line before it."""
        if self.get(utterance_id) is None:
            return []
        changed = self._finish_before(utterance_id, at)
        target = self.get(utterance_id)
        if target is not None and target.finish(at):
            changed.append(target)
        return changed

    def cut_at(self, utterance_id: str, at: float, *, rest: bool) -> list[Utterance]:
        """Stop ``utterance_id`` where it was (lines before it were heard whole); with
        ``rest``, every line after it is dropped too. Returns what changed, in order."""
        if self.get(utterance_id) is None:
            return []
        changed = self._finish_before(utterance_id, at)
        after = False
        for utterance in self.utterances:
            if utterance.utterance_id == utterance_id:
                after = True
                if utterance.cut(at):
                    changed.append(utterance)
            elif after and rest and utterance.cut(at):
                changed.append(utterance)
        return changed

    def cut_all(self, at: float) -> list[Utterance]:
        """A hang-up or barge-in: what is playing is cut where it was; the rest never plays."""
        return [u for u in self.utterances if u.cut(at)]

    def _finish_before(self, utterance_id: str, at: float) -> list[Utterance]:
        changed: list[Utterance] = []
        for utterance in self.utterances:
            if utterance.utterance_id == utterance_id:
                break
            if utterance.finish(at):
                changed.append(utterance)
        return changed


def answers_prompt(
    queue: SpeechQueue,
    prompt_id: str,
    *,
    heard_after: str | None,
    speech_started_at: float | None,
) -> bool:
    """Whether a final caller transcript is the reply to the prompt ``prompt_id``.

    The reply to a prompt is the caller's first final transcript that *began after the prompt
    began playing*. Carriers tell this in one of two ways:

    * with the carrier's recogniser, by which bot line the listen carried or followed
      (``heard_after``): a listen that goes with the prompt or a later line answers it, one
      that went with an earlier line answers that line;
    * over a media stream, by when the caller started speaking (``speech_started_at``)
      against when the prompt started playing.

    With neither, the transcript answers the prompt once the prompt has begun playing.
    """
    prompt = queue.get(prompt_id)
    if prompt is None:
        return False
    if heard_after is not None:
        if queue.get(heard_after) is None:
            return False
        return queue.index(heard_after) >= queue.index(prompt_id)
    if prompt.started_at is None:
        return False
    if speech_started_at is not None:
        return speech_started_at >= prompt.started_at
    return True


class AfterSpeech(enum.StrEnum):
    """What the carrier does once the lines of a ``Playback`` have been played."""

    LISTEN = "listen"  # recognise the caller's next utterance
    HANGUP = "hangup"  # hold ``hangup_after_s``, then hang up (notify)
    WAIT = "wait"  # keep the line open, silent, for whatever comes next


@attrs.frozen
class SpokenLine:
    """One utterance as a carrier adapter needs it."""

    utterance_id: str
    text: str
    voice: str | None = None


@attrs.frozen
class Playback:
    """Lines to play in order, and what follows them: the unit the telephony port plays."""

    lines: tuple[SpokenLine, ...]
    then: AfterSpeech = AfterSpeech.WAIT
    hangup_after_s: float = 0.0
