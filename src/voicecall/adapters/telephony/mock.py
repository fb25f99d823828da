"""The offline ``mock`` carrier: a stateful simulated telephone network, no account needed.

It behaves like a carrier seen from outside: calls it places ring, are answered (or end busy,
unanswered, in voicemail, failed) after ``mock.answerDelayMs``; what the bot says is "heard"
and recorded; speech takes time, as on a real line (``mock.speechCharsPerSec``, default 15
characters a second), one utterance after another in the order they were queued, each reported
``speech.started`` and ``speech.played``; a hang-up cuts what is playing. Once a line that is
followed by listening has been played, the simulated callee replies with the next line of
``mock.replies`` (naming that line as the one it answers) and hangs up when it has nothing
left to say. Its own record of calls lives in
a small JSON file beside the call store, so - like a real carrier - it outlives a gateway
restart and can be asked about a call afterwards.

Its webhook takes unsigned normalised events (``{"event": {...}}`` or ``{"events": [...]}``):
it exists for offline use, and the listener warns when it is served on a non-loopback address.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from voicecall.adapters.store.files import write_private
from voicecall.adapters.telephony.delivery import EventDelivery
from voicecall.adapters.telephony.handset import SimulatedHandset
from voicecall.adapters.telephony.mock_stream import MockStream, MockStreamDialect
from voicecall.adapters.websocket import WsConnect, connect_websocket
from voicecall.domain.call import Call, CallDirection, CallState
from voicecall.domain.errors import CallerError, CarrierRejected, TransientError
from voicecall.domain.events import (
    CallActive,
    CallAnswered,
    CallDtmf,
    CallEnded,
    CallErrored,
    CallEvent,
    CallInitiated,
    CallRinging,
    CallSilence,
    CallSpeaking,
    CallSpeech,
    SpeechPlayed,
    SpeechStarted,
    StreamStopped,
)
from voicecall.domain.json_input import parse_json
from voicecall.domain.policy import is_e164
from voicecall.domain.ports import (
    CarrierStatus,
    CarrierStatusKind,
    Clock,
    DialRequest,
    DialResult,
    EventSink,
    StreamRequest,
)
from voicecall.domain.signed_url import Verification
from voicecall.domain.speech import AfterSpeech, Playback
from voicecall.domain.webhook import WebhookRequest, WebhookResponse

__all__ = ["MockSettings", "MockTelephony", "parse_normalised_event"]

log = logging.getLogger(__name__)

_OUTCOME_END_STATE = {
    "busy": CallState.BUSY,
    "no-answer": CallState.NO_ANSWER,
    "voicemail": CallState.VOICEMAIL,
    "fail": CallState.FAILED,
}


@attrs.frozen
class MockSettings:
    answer_delay_ms: int = 300
    outcome: str = "answer"
    replies: tuple[str, ...] = (
        "Hi, this is the simulated callee.",
        "Sounds good to me.",
        "Thanks, goodbye!",
    )
    speech_chars_per_sec: float = 15.0
    barge_in_after_s: float | None = None
    """On a media stream, the callee talks over any bot line that has played this long."""


_KEEP_ENDED = 500
"""Ended calls the simulated network remembers (in memory and on disk), newest first: enough to
answer ``status`` for any call a restarted gateway still thinks is live, and for tests to read
what was heard; older ones are forgotten, as a carrier's call log pages away."""

_KEEP_DIALS = 1000


@attrs.define
class _SimCall:
    provider_call_id: str
    call_id: str | None
    direction: str
    from_number: str | None
    to_number: str | None
    status: str = "ringing"  # ringing | live | ended
    end_state: str | None = None
    heard: list[str] = attrs.Factory(list)
    """What the callee heard, in order; a line cut off shows as ``text—``."""
    played: list[dict[str, Any]] = attrs.Factory(list)
    """Each line played: ``{"id", "text", "startedAt", "endedAt", "whole"}`` (clock time)."""
    replies_used: int = 0
    reply_pending: bool = False
    hangups: int = 0
    rejected: int = 0
    ended_at: float | None = None
    transferred_to: str | None = None
    digits: list[str] = attrs.Factory(list)
    """DTMF the bot sent into the call, in order."""


@attrs.define
class _Line:
    utterance_id: str
    text: str
    then: AfterSpeech | None  # set on a playback's last line only


