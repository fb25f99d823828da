"""The call service: places, answers, drives and ends calls through the ports.

Every state change is written to the store before anything is acknowledged; timers come from
the clock port; nothing here knows which carrier is behind the telephony port.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar

import attrs

from voicecall.domain.call import (
    Call,
    CallDirection,
    CallMode,
    CallState,
    Speaker,
    TranscriptEntry,
)
from voicecall.domain.errors import (
    CallNotFound,
    InvalidCallState,
    TransientError,
    VoiceCallError,
)
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
    SpeechCut,
    SpeechPlayed,
    SpeechStarted,
    StreamStopped,
)
from voicecall.domain.exposure import PublicAddress
from voicecall.domain.policy import (
    DestinationRefused,
    DialLedger,
    InboundPolicy,
    OutboundPolicy,
)
from voicecall.domain.ports import (
    CallStore,
    CarrierStatusKind,
    Clock,
    DialRequest,
    MediaStreaming,
    Responder,
    StreamRequest,
    TelephonyProvider,
    TimerHandle,
)
from voicecall.domain.speech import (
    AfterSpeech,
    Playback,
    SpokenLine,
    Utterance,
    UtteranceState,
    answers_prompt,
)
from voicecall.domain.spoken_text import normalise_speech, split_speech
from voicecall.domain.webhook import WebhookRequest, WebhookResponse
from voicecall.services.events import EventFeed
from voicecall.services.media import MediaService
from voicecall.services.pairing import PairingService

__all__ = ["CallAgent", "CallService", "CallSettings", "call_to_dict", "utterance_to_dict"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Reconnects of a call's media stream before it goes on with the carrier's native voice.
_MAX_STREAM_ATTEMPTS = 3
_APOLOGY = "Sorry, I need a moment and could not answer that in time. Could you say it again?"


class CallAgent(Protocol):
    """The agent on the line (``services.agent.AgentService``), as the call service uses it."""

    def hear(self, call_id: str, utterance: str) -> None:
        """The caller said ``utterance`` (final): answer it."""

    def open(self, call_id: str) -> None:
        """An outbound goal call was answered: speak first."""

    async def aclose(self) -> None: ...


@attrs.frozen
class CallSettings:
    """The numbers the service runs by, taken from the plugin config."""

    from_number: str
    outbound: OutboundPolicy
    inbound: InboundPolicy
    inbound_greeting: str = "Hello! How can I help you today?"
    voice: str | None = None
    max_duration_s: float = 300.0
    ring_timeout_s: float = 30.0
    transcript_timeout_s: float = 180.0
    response_timeout_s: float = 30.0
    stale_call_reaper_s: float = 120.0
    retention_s: float = 30 * 86400.0
    """``retentionDays``: ended calls and the event log are kept this long."""
    max_log_events: int = 1_000_000
    """The event log is also capped at this many entries, oldest dropped first."""
    stream_url: str | None = None
    """Where carriers open media streams (``streaming.enabled``); None speaks natively."""


def call_to_dict(call: Call) -> dict[str, Any]:
    """A call as ``status`` and ``list`` show it (SPEC §7)."""
    return {
        "callId": call.call_id,
        "provider": call.provider,
        "providerCallId": call.provider_call_id,
        "direction": call.direction.value,
        "state": call.state.value,
        "from": call.from_number,
        "to": call.to_number,
        "mode": call.mode.value,
        "startedAt": call.started_at,
        "answeredAt": call.answered_at,
        "endedAt": call.ended_at,
        "endReason": call.end_reason,
        "endDetail": call.end_detail,
        **_agent_fields(call),
        "transcript": [_line_to_dict(line) for line in call.transcript],
        "speech": [utterance_to_dict(u) for u in call.speech],
    }


def _agent_fields(call: Call) -> dict[str, Any]:
    fields = {
        "agentGoal": call.agent_goal,
        "agentOutcome": call.agent_outcome,
        "transferredTo": call.transferred_to,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _line_to_dict(line: TranscriptEntry) -> dict[str, Any]:
    entry: dict[str, Any] = {"speaker": line.speaker.value, "text": line.text, "at": line.at}
    if line.cut:
        entry["cut"] = True
    return entry


def utterance_to_dict(utterance: Utterance) -> dict[str, Any]:
    """One line of the call's speech queue, with its playback moments."""
    return {
        "utteranceId": utterance.utterance_id,
        "text": utterance.text,
        "state": utterance.state.value,
        "queuedAt": utterance.queued_at,
        "startedAt": utterance.started_at,
        "endedAt": utterance.ended_at,
    }


@attrs.define
class _Turn:
    """A ``continue`` waiting for the caller's reply to its prompt."""

    prompt_id: str
    reply: asyncio.Future[str]


@attrs.define
class _Runtime:
    """What the service keeps in memory for a live call; all of it can be rebuilt on restart."""

    lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    ready: asyncio.Event = attrs.Factory(asyncio.Event)
    ended: asyncio.Event = attrs.Factory(asyncio.Event)
    turn: _Turn | None = None
    timers: dict[str, TimerHandle] = attrs.Factory(dict)
    ending_as: CallState | None = None
    stream_attempts: int = 0
    stream_connections: int = 0

    def cancel_timers(self) -> None:
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()


