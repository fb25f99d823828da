"""The call service end to end over fakes: the mock carrier, a fake clock, an in-memory store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.domain.call import Call, CallDirection, CallState
from voicecall.domain.errors import (
    CallerError,
    CallNotFound,
    CarrierRejected,
    ConcurrencyLimitReached,
    InvalidCallState,
    TransientError,
)
from voicecall.domain.events import CallAnswered, CallEnded, CallSpeech
from voicecall.domain.policy import OutboundPolicy
from voicecall.domain.speech import UtteranceState
from voicecall.testing.clock import FakeClock

from .conftest import ALLOWED, CALLEE, Rig, make_rig, make_settings


async def states(rig: Rig, call_id: str) -> list[str]:
    records = await rig.store.log_since(0)
    return [r.data["state"] for r in records if r.call_id == call_id and r.type == "call.state"]


async def test_notify_call_speaks_then_completes_after_the_delay(rig: Rig) -> None:
    message = "Your parcel arrives at noon."  # 28 characters: 1.87 s of speech at 15/s
    call = await rig.service.initiate(CALLEE, message, "notify")
    assert call.state is CallState.INITIATED
    await rig.clock.advance(0.3)
    live = await rig.service.get(call.call_id)
    assert live is not None and live.state is CallState.SPEAKING
    assert rig.carrier.heard(live.provider_call_id or "") == []  # still being said
    assert [u.state for u in live.speech] == [UtteranceState.PLAYING]
    await rig.clock.advance(1.9)  # played at +2.17: the 3 s hold starts now, not at +0.3
    played = await rig.service.get(call.call_id)
    assert played is not None and played.state is CallState.SPEAKING
    assert rig.carrier.heard(live.provider_call_id or "") == [message]
    [utterance] = list(played.speech)
    assert utterance.state is UtteranceState.PLAYED
    assert utterance.ended_at == pytest.approx(rig.clock.now() - 1.9 + 28 / 15, abs=0.01)
    await rig.clock.advance(2.9)
    assert (await rig.service.get(call.call_id)).state is CallState.SPEAKING  # type: ignore[union-attr]
    await rig.clock.advance(0.2)
    done = await rig.service.get(call.call_id)
    assert done is not None and done.state is CallState.COMPLETED
    assert done.end_reason == "completed"
    assert [(t.speaker.value, t.text, t.cut) for t in done.transcript] == [("bot", message, False)]
    assert rig.carrier.counters(done.provider_call_id or "")["hangups"] == 1
    assert await states(rig, call.call_id) == ["ringing", "answered", "completed"]


async def test_conversation_continue_returns_the_answer_to_its_own_prompt(rig: Rig) -> None:
    call = await rig.service.initiate(CALLEE, "Hi, do you have a minute?", "conversation")
    # Asked before the call connects: the prompt queues behind the opening line.
    turn = asyncio.ensure_future(rig.service.continue_call(call.call_id, "What time suits you?"))
    await rig.clock.advance(0.3)  # answered: the opening plays until +1.97
    await rig.clock.advance(2.0)  # the callee answers the opening at +2.27, mid-prompt
    assert not turn.done()  # that answer was to the opening, not to this prompt
    await rig.clock.advance(1.5)  # prompt played at +3.3; the callee answers it at +3.6
    assert await asyncio.wait_for(turn, 1) == "Sounds good to me."
    turn2 = asyncio.ensure_future(rig.service.continue_call(call.call_id, "Great, noon then?"))
    await rig.clock.advance(2.0)
    assert await asyncio.wait_for(turn2, 1) == "Thanks, goodbye!"
    final = await rig.service.get(call.call_id)
    assert final is not None and final.state is CallState.LISTENING
    assert [(t.speaker.value, t.text) for t in final.transcript] == [
        ("bot", "Hi, do you have a minute?"),
        ("user", "Hi, this is the simulated callee."),
        ("bot", "What time suits you?"),
        ("user", "Sounds good to me."),
        ("bot", "Great, noon then?"),
        ("user", "Thanks, goodbye!"),
    ]


async def test_end_hangs_up_as_bot_and_twice_is_refused(rig: Rig) -> None:
    call = await rig.service.initiate(CALLEE, "Hello", "conversation")
    await rig.clock.advance(0.3)
    ended = await rig.service.end(call.call_id)
    assert ended.state is CallState.HANGUP_BOT
    await rig.clock.advance(1)
    assert (await rig.service.get(call.call_id)).state is CallState.HANGUP_BOT  # type: ignore[union-attr]
    with pytest.raises(InvalidCallState, match="already ended"):
        await rig.service.end(call.call_id)


async def test_unknown_call_id(rig: Rig) -> None:
    assert await rig.service.get("nope") is None
    for action in (
        rig.service.end("nope"),
        rig.service.speak("nope", "hi"),
        rig.service.continue_call("nope", "hi"),
    ):
        with pytest.raises(CallNotFound):
            await action


async def test_second_live_call_is_refused(rig: Rig) -> None:
    await rig.service.initiate(CALLEE, "one", "conversation")
    with pytest.raises(ConcurrencyLimitReached):
        await rig.service.initiate(CALLEE, "two", "conversation")
    assert len(await rig.service.list_calls()) == 1
    assert len(rig.carrier.dials) == 1


async def test_bad_input_changes_nothing(rig: Rig) -> None:
    for to, message, mode in (("555", "hi", None), (CALLEE, "  ", None), (CALLEE, "hi", "yell")):
        # The caller must fix these: exactly CallerError, not a carrier or transient error.
        with pytest.raises(CallerError) as caught:
            await rig.service.initiate(to, message, mode)
        assert caught.type in {CallerError, InvalidCallState}
    assert await rig.service.list_calls() == []
    assert rig.carrier.dials == []


@pytest.mark.parametrize(
    ("outcome", "state"),
    [("busy", "busy"), ("no-answer", "no-answer"), ("voicemail", "voicemail"), ("fail", "failed")],
)
async def test_carrier_outcomes(outcome: str, state: str) -> None:
    rig = await make_rig(mock=MockSettings(answer_delay_ms=300, outcome=outcome))
    call = await rig.service.initiate(CALLEE, "hi", "notify")
    await rig.clock.advance(0.3)
    final = await rig.service.get(call.call_id)
    assert final is not None and final.state.value == state
    assert rig.carrier.heard(final.provider_call_id or "") == []
    await rig.service.stop()


async def test_ring_timeout_ends_no_answer() -> None:
    rig = await make_rig(
        settings=make_settings(ring_timeout_s=5.0), mock=MockSettings(answer_delay_ms=60_000)
    )
    call = await rig.service.initiate(CALLEE, "hi", "notify")
    await rig.clock.advance(4.9)
    assert (await rig.service.get(call.call_id)).state is CallState.RINGING  # type: ignore[union-attr]
    await rig.clock.advance(0.2)
    final = await rig.service.get(call.call_id)
    assert final is not None and final.state is CallState.NO_ANSWER
    await rig.clock.advance(120)  # the late answer changes nothing
    assert (await rig.service.get(call.call_id)).state is CallState.NO_ANSWER  # type: ignore[union-attr]
    await rig.service.stop()


async def test_max_duration_ends_timeout_counted_from_answer() -> None:
    rig = await make_rig(settings=make_settings(max_duration_s=60.0))
    call = await rig.service.initiate(CALLEE, "hi", "conversation")
    await rig.clock.advance(0.3)  # answered at +0.3, so the limit falls at +60.3
    await rig.clock.advance(59.9)
    assert (await rig.service.get(call.call_id)).is_live  # type: ignore[union-attr]
    await rig.clock.advance(0.2)
    final = await rig.service.get(call.call_id)
    assert final is not None and final.state is CallState.TIMEOUT
    await rig.service.stop()


async def test_repeated_event_changes_nothing(rig: Rig) -> None:
    call = await rig.service.initiate(CALLEE, "hi", "conversation")
    await rig.clock.advance(0.3)
    live = await rig.service.get(call.call_id)
    assert live is not None
    speech = CallSpeech(provider_call_id=live.provider_call_id, transcript="once", dedupe_key="k1")
    await rig.service.apply_events([speech])
    await rig.service.apply_events([speech, speech])
    after = await rig.service.get(call.call_id)
    assert after is not None
    assert [t.text for t in after.transcript].count("once") == 1
    # Without a carrier key, identical content is the same event too.
    same = CallSpeech(provider_call_id=live.provider_call_id, transcript="twice")
    await rig.service.apply_events([same])
    await rig.service.apply_events([same])
    assert [t.text for t in (await rig.service.get(call.call_id)).transcript].count("twice") == 1  # type: ignore[union-attr]


async def test_late_and_out_of_order_events_are_ignored(rig: Rig) -> None:
    call = await rig.service.initiate(CALLEE, "hi", "conversation")
    await rig.clock.advance(0.3)
    live = await rig.service.get(call.call_id)
    assert live is not None
    await rig.service.end(call.call_id)
    await rig.service.apply_events(
        [
            CallAnswered(provider_call_id=live.provider_call_id, dedupe_key="late-answer"),
            CallEnded(
                provider_call_id=live.provider_call_id, reason=CallState.BUSY, dedupe_key="x"
            ),
        ]
    )
    final = await rig.service.get(call.call_id)
    assert final is not None and final.state is CallState.HANGUP_BOT


async def test_inbound_allowlisted_hears_greeting_and_gets_answers(rig: Rig) -> None:
    event = rig.carrier.simulate_inbound(ALLOWED, "+15550100000")
    [call] = await rig.service.apply_events([event])
    assert call.direction is CallDirection.INBOUND
    await rig.clock.advance(0)  # the carrier confirms the answer
    await rig.clock.advance(2.2)  # the greeting is said (2.13 s)
    await rig.clock.advance(0.3)  # the caller speaks
    await rig.clock.advance(2.0)  # the answer is said
    live = await rig.service.get(call.call_id)
    assert live is not None and live.is_live
    heard = rig.carrier.heard(live.provider_call_id or "")
    assert heard[0] == "Hello! How can I help you today?"
    assert heard[1] == "Hello! What can I do for you?"  # the rule responder's answer to "Hi, ..."
    await rig.clock.advance(20)  # caller runs out of lines and hangs up
    final = await rig.service.get(call.call_id)
    assert final is not None and final.state is CallState.HANGUP_USER


async def test_inbound_not_on_allowlist_is_rejected_once(rig: Rig) -> None:
    event = rig.carrier.simulate_inbound("+15559999999", None)
    [call] = await rig.service.apply_events([event])
    assert call.state is CallState.HANGUP_BOT
    assert call.end_detail == "rejected: caller is not in allowFrom"
    await rig.service.apply_events([event])  # the carrier retries the webhook
    assert rig.carrier.counters(call.provider_call_id or "")["rejected"] == 1
    assert rig.carrier.heard(call.provider_call_id or "") == []
    assert len(await rig.service.list_calls()) == 1


async def test_withheld_caller_is_rejected(rig: Rig) -> None:
    [call] = await rig.service.apply_events([rig.carrier.simulate_inbound(None, None)])
    assert call.state is CallState.HANGUP_BOT
    assert "withheld" in (call.end_detail or "")


async def test_responder_timeout_apologises_and_keeps_the_call() -> None:
    class Slow:
        async def respond(self, call: Call, utterance: str) -> str:
            await asyncio.sleep(3600)
            return "never"

    rig = await make_rig(settings=make_settings(response_timeout_s=2.0), responder=Slow())
    [call] = await rig.service.apply_events([rig.carrier.simulate_inbound(ALLOWED, None)])
    await rig.clock.advance(0)
    await rig.clock.advance(2.2)  # the greeting is said
    await rig.clock.advance(0.3)  # caller speaks; the responder hangs
    await rig.clock.advance(2.1)  # the responder's deadline: the apology is queued
    await rig.clock.advance(6.0)  # and said
    live = await rig.service.get(call.call_id)
    assert live is not None and live.is_live
    assert "Sorry" in rig.carrier.heard(live.provider_call_id or "")[-1]
    await rig.service.stop()


async def test_carrier_refusal_records_a_failed_call() -> None:
    rig = await make_rig()
    rig.carrier.unavailable = True
    # An outage is transient (retry), never CarrierRejected (do not retry).
    with pytest.raises(TransientError, match="unavailable"):
        await rig.service.initiate(CALLEE, "hi", "notify")
    [call] = await rig.service.list_calls()
    assert call.state is CallState.FAILED
    assert await rig.service.list_calls(live_only=True) == []
    await rig.service.stop()


async def test_restart_reconciles_and_never_redials() -> None:
    clock = FakeClock()
    store = MemoryCallStore()
    carrier = MockTelephony(MockSettings(answer_delay_ms=300), clock)
    rig = await make_rig(
        clock=clock,
        store=store,
        carrier=carrier,
        settings=make_settings(outbound=OutboundPolicy(max_concurrent_calls=3)),
    )
    kept = await rig.service.initiate(CALLEE, "one", "conversation")
    gone = await rig.service.initiate(CALLEE, "two", "conversation")
    lost = await rig.service.initiate(CALLEE, "three", "conversation")
    await clock.advance(0.3)
    await clock.advance(0.5)  # the opening lines are said; each call listens
    # Simulate a crash: drop the service without stopping it; the carrier lives on.
    gone_pid = (await store.get(gone.call_id)).provider_call_id  # type: ignore[union-attr]
    carrier._calls[gone_pid].status = "ended"  # the callee hung up while we were down
    carrier._calls[gone_pid].end_state = "hangup-user"
    lost_call = await store.get(lost.call_id)
    assert lost_call is not None
    lost_call.provider_call_id = "unknown-to-carrier"
    await store.save(lost_call)
    dials_before = len(carrier.dials)

    restarted = await make_rig(
        clock=clock,
        store=store,
        carrier=carrier,
        settings=make_settings(outbound=OutboundPolicy(max_concurrent_calls=3)),
    )
    assert (await store.get(kept.call_id)).state is CallState.LISTENING  # type: ignore[union-attr]
    assert (await store.get(gone.call_id)).state is CallState.HANGUP_USER  # type: ignore[union-attr]
    assert (await store.get(lost.call_id)).is_live  # type: ignore[union-attr]  # unknown: kept
    assert len(carrier.dials) == dials_before
    turn = asyncio.ensure_future(restarted.service.continue_call(kept.call_id, "still there?"))
    await clock.advance(2.0)
    assert await asyncio.wait_for(turn, 1)
    await restarted.service.stop()


async def test_timers_are_rearmed_after_restart() -> None:
    clock = FakeClock()
    store = MemoryCallStore()
    carrier = MockTelephony(MockSettings(answer_delay_ms=300), clock)
    settings = make_settings(max_duration_s=100.0)
    first = await make_rig(clock=clock, store=store, carrier=carrier, settings=settings)
    call = await first.service.initiate(CALLEE, "x", "conversation")
    await clock.advance(0.3)  # answered at +0.3: the limit falls at +100.3
    # A crash: the first service's timers die with it.
    for runtime in first.service._runtime.values():
        runtime.cancel_timers()
    restarted = await make_rig(clock=clock, store=store, carrier=carrier, settings=settings)
    await clock.advance(99.0)
    assert (await store.get(call.call_id)).is_live  # type: ignore[union-attr]
    await clock.advance(1.5)
    assert (await store.get(call.call_id)).state is CallState.TIMEOUT  # type: ignore[union-attr]
    await restarted.service.stop()


async def test_stale_calls_are_reaped() -> None:
    rig = await make_rig(settings=make_settings(stale_call_reaper_s=120.0))
    call = await rig.service.initiate(CALLEE, "x", "conversation")
    await rig.clock.advance(0.3)
    rig.carrier.unavailable = True
    await rig.clock.advance(200)
    final = await rig.service.get(call.call_id)
    assert final is not None and final.state is CallState.ERROR
    assert "stale" in (final.end_detail or "")
    await rig.service.stop()


async def test_reaper_off_at_zero_keeps_a_silent_call() -> None:
    """staleCallReaperSeconds: 0 (OpenClaw's default) is off, not "reap at once"."""
    rig = await make_rig(settings=make_settings(stale_call_reaper_s=0.0, max_duration_s=1e6))
    call = await rig.service.initiate(CALLEE, "x", "conversation")
    await rig.clock.advance(0.3)
    rig.carrier.unavailable = True
    await rig.clock.advance(10_000)
    final = await rig.service.get(call.call_id)
    assert final is not None and final.is_live
    await rig.service.stop()


async def test_dial_refusal_is_carrier_rejected() -> None:
    class Refusing(MockTelephony):
        async def dial(self, request):  # type: ignore[no-untyped-def]
            raise CarrierRejected("number blocked")

    clock = FakeClock()
    rig = await make_rig(clock=clock, carrier=Refusing(MockSettings(), clock))
    with pytest.raises(CarrierRejected):
        await rig.service.initiate(CALLEE, "hi", "notify")
    [call] = await rig.service.list_calls()
    assert (call.state, call.end_detail) == (CallState.FAILED, "number blocked")
    await rig.service.stop()


async def test_a_call_is_never_counted_twice_while_its_commit_lands() -> None:
    # The call row is saved but the event-log write of the same commit has not returned yet
    # (a group commit landing): the call is then both in the store and "being created". It must
    # still count once against maxConcurrentCalls.
    class SlowLog(MemoryCallStore):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()
            self.hold = True

        async def append_log(self, call_id: str, type: str, at: float, data: Any) -> int:
            if self.hold and type == "call.created":
                await self.release.wait()
            return await super().append_log(call_id, type, at, data)

    store = SlowLog()
    rig = await make_rig(
        store=store,
        settings=make_settings(outbound=OutboundPolicy(max_concurrent_calls=4)),
    )
    try:
        first = [
            asyncio.ensure_future(rig.service.initiate(CALLEE, "hi", "notify")) for _ in range(2)
        ]
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(await store.list_calls(live_only=True)) == 2  # saved, log write pending
        second = [
            asyncio.ensure_future(rig.service.initiate(CALLEE, "hi", "notify")) for _ in range(2)
        ]
        for _ in range(20):
            await asyncio.sleep(0)
        store.hold = False
        store.release.set()
        results = await asyncio.gather(*first, *second, return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["Call"] * 4
        with pytest.raises(CallerError, match="maxConcurrentCalls is 4"):
            await rig.service.initiate(CALLEE, "hi", "notify")
    finally:
        await rig.service.stop()