class MockTelephony:
    """The offline carrier. Also exposes what it "heard" and dialled, for tests and demos.

    Args:
        settings: ``mock.*`` from the config.
        clock: timers for the simulated callee.
        state_path: where the simulated network keeps its calls; None keeps them in memory.
        connect_ws: how the mock opens media streams to our listener (the network by
            default; tests connect in-process).
    """

    name = "mock"
    signs_webhooks = False

    def __init__(
        self,
        settings: MockSettings,
        clock: Clock,
        state_path: Path | None = None,
        *,
        connect_ws: WsConnect | None = None,
    ):
        self.settings = settings
        self.connect_ws: WsConnect = connect_ws or connect_websocket
        self.clock = clock
        self.state_path = state_path
        self.unavailable = False  # a simulated carrier outage: REST fails, status is unknown
        self.dials: list[dict[str, Any]] = []
        self._calls: dict[str, _SimCall] = {}
        self._events = EventDelivery(clock, "mock carrier")
        self._queues: dict[str, list[_Line]] = {}
        self._playing: dict[str, tuple[_Line, Any]] = {}
        self._streams: dict[str, MockStream] = {}
        self._awaiting_answer: dict[str, str] = {}
        # Ended calls in the order they ended (a dict as an ordered set), trimmed to
        # _KEEP_ENDED: a gateway that runs for weeks must not keep every call it ever placed.
        self._ended: dict[str, None] = {}
        self._save_lock = asyncio.Lock()
        self._changes = 0  # state changes so far; _saved is how many the file holds
        self._saved = 0
        self._load()

    # ------------------------------------------------------------------ port

    def bind(self, sink: EventSink) -> None:
        self._events.bind(sink)

    async def dial(self, request: DialRequest) -> DialResult:
        self._check_up()
        if not is_e164(request.to_number):
            raise CarrierRejected(f"mock carrier: {request.to_number!r} is not a valid number")
        provider_call_id = f"mock-{uuid.uuid4().hex[:16]}"
        sim = _SimCall(
            provider_call_id=provider_call_id,
            call_id=request.call_id,
            direction="outbound",
            from_number=request.from_number,
            to_number=request.to_number,
        )
        self._calls[provider_call_id] = sim
        self.dials.append(
            {"providerCallId": provider_call_id, "callId": request.call_id, "to": request.to_number}
        )
        if len(self.dials) > 2 * _KEEP_DIALS:
            del self.dials[:-_KEEP_DIALS]
        await self._save()
        for kind, suffix in ((CallInitiated, "initiated"), (CallRinging, "ringing")):
            event = kind(
                call_id=request.call_id,
                provider_call_id=provider_call_id,
                dedupe_key=f"{provider_call_id}:{suffix}",
            )
            self._events.later(0.0, event)
        delay = self.settings.answer_delay_ms / 1000
        outcome = self.settings.outcome
        if outcome == "answer":
            self.clock.schedule(delay, lambda: self._pick_up(sim))
        else:
            end_state = _OUTCOME_END_STATE[outcome]
            self.clock.schedule(delay, lambda: self._end_by_network(sim, end_state))
        return DialResult(provider_call_id=provider_call_id)

    async def answer(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        self._check_up()
        sim = self._known(call)
        if sim.status == "ended":
            raise CarrierRejected("mock carrier: the caller has already hung up")
        await self._pick_up(sim)

    async def reject(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        self._check_up()
        sim = self._known(call)
        if sim.status != "ended":
            sim.rejected += 1
            self._stop(sim, CallState.HANGUP_BOT)
            await self._save()

    async def play(
        self, call: Call, playback: Playback, *, reply_to: WebhookRequest | None = None
    ) -> None:
        self._check_up()
        sim = self._known(call)
        if sim.status != "live":
            raise CarrierRejected("mock carrier: the call is not connected")
        queue = self._queues.setdefault(sim.provider_call_id, [])
        for position, line in enumerate(playback.lines):
            last = position == len(playback.lines) - 1
            queue.append(_Line(line.utterance_id, line.text, playback.then if last else None))
        if sim.provider_call_id not in self._playing:
            # Started on a later tick, as a carrier would: the service holds the call's lock.
            self._events.schedule(0.0, lambda: self._play_next(sim))

    async def hangup(self, call: Call, *, reply_to: WebhookRequest | None = None) -> None:
        self._check_up()
        sim = self._calls.get(call.provider_call_id or "")
        if sim is None or sim.status == "ended":
            return  # already over: hanging up again is success
        sim.hangups += 1
        await self._end_on_request(sim, CallState.HANGUP_BOT)

    async def transfer(
        self, call: Call, to: str, *, reply_to: WebhookRequest | None = None
    ) -> None:
        """The simulated network bridges the callee to ``to``: our leg of the call is over."""
        self._check_up()
        sim = self._known(call)
        if sim.status != "live":
            raise CarrierRejected("the mock call is not live; nothing to transfer")
        sim.transferred_to = to
        await self._end_on_request(sim, CallState.COMPLETED)

    async def _end_on_request(self, sim: _SimCall, end_state: CallState) -> None:
        """We asked the network to end our leg: it goes dead now, and the carrier reports it
        on a later tick, as a webhook would arrive."""
        self._stop(sim, end_state)
        await self._save()
        self._events.later(
            0.0,
            CallEnded(
                call_id=sim.call_id,
                provider_call_id=sim.provider_call_id,
                reason=end_state,
                dedupe_key=f"{sim.provider_call_id}:ended",
            ),
        )

    async def send_digits(self, call: Call, digits: str) -> None:
        self._check_up()
        sim = self._known(call)
        if sim.status != "live":
            raise CarrierRejected("the mock call is not live; no digits sent")
        sim.digits.append(digits)
        await self._save()

    def transferred_to(self, provider_call_id: str) -> str | None:
        sim = self._calls.get(provider_call_id)
        return sim.transferred_to if sim is not None else None

    def digits_sent(self, provider_call_id: str) -> list[str]:
        sim = self._calls.get(provider_call_id)
        return list(sim.digits) if sim is not None else []

    async def status(self, call: Call) -> CarrierStatus:
        if self.unavailable:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="mock carrier unavailable")
        sim = self._calls.get(call.provider_call_id or "")
        if sim is None:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="the mock carrier has no record")
        if sim.status == "ended":
            end = CallState(sim.end_state) if sim.end_state else CallState.COMPLETED
            return CarrierStatus(CarrierStatusKind.ENDED, end_state=end)
        return CarrierStatus(CarrierStatusKind.LIVE)

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        return True

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        # The mock exists for offline use and signs nothing; see the module docstring.
        return Verification(ok=True, reason="the mock carrier signs nothing")

    async def parse_webhook(self, request: WebhookRequest) -> Sequence[CallEvent]:
        payload = parse_json(request.body or b"null")  # InvalidJson is a CallerError: 400
        if isinstance(payload, dict) and "event" in payload and "events" not in payload:
            raw_events = [payload["event"]]
        elif isinstance(payload, dict) and isinstance(payload.get("events"), list):
            raw_events = payload["events"]
        else:
            raise CallerError('expected {"event": {...}} or {"events": [...]}')
        events = [parse_normalised_event(raw, index) for index, raw in enumerate(raw_events)]
        for event in events:
            if isinstance(event, CallInitiated) and event.direction is CallDirection.INBOUND:
                self._register_inbound(event)
        return events

    def webhook_response(self, request: WebhookRequest, calls: Sequence[Call]) -> WebhookResponse:
        body = json.dumps({"ok": True, "callIds": [call.call_id for call in calls]})
        return WebhookResponse(200, body.encode(), "application/json")

    # ------------------------------------------------------------------ media streams

    def stream_dialect(self) -> MockStreamDialect:
        return MockStreamDialect()

    async def connect_stream(
        self, call: Call, stream: StreamRequest, *, reply_to: WebhookRequest | None = None
    ) -> None:
        self._check_up()
        sim = self._known(call)
        if sim.status != "live":
            raise CarrierRejected("mock carrier: the call is not connected")
        line = self._streams.get(sim.provider_call_id)
        if line is None:
            line = self._streams[sim.provider_call_id] = self._stream_line(sim)
        line.connect(stream.url, stream.token)

    def _stream_line(self, sim: _SimCall) -> MockStream:
        line: MockStream

        async def hang_up() -> None:
            await self._end_by_network(sim, CallState.HANGUP_USER)

        async def stopped(reason: str) -> None:
            if sim.status == "live":
                await self._events.emit(
                    StreamStopped(
                        call_id=sim.call_id,
                        provider_call_id=sim.provider_call_id,
                        reason=reason,
                        dedupe_key=f"{sim.provider_call_id}:stream-stopped:{line.attempts}",
                    )
                )

        handset = SimulatedHandset(
            self.clock,
            send_audio=lambda frame: line.send_audio(frame),
            echo_mark=lambda name: line.echo_mark(name),
            hang_up=hang_up,
            replies=self.settings.replies[sim.replies_used :],
            reply_delay_s=max(self.settings.answer_delay_ms, 50) / 1000,
            barge_in_after_s=self.settings.barge_in_after_s,
            chars_per_sec=self.settings.speech_chars_per_sec,
        )
        line = MockStream(sim.provider_call_id, handset, self.connect_ws, stopped)
        return line

    def stream_line(self, provider_call_id: str) -> MockStream | None:
        """The carrier's end of a streamed call (tests drop it, read its handset)."""
        return self._streams.get(provider_call_id)

    def restore(self, call: Call, pending: Playback) -> None:
        """The mock carrier lives in our process, so a restart stopped it mid-line too: it
        plays the pending lines again from the first one not heard whole, in order."""
        sim = self._calls.get(call.provider_call_id or "")
        if sim is None or sim.status != "live" or not pending.lines:
            return
        if sim.call_id is None:
            sim.call_id = call.call_id
        queue = self._queues.setdefault(sim.provider_call_id, [])
        for position, line in enumerate(pending.lines):
            last = position == len(pending.lines) - 1
            queue.append(_Line(line.utterance_id, line.text, pending.then if last else None))
        self._events.schedule(0.0, lambda: self._play_next(sim))

    async def aclose(self) -> None:
        for line in list(self._streams.values()):
            await line.close()
        self._streams.clear()
        self._events.cancel_all()
        for _line, timer in self._playing.values():
            timer.cancel()
        self._playing.clear()
        self._queues.clear()

    # ------------------------------------------------------------------ simulation

    def simulate_inbound(self, from_number: str | None, to_number: str | None) -> CallInitiated:
        """A caller rings us; returns the carrier's ``call.initiated`` to apply."""
        self._check_up()
        provider_call_id = f"mock-in-{uuid.uuid4().hex[:16]}"
        event = CallInitiated(
            provider_call_id=provider_call_id,
            direction=CallDirection.INBOUND,
            from_number=from_number,
            to_number=to_number,
            dedupe_key=f"{provider_call_id}:initiated",
        )
        self._register_inbound(event)
        return event

    def heard(self, provider_call_id: str) -> list[str]:
        """What the callee heard on a call, in order; a line cut off ends in ``—``."""
        return [
            entry["text"] if entry["whole"] else f"{entry['text']}—"
            for entry in self.played(provider_call_id)
            if entry["endedAt"] is not None
        ]

    def played(self, provider_call_id: str) -> list[dict[str, Any]]:
        """Each line played on a call, natively or over its stream, with its start and end in
        clock time, in the order the callee heard them."""
        sim = self._calls.get(provider_call_id)
        entries = (
            [dict(entry, whole=bool(entry.get("whole"))) for entry in sim.played] if sim else []
        )
        line = self._streams.get(provider_call_id)
        if line is not None:
            entries += [
                {
                    "text": heard.text,
                    "startedAt": heard.started_at,
                    "endedAt": heard.ended_at,
                    "whole": heard.whole,
                }
                for heard in line.handset.heard
            ]
        return sorted(entries, key=lambda entry: entry["startedAt"])

    def ended_at(self, provider_call_id: str) -> float | None:
        """When the line went dead, in clock time."""
        sim = self._calls.get(provider_call_id)
        return sim.ended_at if sim else None

    async def caller_hangs_up(self, provider_call_id: str) -> None:
        """The simulated callee puts the phone down now, mid-sentence or not."""
        sim = self._calls.get(provider_call_id)
        if sim is not None:
            await self._end_by_network(sim, CallState.HANGUP_USER)

    def counters(self, provider_call_id: str) -> dict[str, int]:
        sim = self._calls.get(provider_call_id)
        return {"hangups": sim.hangups, "rejected": sim.rejected} if sim else {}

    def _register_inbound(self, event: CallInitiated) -> None:
        pid = event.provider_call_id or ""
        if pid and pid not in self._calls:
            self._calls[pid] = _SimCall(
                provider_call_id=pid,
                call_id=None,
                direction="inbound",
                from_number=event.from_number,
                to_number=event.to_number,
            )

    async def _pick_up(self, sim: _SimCall) -> None:
        if sim.status != "ringing":
            return
        sim.status = "live"
        await self._save()
        # Delivered on a later tick, as a carrier's webhook would be: the service may be
        # holding the call's lock while it asks us to answer.
        self._events.later(
            0.0,
            CallAnswered(
                call_id=sim.call_id,
                provider_call_id=sim.provider_call_id,
                dedupe_key=f"{sim.provider_call_id}:answered",
            ),
        )

    async def _end_by_network(self, sim: _SimCall, end_state: CallState) -> None:
        if sim.status == "ended":
            return
        self._stop(sim, end_state)
        await self._save()
        await self._events.emit(
            CallEnded(
                call_id=sim.call_id,
                provider_call_id=sim.provider_call_id,
                reason=end_state,
                dedupe_key=f"{sim.provider_call_id}:ended",
            )
        )

    def _stop(self, sim: _SimCall, end_state: CallState) -> None:
        """The line goes dead: whatever is playing is cut where the callee stopped hearing."""
        now = self.clock.now()
        sim.status = "ended"
        sim.end_state = end_state.value
        sim.ended_at = now
        self._queues.pop(sim.provider_call_id, None)
        self._awaiting_answer.pop(sim.provider_call_id, None)
        self._retire(sim.provider_call_id)
        stream = self._streams.get(sim.provider_call_id)
        if stream is not None:
            self._events.schedule(0.0, stream.close)
        current = self._playing.pop(sim.provider_call_id, None)
        if current is not None:
            line, timer = current
            timer.cancel()
            sim.heard.append(f"{line.text}—")
            sim.played[-1].update(endedAt=now, whole=False)

    def _retire(self, provider_call_id: str) -> None:
        """Remember an ended call; forget the oldest beyond ``_KEEP_ENDED``."""
        self._ended[provider_call_id] = None
        while len(self._ended) > _KEEP_ENDED:
            oldest = next(iter(self._ended))
            del self._ended[oldest]
            self._calls.pop(oldest, None)
            self._streams.pop(oldest, None)

    def _play_next(self, sim: _SimCall) -> None:
        if sim.status != "live" or sim.provider_call_id in self._playing:
            return
        queue = self._queues.get(sim.provider_call_id)
        if not queue:
            return
        line = queue.pop(0)
        now = self.clock.now()
        sim.played.append(
            {"id": line.utterance_id, "text": line.text, "startedAt": now, "endedAt": None}
        )
        seconds = max(len(line.text.strip()), 1) / self.settings.speech_chars_per_sec
        timer = self.clock.schedule(seconds, lambda: self._line_done(sim, line))
        self._playing[sim.provider_call_id] = (line, timer)
        self._events.later(
            0.0,
            SpeechStarted(
                call_id=sim.call_id,
                provider_call_id=sim.provider_call_id,
                utterance_id=line.utterance_id,
            ),
        )

    async def _line_done(self, sim: _SimCall, line: _Line) -> None:
        current = self._playing.get(sim.provider_call_id)
        if current is None or current[0] is not line or sim.status != "live":
            return
        del self._playing[sim.provider_call_id]
        sim.heard.append(line.text)
        sim.played[-1].update(endedAt=self.clock.now(), whole=True)
        await self._save()
        self._play_next(sim)
        await self._events.emit(
            SpeechPlayed(
                call_id=sim.call_id,
                provider_call_id=sim.provider_call_id,
                utterance_id=line.utterance_id,
            )
        )
        if line.then is AfterSpeech.LISTEN:
            self._listen_after(sim, line.utterance_id)

    def _listen_after(self, sim: _SimCall, utterance_id: str) -> None:
        """A line followed by listening was heard: the callee answers it after a moment. One
        heard while the callee is about to answer an earlier line gets its own answer next."""
        self._awaiting_answer[sim.provider_call_id] = utterance_id
        if sim.reply_pending:
            return
        sim.reply_pending = True
        self._events.schedule(self._reply_delay(), lambda: self._callee_turn(sim, utterance_id))

    async def _callee_turn(self, sim: _SimCall, heard_after: str) -> None:
        sim.reply_pending = False
        if sim.status != "live":
            return
        newer = self._awaiting_answer.pop(sim.provider_call_id, heard_after)
        if newer != heard_after:
            self._listen_after(sim, newer)
        if sim.replies_used >= len(self.settings.replies):
            await self._end_by_network(sim, CallState.HANGUP_USER)
            return
        text = self.settings.replies[sim.replies_used]
        sim.replies_used += 1
        await self._save()
        await self._events.emit(
            CallSpeech(
                call_id=sim.call_id,
                provider_call_id=sim.provider_call_id,
                transcript=text,
                is_final=True,
                confidence=0.99,
                heard_after=heard_after,
                dedupe_key=f"{sim.provider_call_id}:speech:{sim.replies_used}",
            )
        )

    def _reply_delay(self) -> float:
        return max(self.settings.answer_delay_ms, 50) / 1000

    def _known(self, call: Call) -> _SimCall:
        sim = self._calls.get(call.provider_call_id or "")
        if sim is None:
            raise CarrierRejected(f"mock carrier: no call {call.provider_call_id!r}")
        if sim.call_id is None:
            sim.call_id = call.call_id
        return sim

    def _check_up(self) -> None:
        if self.unavailable:
            raise TransientError("mock carrier unavailable (simulated outage)")

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            data = json.loads(self.state_path.read_text())
            self.dials = list(data.get("dials", []))
            for raw in data.get("calls", []):
                sim = _SimCall(**raw)
                sim.reply_pending = False
                self._calls[sim.provider_call_id] = sim
                if sim.status == "ended":
                    self._retire(sim.provider_call_id)
        except (OSError, ValueError, TypeError) as err:
            log.warning("mock carrier: ignoring unreadable state file %s: %s", self.state_path, err)

    async def _save(self) -> None:
        """Write the network's state; returns once the file holds every change made so far.

        Changes made while a write is running share the next write (a group commit): each
        write serialises every remembered call, so one write per change would cost O(calls)
        per change.
        """
        if self.state_path is None:
            return
        self._changes += 1
        wanted = self._changes
        async with self._save_lock:
            if self._saved >= wanted:
                return  # a write that started after our change already holds it
            upto = self._changes
            ended = [self._calls[pid] for pid in self._ended if pid in self._calls]
            live = [c for c in self._calls.values() if c.status != "ended"]
            snapshot = {
                "dials": self.dials[-_KEEP_DIALS:],
                "calls": [attrs.asdict(c) for c in ended + live],
            }
            await asyncio.to_thread(_write_atomically, self.state_path, json.dumps(snapshot))
            self._saved = upto