class CallService:
    """Use cases behind the CLI, the RPC methods, the agent tool and the webhooks.

    Args:
        provider: the telephony adapter chosen by the container.
        store: durable call state.
        clock: time and timers.
        responder: the agent that answers inbound callers.
        feed: the live event feed (persisted log + subscribers).
        settings: numbers and policies from the config.
        media: the media-stream service, when ``streaming.enabled``; calls then speak and
            listen over the carrier's stream instead of its native voice and recogniser.
    """

    def __init__(
        self,
        provider: TelephonyProvider,
        store: CallStore,
        clock: Clock,
        responder: Responder,
        feed: EventFeed,
        settings: CallSettings,
        media: MediaService | None = None,
        agent: CallAgent | None = None,
        address: PublicAddress | None = None,
        pairing: PairingService | None = None,
    ) -> None:
        self.agent = agent
        # Codes for unknown callers under inboundPolicy "pairing"; without it they are refused.
        self.pairing = pairing
        # Where the carrier reaches us (publicUrl or a tunnel's URL); gates outbound calls.
        self.address = address
        adopt = getattr(provider, "adopt_public_url", None)
        if address is not None and adopt is not None:
            address.subscribe(adopt)
        self.provider = provider
        self.media = media if settings.stream_url and isinstance(provider, MediaStreaming) else None
        self.store = store
        self.clock = clock
        self.responder = responder
        self.feed = feed
        self.settings = settings
        self._runtime: dict[str, _Runtime] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper: TimerHandle | None = None
        self._pruned_at: float | None = None
        self._ledger = DialLedger(
            settings.outbound.max_calls_per_hour, settings.outbound.max_calls_per_day
        )
        self._started = False
        self._create_lock = asyncio.Lock()
        # Every call that counts against maxConcurrentCalls: live in the store, or past the
        # capacity check and not yet committed. One set, so a call is never counted twice
        # (a store count plus a reservation counter double-counted calls in the window between
        # a group commit landing and the reservation being released).
        self._live: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store, restore live calls and reconcile each with the carrier.

        A call the carrier says has ended is closed; one whose status cannot be learned is
        kept; nothing is ever re-dialled.
        """
        await self.store.open()
        self.provider.bind(self.apply_events)
        if self.media is not None:
            self.media.bind(self.apply_events, self._is_live)
        self._started = True
        await self._restore_ledger()
        restored = await self.store.list_calls(live_only=True, limit=100_000)
        self._live = {call.call_id for call in restored}
        for call in restored:
            await self._reconcile(call, restoring=True)
        self._arm_reaper()
        await self._prune()

    async def stop(self) -> None:
        """Cancel timers and background work, then close the carrier and the store."""
        self._started = False
        if self._reaper is not None:
            self._reaper.cancel()
        for runtime in self._runtime.values():
            runtime.cancel_timers()
            if runtime.turn is not None:
                _fail(runtime.turn.reply, TransientError("the gateway is shutting down"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.agent is not None:
            await self.agent.aclose()
        if self.media is not None:
            await self.media.aclose()
        await self.provider.aclose()
        self.feed.close()
        await self.store.close()

    # ------------------------------------------------------------------ queries

    async def get(self, call_id: str) -> Call | None:
        return await self.store.get(call_id)

    async def list_calls(self, *, live_only: bool = False, limit: int = 100) -> list[Call]:
        return await self.store.list_calls(live_only=live_only, limit=limit)

    async def _require(self, call_id: str) -> Call:
        if not isinstance(call_id, str) or not call_id:
            raise CallNotFound(str(call_id))
        call = await self.store.get(call_id)
        if call is None:
            raise CallNotFound(call_id)
        return call

    # ------------------------------------------------------------------ outbound

    async def initiate(
        self,
        to: str | None,
        message: str | None,
        mode: str | None = None,
        *,
        agent_goal: str | None = None,
    ) -> Call:
        """Place an outbound call.

        With ``agent_goal`` the agent drives the call on its own towards the goal (a
        conversation call); ``message``, if any, is its first line, else the agent opens.

        Raises:
            CallerError: bad number or mode, no message, or ``maxConcurrentCalls`` reached.
            CarrierRejected / TransientError: the carrier refused; the call is recorded failed.
        """
        policy = self.settings.outbound
        if self.address is not None:
            self.address.check_outbound()
        number = policy.resolve_callee(to)
        try:
            policy.dial.check(number)
        except DestinationRefused as refused:
            await self._refuse(number, refused)
            raise
        if agent_goal is not None:
            agent_goal = _required_text(agent_goal)
            if self.agent is None:
                raise InvalidCallState("no agent is configured to drive the call")
            call_mode = CallMode.CONVERSATION
            message = normalise_speech(message) or None
        else:
            call_mode = policy.resolve_mode(mode)
            message = _required_text(message)
        # The capacity check reserves the slot in the same step (nothing awaited between the
        # count and the reservation), so two racing requests cannot both take the last slot;
        # the insert happens after, so concurrent calls share one group commit instead of
        # queueing behind each other's fsync.
        async with self._create_lock:
            policy.check_capacity(len(self._live))
            now = self.clock.now()
            try:
                self._ledger.check(now)
            except DestinationRefused as refused:
                await self._refuse(number, refused)
                raise
            call_id = str(uuid.uuid4())
            self._live.add(call_id)
            self._ledger.record(now)
        call = Call(
            call_id=call_id,
            provider=self.provider.name,
            direction=CallDirection.OUTBOUND,
            from_number=self.settings.from_number,
            to_number=number,
            mode=call_mode,
            started_at=now,
            message=message,
            last_activity_at=now,
            agent_goal=agent_goal,
        )
        runtime = self._runtime_for(call.call_id)
        try:
            await self._commit(call, "call.created", {"call": call_to_dict(call)})
        except BaseException:
            self._runtime.pop(call.call_id, None)
            self._live.discard(call.call_id)
            raise
        async with runtime.lock:
            try:
                result = await self.provider.dial(
                    DialRequest(
                        call_id=call.call_id,
                        to_number=number,
                        from_number=self.settings.from_number,
                        mode=call_mode,
                        message=call.message,
                        ring_timeout_s=self.settings.ring_timeout_s,
                    )
                )
            except VoiceCallError as err:
                await self._finish(call, runtime, CallState.FAILED, detail=err.detail)
                raise
            call.provider_call_id = result.provider_call_id
            await self._commit(call, "call.dialled", {"providerCallId": result.provider_call_id})
            self._arm_ring_timer(call, runtime, self.settings.ring_timeout_s)
        return call

    async def continue_call(self, call_id: str, message: str) -> str:
        """Queue ``message`` as a prompt, listen, and return the caller's reply to it.

        The reply is the caller's first final transcript that began after the prompt began
        playing (``answers_prompt``); an answer to an earlier line stays in the transcript but
        does not end this turn. Waits for the call to connect first (within the ring timeout)
        when it has not yet.
        """
        text = _required_text(message)
        call = await self._require(call_id)
        runtime = await self._await_ready(call)
        if runtime.turn is not None and not runtime.turn.reply.done():
            raise InvalidCallState("a turn is already in progress on this call")
        reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        async with runtime.lock:
            call = await self._require(call_id)
            if not call.is_live:
                raise InvalidCallState(f"the call has ended ({call.state.value})")
            turn = _Turn(prompt_id=_new_utterance_id(), reply=reply)
            runtime.turn = turn
            try:
                await self._enqueue(call, runtime, [text], AfterSpeech.LISTEN, ids=[turn.prompt_id])
            except BaseException:
                runtime.turn = None
                raise
        timeout_s = self.settings.transcript_timeout_s
        timer = self.clock.schedule(
            timeout_s,
            lambda: _fail(
                reply, InvalidCallState(f"no speech from the caller within {timeout_s:g} s")
            ),
        )
        try:
            return await reply
        finally:
            timer.cancel()
            if runtime.turn is turn:
                runtime.turn = None

    async def speak(self, call_id: str, message: str) -> None:
        """Queue ``message`` on a connected call without waiting for a reply.

        It plays after everything already queued; nothing queued or playing is cut.
        """
        text = _required_text(message)
        call = await self._require(call_id)
        runtime = await self._await_ready(call)
        async with runtime.lock:
            call = await self._require(call_id)
            if not call.is_live:
                raise InvalidCallState(f"the call has ended ({call.state.value})")
            await self._enqueue(call, runtime, [text], _after_for(call))

    async def end(self, call_id: str) -> Call:
        """Hang up. Ending a call that already ended is refused with its final state."""
        call = await self._require(call_id)
        if not call.is_live:
            raise InvalidCallState(f"the call has already ended ({call.state.value})")
        runtime = self._runtime_for(call_id)
        try:
            async with runtime.lock:
                call = await self._require(call_id)
                if call.is_live:
                    await self._hangup_locked(call, runtime, CallState.HANGUP_BOT)
        finally:
            self._release(call.call_id, runtime)
        return call

    # ------------------------------------------------------------------ the agent's hands

    async def agent_say(self, call_id: str, text: str) -> str | None:
        """Queue one of the agent's lines; its utterance id, or None once the call is over."""
        runtime = self._runtime.get(call_id)
        if runtime is None:
            return None
        async with runtime.lock:
            call = await self.store.get(call_id)
            if call is None or not call.is_live:
                return None
            try:
                added = await self._enqueue(call, runtime, [text], AfterSpeech.LISTEN)
            except VoiceCallError as err:
                await self._commit(call, "call.error", {"error": err.detail, "retryable": False})
                return None
        return added[0].utterance_id

    async def agent_note(self, call_id: str, text: str, data: dict[str, Any]) -> None:
        """A system line (a tool call and its result) in the transcript and on the feed."""
        runtime = self._runtime.get(call_id)
        if runtime is None:
            return
        async with runtime.lock:
            call = await self.store.get(call_id)
            if call is None or not call.is_live:
                return
            call.add_transcript(Speaker.SYSTEM, text, self.clock.now())
            kind = str(data.get("type", "agent.note"))
            await self._commit(call, kind, {k: v for k, v in data.items() if k != "type"})
            await self._commit(call, "call.transcript", {"speaker": "system", "text": text})

    async def agent_end(self, call_id: str, outcome: str) -> None:
        """The agent hangs up (after its goodbye played), recording its outcome."""
        runtime = self._runtime.get(call_id)
        if runtime is None:
            return
        async with runtime.lock:
            call = await self.store.get(call_id)
            if call is None or not call.is_live:
                return
            call.agent_outcome = outcome
            await self._hangup_locked(call, runtime, CallState.HANGUP_BOT)

    async def agent_transfer(self, call_id: str, to: str) -> None:
        """Hand the call to ``to``; our side ends ``completed``, ``endReason: transferred``."""
        runtime = self._runtime.get(call_id)
        if runtime is None:
            raise InvalidCallState("the call has ended")
        async with runtime.lock:
            call = await self._require(call_id)
            if not call.is_live:
                raise InvalidCallState(f"the call has ended ({call.state.value})")
            runtime.ending_as = CallState.COMPLETED
            try:
                await self.provider.transfer(call, to)
            except VoiceCallError:
                runtime.ending_as = None
                raise
            call.transferred_to = to
            await self._commit(call, "call.transferred", {"to": to})
            await self._finish(
                call,
                runtime,
                CallState.COMPLETED,
                detail=f"transferred to {to}",
                end_reason="transferred",
            )

    async def agent_send_digits(self, call_id: str, digits: str) -> None:
        call = await self._require(call_id)
        if not call.is_live:
            raise InvalidCallState(f"the call has ended ({call.state.value})")
        await self.provider.send_digits(call, digits)
        await self._commit(call, "call.digits", {"digits": digits})

    # ------------------------------------------------------------------ webhooks

    async def handle_webhook(self, request: WebhookRequest) -> WebhookResponse:
        """Apply a verified webhook and return the carrier's expected answer."""
        events = await self.provider.parse_webhook(request)
        calls = await self.apply_events(events, reply_to=request)
        return self.provider.webhook_response(request, calls)

    async def apply_events(
        self, events: Sequence[CallEvent], *, reply_to: WebhookRequest | None = None
    ) -> list[Call]:
        """Apply carrier events in order; repeats (by dedupe key) change nothing.

        Args:
            reply_to: the webhook these events came in, when the carrier is waiting for its
                answer; what the service asks the carrier to do while applying them goes to
                the adapter with it, so it can be part of that answer.
        """
        touched: list[Call] = []
        for event in events:
            call = await self._apply_event(event, reply_to)
            if call is not None and all(c.call_id != call.call_id for c in touched):
                touched.append(call)
        return touched

    async def _apply_event(self, event: CallEvent, reply_to: WebhookRequest | None) -> Call | None:
        if isinstance(event, CallInitiated) and event.direction is CallDirection.INBOUND:
            return await self._inbound(event, reply_to)
        call = await self._resolve(event)
        if call is None:
            log.info("ignoring %s for an unknown call (%s)", event.type, event.provider_call_id)
            return None
        runtime = self._runtime_of(call.call_id)
        try:
            async with runtime.lock:
                call = await self._require(call.call_id)
                if not await self.store.remember_event(event.key(), self.clock.now()):
                    log.debug("ignoring repeated event %s", event.key())
                    return call
                try:
                    await self._apply_to_call(call, runtime, event, reply_to)
                except TransientError:
                    # Not committed: the carrier's retry (it gets a 503) must apply it again.
                    await self.store.forget_event(event.key())
                    raise
        finally:
            self._release(call.call_id, runtime)
        return call

    async def _resolve(self, event: CallEvent) -> Call | None:
        if event.call_id:
            call = await self.store.get(event.call_id)
            if call is not None:
                return call
        if event.provider_call_id:
            return await self.store.find_by_provider_id(self.provider.name, event.provider_call_id)
        return None

    async def _apply_to_call(
        self, call: Call, runtime: _Runtime, event: CallEvent, reply_to: WebhookRequest | None
    ) -> None:
        now = self.clock.now()
        call.last_activity_at = now
        if event.provider_call_id and call.provider_call_id != event.provider_call_id:
            # Plivo and Twilio can hand out a request id first and the call's own id later.
            call.provider_call_id = event.provider_call_id
        if isinstance(event, CallInitiated):
            await self._commit(call, "call.carrier", {"event": event.type})
        elif isinstance(event, CallRinging):
            await self._move(call, CallState.RINGING)
        elif isinstance(event, CallAnswered | CallActive):
            target = CallState.ANSWERED if isinstance(event, CallAnswered) else CallState.ACTIVE
            first_connect = not call.state.is_connected
            if await self._move(call, target) and first_connect and call.is_live:
                runtime.timers.pop("ring", _NoTimer()).cancel()
                self._arm_max_duration(call, runtime, self.settings.max_duration_s)
                await self._on_connected(call, runtime, reply_to)
        elif isinstance(event, CallSpeaking):
            await self._move(call, CallState.SPEAKING)
        elif isinstance(event, SpeechStarted | SpeechPlayed):
            await self._on_playback(call, runtime, event)
        elif isinstance(event, SpeechCut):
            await self._on_cut(call, event)
        elif isinstance(event, StreamStopped):
            await self._on_stream_stopped(call, runtime, event, reply_to)
        elif isinstance(event, CallSpeech):
            await self._on_speech(call, runtime, event)
        elif isinstance(event, CallSilence):
            await self._commit(call, "call.silence", {"durationMs": event.duration_ms})
        elif isinstance(event, CallDtmf):
            await self._commit(call, "call.dtmf", {"digits": event.digits})
        elif isinstance(event, CallEnded):
            reason = runtime.ending_as or event.reason
            await self._finish(call, runtime, reason, detail=event.detail)
        elif isinstance(event, CallErrored):
            if event.retryable:
                await self._commit(call, "call.error", {"error": event.error, "retryable": True})
            else:
                await self._finish(call, runtime, CallState.ERROR, detail=event.error)

    async def _inbound(self, event: CallInitiated, reply_to: WebhookRequest | None) -> Call | None:
        async with self._create_lock:
            if event.provider_call_id:
                known = await self.store.find_by_provider_id(
                    self.provider.name, event.provider_call_id
                )
                if known is not None:
                    return known
            if not await self.store.remember_event(event.key(), self.clock.now()):
                return None
            now = self.clock.now()
            decision = self.settings.inbound.decide(event.from_number)
            live = len(self._live)
            accept = decision.accept or (decision.pair and self.pairing is not None)
            detail = decision.reason
            call_id = str(uuid.uuid4())
            pairing_message: str | None = None
            if accept and live >= self.settings.outbound.max_concurrent_calls:
                accept = False
                detail = "maxConcurrentCalls live calls already"
            elif decision.pair and self.pairing is not None and event.from_number:
                # An unknown caller: approved before, or it hears a code and the call ends.
                admission = await self.pairing.admit(event.from_number, call_id)
                accept, detail, pairing_message = (
                    admission.accept,
                    admission.reason,
                    admission.message,
                )
            call = Call(
                call_id=call_id,
                provider=self.provider.name,
                direction=CallDirection.INBOUND,
                from_number=event.from_number,
                to_number=event.to_number,
                mode=CallMode.NOTIFY if pairing_message else CallMode.CONVERSATION,
                started_at=now,
                provider_call_id=event.provider_call_id,
                last_activity_at=now,
                message=pairing_message,
            )
            runtime = self._runtime_for(call.call_id)
            data = call_to_dict(call) | {"accepted": accept, "policy": detail}
            self._live.add(call.call_id)
            try:
                await self._commit(call, "call.created", {"call": data})
            except TransientError:
                self._live.discard(call.call_id)
                await self.store.forget_event(event.key())
                raise
        async with runtime.lock:
            if accept:
                try:
                    await self.provider.answer(call, reply_to=reply_to)
                except VoiceCallError as err:
                    await self._finish(call, runtime, CallState.ERROR, detail=err.detail)
            else:
                log.info("rejecting inbound call from %s: %s", event.from_number, detail)
                try:
                    await self.provider.reject(call, reply_to=reply_to)
                except VoiceCallError as err:
                    log.warning("carrier refused to reject the call: %s", err.detail)
                await self._finish(
                    call, runtime, CallState.HANGUP_BOT, detail=f"rejected: {detail}"
                )
        return call

    # ------------------------------------------------------------------ reactions

    async def _on_connected(
        self, call: Call, runtime: _Runtime, reply_to: WebhookRequest | None
    ) -> None:
        try:
            await self._connect_stream(call, reply_to)
            if call.direction is CallDirection.INBOUND and not _is_notify(call):
                greeting = self.settings.inbound_greeting
                await self._enqueue(call, runtime, [greeting], AfterSpeech.LISTEN, reply_to)
            elif call.message:
                await self._enqueue(call, runtime, [call.message], _after_for(call), reply_to)
            elif call.agent_goal and self.agent is not None:
                self.agent.open(call.call_id)
        except VoiceCallError as err:
            log.warning("call %s: carrier refused an action: %s", call.call_id, err.detail)
            await self._commit(call, "call.error", {"error": err.detail, "retryable": False})
        runtime.ready.set()

    async def _connect_stream(self, call: Call, reply_to: WebhookRequest | None) -> None:
        """With streaming on, ask the carrier to open the call's media stream. A carrier that
        refuses leaves the call speaking natively, which it can always do."""
        url = self.address.stream_url if self.address is not None else self.settings.stream_url
        if self.media is None or url is None:
            return
        assert isinstance(self.provider, MediaStreaming)
        token = self.media.expect(call.call_id)
        try:
            await self.provider.connect_stream(call, StreamRequest(url, token), reply_to=reply_to)
        except VoiceCallError as err:
            await self.media.end_call(call.call_id)
            log.warning("call %s: no media stream (%s); speaking natively", call.call_id, err)
            await self._commit(call, "stream.failed", {"error": err.detail})
            return
        await self._commit(call, "stream.requested", {"url": url})

    async def _on_stream_stopped(
        self, call: Call, runtime: _Runtime, event: StreamStopped, reply_to: WebhookRequest | None
    ) -> None:
        """The stream closed but the call lives on: open a new one (a drop is not a hang-up).

        A call whose stream keeps failing is not left silent: after ``_MAX_STREAM_ATTEMPTS``
        it goes on with the carrier's native voice and recogniser, and what was still queued
        is spoken that way.
        """
        await self._commit(call, "stream.stopped", {"reason": event.reason})
        if self.media is None or not call.is_live or not self.media.handles(call.call_id):
            return
        connections = self.media.connections(call.call_id)
        if connections > runtime.stream_connections:
            # It had connected since the last failure: count the attempts afresh.
            runtime.stream_connections = connections
            runtime.stream_attempts = 0
        runtime.stream_attempts += 1
        if runtime.stream_attempts <= _MAX_STREAM_ATTEMPTS and not event.native:
            await self._connect_stream(call, reply_to)
            return
        await self.media.end_call(call.call_id)
        if event.native:
            # The stream's voice failed: what is still queued (that line included) is spoken
            # natively rather than left as silence.
            await self._commit(call, "stream.native", {"reason": event.reason})
        else:
            log.warning(
                "call %s: the media stream failed %d times; going on natively",
                call.call_id,
                runtime.stream_attempts,
            )
            await self._commit(call, "stream.native", {"attempts": runtime.stream_attempts})
        playback = self._pending_playback(call)
        if playback.lines:
            try:
                await self.provider.play(call, playback, reply_to=reply_to)
            except VoiceCallError as err:
                await self._commit(call, "call.error", {"error": err.detail, "retryable": False})

    async def _on_cut(self, call: Call, event: SpeechCut) -> None:
        """Playback stopped early: a barge-in (the rest is dropped) or a dropped stream."""
        now = self.clock.now()
        changed = call.speech.cut_at(event.utterance_id, now, rest=event.rest)
        if not changed:
            return
        said = [
            self._record_bot_line(call, utterance)
            for utterance in changed
            if utterance.state is UtteranceState.PLAYED or utterance.was_heard
        ]
        if call.speech.idle and _after_for(call) is AfterSpeech.LISTEN:
            call.transition(CallState.LISTENING, now)
        for utterance in changed:
            data = utterance_to_dict(utterance)
            if utterance.utterance_id == event.utterance_id and event.heard_ms is not None:
                data["heardMs"] = event.heard_ms
            kind = "speech.played" if utterance.state is UtteranceState.PLAYED else "speech.cut"
            await self._commit(call, kind, data)
        await self._publish_lines(call, said)

    async def _is_live(self, call_id: str) -> bool:
        call = await self.store.get(call_id)
        return call is not None and call.is_live

    async def _on_playback(
        self, call: Call, runtime: _Runtime, event: SpeechStarted | SpeechPlayed
    ) -> None:
        """The carrier says a line started or was heard whole; it settles earlier lines too."""
        now = self.clock.now()
        if isinstance(event, SpeechStarted):
            changed = call.speech.mark_started(event.utterance_id, now)
        else:
            changed = call.speech.mark_played(event.utterance_id, now)
        if not changed:
            return
        said = [
            self._record_bot_line(call, utterance)
            for utterance in changed
            if utterance.state is UtteranceState.PLAYED
        ]
        if call.speech.idle and _after_for(call) is AfterSpeech.LISTEN:
            call.transition(CallState.LISTENING, now)
        for utterance in changed:
            kind = (
                "speech.started" if utterance.state is UtteranceState.PLAYING else "speech.played"
            )
            await self._commit(call, kind, utterance_to_dict(utterance))
        await self._publish_lines(call, said)
        if call.speech.idle and _is_notify(call):
            # Notify: hang up notifyHangupDelaySec after the message was *played*, not queued.
            self._arm_notify_hangup(call, runtime, self.settings.outbound.notify_hangup_delay_sec)

    def _record_bot_line(self, call: Call, utterance: Utterance) -> dict[str, Any]:
        """A bot line joins the transcript when it was played (or cut while playing).

        Returns the ``call.transcript`` event to publish once the change is committed.
        """
        cut = utterance.state is UtteranceState.CUT
        call.add_transcript(
            Speaker.BOT,
            utterance.text,
            utterance.started_at if utterance.started_at is not None else self.clock.now(),
            cut=cut,
            utterance_id=utterance.utterance_id,
        )
        return {"speaker": "bot", "text": utterance.text, "utteranceId": utterance.utterance_id} | (
            {"cut": True} if cut else {}
        )

    async def _publish_lines(self, call: Call, lines: Sequence[dict[str, Any]]) -> None:
        for line in lines:
            await self._commit(call, "call.transcript", line)

    async def _on_speech(self, call: Call, runtime: _Runtime, event: CallSpeech) -> None:
        text = event.transcript.strip()
        if not event.is_final:
            await self._commit(call, "call.speech", {"transcript": text, "isFinal": False})
            return
        if not text:
            return
        call.add_transcript(Speaker.USER, text, self.clock.now())
        await self._commit(
            call,
            "call.transcript",
            {"speaker": "user", "text": text, "confidence": event.confidence},
        )
        turn = runtime.turn
        if turn is not None and not turn.reply.done():
            if answers_prompt(
                call.speech,
                turn.prompt_id,
                heard_after=event.heard_after,
                speech_started_at=event.started_at,
            ):
                turn.reply.set_result(text)
        elif (
            (call.direction is CallDirection.INBOUND or call.agent_goal)
            and call.is_live
            and not _is_notify(call)
        ):
            if self.agent is not None:
                self.agent.hear(call.call_id, text)
            else:
                self._spawn(self._auto_respond(call.call_id, text))

    async def _auto_respond(self, call_id: str, utterance: str) -> None:
        call = await self._require(call_id)
        reply = await self._with_deadline(
            self.responder.respond(call, utterance), self.settings.response_timeout_s
        )
        if reply is None:
            log.warning("call %s: the responder did not answer in time", call_id)
            reply = _APOLOGY
        # The call may have ended while the responder thought: no runtime is kept for it then.
        runtime = self._runtime_of(call_id)
        try:
            async with runtime.lock:
                call = await self._require(call_id)
                if not call.is_live:
                    return
                try:
                    await self._enqueue(call, runtime, [reply], AfterSpeech.LISTEN)
                except VoiceCallError as err:
                    detail = {"error": err.detail, "retryable": False}
                    await self._commit(call, "call.error", detail)
        finally:
            self._release(call_id, runtime)

    async def _with_deadline(self, work: Awaitable[T], timeout_s: float) -> T | None:
        """``work``'s result, or None if it takes longer than ``timeout_s`` by the clock."""
        task = asyncio.ensure_future(work)
        timer = self.clock.schedule(timeout_s, lambda: _cancel(task))
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled() and not _current_task_cancelling():
                return None
            raise
        except Exception:
            log.exception("the responder failed")
            return None
        finally:
            timer.cancel()

    # ------------------------------------------------------------------ actions (lock held)

    async def _enqueue(
        self,
        call: Call,
        runtime: _Runtime,
        texts: Sequence[str],
        then: AfterSpeech,
        reply_to: WebhookRequest | None = None,
        *,
        ids: Sequence[str] | None = None,
    ) -> list[Utterance]:
        """Queue lines behind everything already queued and hand them to the carrier.

        The lines are committed (``queued``) before the carrier is asked, so a crash never
        leaves the carrier playing something the store does not know of.
        """
        # Normalised and split before anything changes: text a carrier cannot carry is
        # refused here (EmptySpeech) rather than breaking the carrier's document later.
        pieces: list[tuple[str, str]] = []
        for index, text in enumerate(texts):
            for part, piece in enumerate(split_speech(text)):
                given = ids[index] if ids is not None and part == 0 else None
                pieces.append((given or _new_utterance_id(), piece))
        now = self.clock.now()
        added = [call.speech.enqueue(uid, text, now) for uid, text in pieces]
        call.transition(CallState.SPEAKING, now)
        for utterance in added:
            await self._commit(call, "speech.queued", utterance_to_dict(utterance))
        playback = Playback(
            lines=tuple(SpokenLine(u.utterance_id, u.text, self.settings.voice) for u in added),
            then=then,
            hangup_after_s=(
                self.settings.outbound.notify_hangup_delay_sec
                if then is AfterSpeech.HANGUP
                else 0.0
            ),
        )
        try:
            if self.media is not None and self.media.handles(call.call_id):
                await self.media.play(call.call_id, playback)
            else:
                await self.provider.play(call, playback, reply_to=reply_to)
        except VoiceCallError:
            for utterance in added:
                utterance.cut(self.clock.now())
            await self._commit(
                call, "speech.failed", {"utteranceIds": [u.utterance_id for u in added]}
            )
            raise
        return added

    async def _hangup_locked(self, call: Call, runtime: _Runtime, reason: CallState) -> None:
        runtime.ending_as = reason
        try:
            await self.provider.hangup(call)
        except VoiceCallError:
            runtime.ending_as = None
            raise
        await self._finish(call, runtime, reason)

    async def _finish(
        self,
        call: Call,
        runtime: _Runtime,
        reason: CallState,
        *,
        detail: str | None = None,
        end_reason: str | None = None,
    ) -> None:
        now = self.clock.now()
        if not call.transition(reason, now, detail=detail):
            return
        self._live.discard(call.call_id)
        if end_reason is not None:
            call.end_reason = end_reason  # a finer reason than the state (``transferred``)
        runtime.cancel_timers()
        if self.media is not None:
            await self.media.end_call(call.call_id)
        # What was playing is cut where the caller stopped hearing it; what never started
        # never reaches the transcript.
        cut = call.speech.cut_all(now)
        said = [self._record_bot_line(call, u) for u in cut if u.was_heard]
        await self._commit(
            call,
            "call.state",
            {"state": call.state.value, "endReason": call.end_reason}
            | ({"endDetail": detail} if detail else {}),
        )
        for utterance in cut:
            await self._commit(call, "speech.cut", utterance_to_dict(utterance))
        await self._publish_lines(call, said)
        runtime.ended.set()
        runtime.ready.set()
        self._maybe_prune()
        if runtime.turn is not None:
            _fail(runtime.turn.reply, InvalidCallState(f"the call ended ({reason.value})"))
        self._runtime.pop(call.call_id, None)

    async def _move(self, call: Call, target: CallState) -> bool:
        if not call.transition(target, self.clock.now()):
            return False
        await self._commit(call, "call.state", {"state": call.state.value})
        return True

    async def _commit(self, call: Call, log_type: str, data: dict[str, Any]) -> None:
        """Persist the call and log the change, both durable before anything goes on.

        The two writes are issued together so a group-committing store puts them in one
        transaction (one fsync).
        """
        await asyncio.gather(
            self.store.save(call),
            self.feed.publish(call.call_id, log_type, self.clock.now(), data),
        )

    async def _refuse(self, number: str, refused: DestinationRefused) -> None:
        """Every refused destination goes on the event feed, naming the rule."""
        log.warning("outbound call refused: %s", refused.detail)
        await self.feed.publish(
            "",
            "call.refused",
            self.clock.now(),
            {"to": number, "rule": refused.rule, "error": refused.detail},
        )

    async def _restore_ledger(self) -> None:
        """The hourly/daily caps count calls placed before a restart too."""
        caps = [c for c in (self._ledger.per_hour, self._ledger.per_day) if c is not None]
        if not caps:
            return
        since = self.clock.now() - DialLedger.DAY
        recent = await self.store.list_calls(limit=max(caps))
        for call in sorted(recent, key=lambda c: c.started_at):
            if call.direction is CallDirection.OUTBOUND and call.started_at > since:
                self._ledger.record(call.started_at)

    async def _prune(self) -> None:
        """Drop what is older than ``retentionDays`` (and log entries past the size cap).

        Run at start and then, at most hourly, when a call ends: no timer of its own, and a
        gateway with no calls has nothing new to prune.
        """
        now = self.clock.now()
        self._pruned_at = now
        try:
            removed = await self.store.prune(
                now - self.settings.retention_s, self.settings.max_log_events
            )
            if removed:
                log.info("pruned %d event-log entries", removed)
        except Exception:
            log.exception("pruning the event log failed")

    def _maybe_prune(self) -> None:
        if self._pruned_at is None or self.clock.now() - self._pruned_at >= 3600.0:
            self._pruned_at = self.clock.now()
            self._spawn(self._prune())

    # ------------------------------------------------------------------ timers

    def _arm_ring_timer(self, call: Call, runtime: _Runtime, delay_s: float) -> None:
        runtime.timers["ring"] = self.clock.schedule(
            max(delay_s, 0.0), lambda: self._timed_end(call.call_id, CallState.NO_ANSWER, "ring")
        )

    def _arm_max_duration(self, call: Call, runtime: _Runtime, delay_s: float) -> None:
        runtime.timers["max_duration"] = self.clock.schedule(
            max(delay_s, 0.0),
            lambda: self._timed_end(call.call_id, CallState.TIMEOUT, "max_duration"),
        )

    def _arm_notify_hangup(self, call: Call, runtime: _Runtime, delay_s: float) -> None:
        previous = runtime.timers.pop("notify", None)
        if previous is not None:
            previous.cancel()
        runtime.timers["notify"] = self.clock.schedule(
            max(delay_s, 0.0),
            lambda: self._timed_end(call.call_id, CallState.COMPLETED, "notify"),
        )

    async def _timed_end(self, call_id: str, reason: CallState, timer: str) -> None:
        runtime = self._runtime.get(call_id)
        if runtime is None:
            return
        async with runtime.lock:
            runtime.timers.pop(timer, None)
            call = await self.store.get(call_id)
            if call is None or not call.is_live:
                return
            if reason is CallState.NO_ANSWER and call.state.is_connected:
                return
            try:
                await self._hangup_locked(call, runtime, reason)
            except VoiceCallError as err:
                # The carrier could not be reached; try again shortly rather than pretend.
                log.warning("call %s: hang-up failed (%s); retrying in 5 s", call_id, err.detail)
                runtime.timers[timer] = self.clock.schedule(
                    5.0, lambda: self._timed_end(call_id, reason, timer)
                )

    def _arm_reaper(self) -> None:
        if self.settings.stale_call_reaper_s <= 0:
            # staleCallReaperSeconds: 0 is OpenClaw's default and means the reaper is off.
            return
        period = max(self.settings.stale_call_reaper_s / 2, 1.0)
        self._reaper = self.clock.schedule(period, self._reap)

    async def _reap(self) -> None:
        try:
            now = self.clock.now()
            for call in await self.store.list_calls(live_only=True, limit=10_000):
                last = call.last_activity_at or call.started_at
                if now - last >= self.settings.stale_call_reaper_s:
                    await self._reconcile(call, restoring=False)
        except Exception:
            log.exception("stale-call reaper failed")
        finally:
            if self._started:
                self._arm_reaper()

    async def _reconcile(self, call: Call, *, restoring: bool) -> None:
        """Check a call with the carrier; close it if the carrier says it is over."""
        runtime = self._runtime_of(call.call_id)
        status = await self.provider.status(call)
        try:
            async with runtime.lock:
                fresh = await self.store.get(call.call_id)
                if fresh is None or not fresh.is_live:
                    return
                call = fresh
                now = self.clock.now()
                if status.kind is CarrierStatusKind.ENDED:
                    detail = "the carrier reports the call ended" + (
                        " while the gateway was down" if restoring else ""
                    )
                    await self._finish(
                        call, runtime, status.end_state or CallState.COMPLETED, detail=detail
                    )
                    return
                if not restoring:
                    if status.kind is CarrierStatusKind.LIVE:
                        call.last_activity_at = now
                        await self.store.save(call)
                    else:
                        await self._finish(
                            call,
                            runtime,
                            CallState.ERROR,
                            detail="stale: no carrier activity and the carrier status is unknown",
                        )
                    return
                self.provider.restore(call, self._pending_playback(call))
                await self._commit(
                    call,
                    "call.restored",
                    {"carrierStatus": status.kind.value, "state": call.state.value},
                )
                self._rearm(call, runtime, now)
        finally:
            self._release(call.call_id, runtime)

    def _pending_playback(self, call: Call) -> Playback:
        """The call's lines not yet played whole or cut, in order, and what follows them."""
        return Playback(
            lines=tuple(
                SpokenLine(u.utterance_id, u.text, self.settings.voice) for u in call.speech.pending
            ),
            then=_after_for(call),
            hangup_after_s=self.settings.outbound.notify_hangup_delay_sec,
        )

    def _rearm(self, call: Call, runtime: _Runtime, now: float) -> None:
        if call.state.is_connected and call.answered_at is not None:
            remaining = call.answered_at + self.settings.max_duration_s - now
            self._arm_max_duration(call, runtime, remaining)
            played = call.speech.last_played
            if _is_notify(call) and call.speech.idle and played is not None:
                # The message was heard before the crash: the hold runs from that moment.
                last = played.ended_at or now
                delay = last + self.settings.outbound.notify_hangup_delay_sec - now
                self._arm_notify_hangup(call, runtime, delay)
            runtime.ready.set()
        elif call.direction is CallDirection.OUTBOUND:
            self._arm_ring_timer(
                call, runtime, call.started_at + self.settings.ring_timeout_s - now
            )

    # ------------------------------------------------------------------ helpers

    async def _await_ready(self, call: Call) -> _Runtime:
        if not call.is_live:
            raise InvalidCallState(f"the call has ended ({call.state.value})")
        runtime = self._runtime_for(call.call_id)
        if call.state.is_connected and call.state is not CallState.ANSWERED:
            runtime.ready.set()
        if not runtime.ready.is_set():
            waiter = asyncio.ensure_future(runtime.ready.wait())
            timer = self.clock.schedule(self.settings.ring_timeout_s, lambda: _cancel(waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                if _current_task_cancelling():
                    raise
                raise InvalidCallState("the call has not been answered yet") from None
            finally:
                timer.cancel()
        call = await self._require(call.call_id)
        if not call.is_live:
            self._release(call.call_id, runtime)
            raise InvalidCallState(f"the call has ended ({call.state.value})")
        return self._runtime_for(call.call_id)

    def _runtime_for(self, call_id: str) -> _Runtime:
        runtime = self._runtime.get(call_id)
        if runtime is None:
            runtime = self._runtime[call_id] = _Runtime()
        return runtime

    def _runtime_of(self, call_id: str) -> _Runtime:
        """A live call's runtime; for an ended one (a late webhook) a throwaway, so news
        about the many calls that ended never brings their entries back."""
        if call_id in self._live:
            return self._runtime_for(call_id)
        return self._runtime.get(call_id) or _Runtime()

    def _release(self, call_id: str, runtime: _Runtime) -> None:
        """Forget an ended call's runtime once its holder let go (call after the lock).

        ``_finish`` drops it when the call ends, but work that looked the call up just
        before (a webhook, an ``end``) may have made a new one in the meantime.
        """
        if (
            call_id not in self._live
            and self._runtime.get(call_id) is runtime
            and not runtime.lock.locked()
        ):
            del self._runtime[call_id]

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background call work failed", exc_info=task.exception())


def _required_text(message: object) -> str:
    if not isinstance(message, str) or not message.strip():
        raise InvalidCallState("a message to speak is required")
    split_speech(message)  # EmptySpeech (invalid_request) when only control characters
    return normalise_speech(message)


def _new_utterance_id() -> str:
    return "u" + uuid.uuid4().hex[:12]


def _is_notify(call: Call) -> bool:
    """A message, then hang up: an outbound notify call, or an unknown caller's pairing code."""
    return call.mode is CallMode.NOTIFY


def _after_for(call: Call) -> AfterSpeech:
    """What follows the bot's words on this call: notify hangs up, everything else listens."""
    return AfterSpeech.HANGUP if _is_notify(call) else AfterSpeech.LISTEN


class _NoTimer:
    def cancel(self) -> None:
        return None


def _cancel(future: asyncio.Future[Any]) -> None:
    future.cancel()


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