def _write_atomically(path: Path, text: str) -> None:
    # The carrier's state names numbers and messages: 0600 in a 0700 directory.
    write_private(path, text.encode())


_EVENT_TYPES: dict[str, type[CallEvent]] = {
    cls.type: cls
    for cls in (
        CallInitiated,
        CallRinging,
        CallAnswered,
        CallActive,
        CallSpeaking,
        CallSpeech,
        CallSilence,
        CallDtmf,
        CallEnded,
        CallErrored,
        SpeechStarted,
        SpeechPlayed,
    )
}

_FIELDS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "callId": ("call_id", str),
    "providerCallId": ("provider_call_id", str),
    "dedupeKey": ("dedupe_key", str),
    "from": ("from_number", str),
    "to": ("to_number", str),
    "text": ("text", str),
    "transcript": ("transcript", str),
    "isFinal": ("is_final", bool),
    "confidence": ("confidence", (int, float)),
    "durationMs": ("duration_ms", int),
    "digits": ("digits", str),
    "detail": ("detail", str),
    "error": ("error", str),
    "retryable": ("retryable", bool),
    "utteranceId": ("utterance_id", str),
    "heardAfter": ("heard_after", str),
    "startedAt": ("started_at", (int, float)),
}


def parse_normalised_event(raw: Any, index: int = 0) -> CallEvent:
    """One normalised event from JSON; ``CallerError`` naming the bad field otherwise."""
    where = f"events[{index}]"
    if not isinstance(raw, dict):
        raise CallerError(f"{where}: expected an object")
    kind = raw.get("type")
    cls = _EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise CallerError(f"{where}.type: expected one of {', '.join(sorted(_EVENT_TYPES))}")
    allowed = {field.name for field in attrs.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "type":
            continue
        if key == "direction" and cls is CallInitiated:
            try:
                kwargs["direction"] = CallDirection(value)
            except ValueError:
                raise CallerError(f"{where}.direction: expected inbound or outbound") from None
            continue
        if key == "reason" and cls is CallEnded:
            try:
                reason = CallState(value)
            except ValueError:
                reason = None
            if reason is None or not reason.is_terminal:
                raise CallerError(f"{where}.reason: expected a terminal call state") from None
            kwargs["reason"] = reason
            continue
        spec = _FIELDS.get(key)
        if spec is None or spec[0] not in allowed:
            raise CallerError(f"{where}.{key}: not a field of {kind}")
        name, expected = spec
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise CallerError(f"{where}.{key}: wrong type")
        kwargs[name] = value
    if not kwargs.get("call_id") and not kwargs.get("provider_call_id"):
        raise CallerError(f"{where}: needs callId or providerCallId")
    return cls(**kwargs)
