"""The call service's speech: queue, playback reports, cuts and the notify hold, on a fake clock.

The mock carrier says 15 characters a second, so every time below can be worked out by hand.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.domain.call import Call, CallState, Speaker
from voicecall.domain.errors import TransientError
from voicecall.domain.policy import OutboundPolicy
from voicecall.domain.speech import UtteranceState
from voicecall.testing.clock import FakeClock

from .conftest import CALLEE, Rig, make_rig, make_settings

LONG = "This sentence is exactly sixty characters long, give or take"  # 61 chars: 4.07 s


async def connected(rig: Rig, message: str, mode: str = "conversation") -> Call:
    call = await rig.service.initiate(CALLEE, message, mode)
    await rig.clock.advance(0.3)  # answered; the message starts playing
    live = await rig.service.get(call.call_id)
    assert live is not None and live.state is CallState.SPEAKING
    return live


async def test_a_hangup_mid_utterance_cuts_the_line_and_drops_the_rest(rig: Rig) -> None:
    call = await connected(rig, LONG)
    await rig.service.speak(call.call_id, "Never said.")
    await rig.clock.advance(1.0)
    await rig.service.end(call.call_id)
    final = await rig.service.get(call.call_id)
    assert final is not None and final.state is CallState.HANGUP_BOT
    assert [(t.text, t.cut) for t in final.transcript] == [(LONG, True)]
    assert [(u.text, u.state, u.was_heard) for u in final.speech] == [
        (LONG, UtteranceState.CUT, True),
        ("Never said.", UtteranceState.CUT, False),
    ]
    assert rig.carrier.heard(final.provider_call_id or "") == [f"{LONG}—"]


async def test_the_caller_hanging_up_mid_utterance_is_hangup_user_and_cut(rig: Rig) -> None:
    call = await connected(rig, LONG)
    await rig.clock.advance(1.0)
    await rig.carrier.caller_hangs_up(call.provider_call_id or "")
    await rig.clock.advance(0)
    final = await rig.service.get(call.call_id)
    assert final is not None and final.state is CallState.HANGUP_USER
    assert [(t.text, t.cut) for t in final.transcript] == [(LONG, True)]


async def test_speak_while_playing_queues_behind_and_cuts_nothing(rig: Rig) -> None:
    call = await connected(rig, "Opening line.")  # 13 chars: played at +1.17
    await rig.service.speak(call.call_id, "First of two.")
    await rig.clock.advance(0.05)
    await rig.service.speak(call.call_id, "Second of two.")
    await rig.clock.advance(3.0)
    live = await rig.service.get(call.call_id)
    assert live is not None
    heard = rig.carrier.heard(live.provider_call_id or "")
    assert heard == ["Opening line.", "First of two.", "Second of two."]
    bot = [(t.text, t.cut) for t in live.transcript if t.speaker is Speaker.BOT]
    assert bot == [("Opening line.", False), ("First of two.", False), ("Second of two.", False)]
    spans = [(u.started_at, u.ended_at) for u in live.speech]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start is not None and end is not None and start >= end


async def test_playback_moments_go_on_the_feed_in_order(rig: Rig) -> None:
    call = await connected(rig, "Opening line.")
    await rig.clock.advance(2.0)
    records = [r for r in await rig.store.log_since(0) if r.type.startswith("speech.")]
    assert [r.type for r in records] == ["speech.queued", "speech.started", "speech.played"]
    queued, started, played = records
    assert (
        queued.data["utteranceId"]
        == started.data["utteranceId"]
        == call.speech.utterances[0].utterance_id
    )
    assert played.data["state"] == "played"
    assert played.data["endedAt"] - played.data["startedAt"] == pytest.approx(13 / 15, abs=0.01)


async def test_speech_on_a_notify_call_moves_the_hold_to_after_the_last_line(rig: Rig) -> None:
    call = await connected(rig, "Short note.", "notify")  # 11 chars: played at +1.03
    await rig.clock.advance(1.0)  # +1.3
    await rig.service.speak(call.call_id, "One more thing to add.")  # played +1.3 .. +2.77
    await rig.clock.advance(4.3)  # +5.6: the first line's hold ended at +4.03
    live = await rig.service.get(call.call_id)
    assert live is not None and live.is_live
    await rig.clock.advance(0.3)  # +5.9: past +2.77 + 3
    done = await rig.service.get(call.call_id)
    assert done is not None and done.state is CallState.COMPLETED
    assert [t.text for t in done.transcript] == ["Short note.", "One more thing to add."]


async def test_the_notify_hold_is_rearmed_after_a_restart_with_the_time_left() -> None:
    clock = FakeClock()
    store = MemoryCallStore()
    carrier = MockTelephony(MockSettings(answer_delay_ms=300), clock)
    first = await make_rig(clock=clock, store=store, carrier=carrier)
    call = await first.service.initiate(CALLEE, "Short note.", "notify")
    await clock.advance(0.3 + 11 / 15 + 1.0)  # played at +1.03; one second of the hold gone
    for runtime in first.service._runtime.values():
        runtime.cancel_timers()  # a crash: the timers die with the process
    restarted = await make_rig(clock=clock, store=store, carrier=carrier)
    await clock.advance(1.9)
    assert (await store.get(call.call_id)).is_live  # type: ignore[union-attr]
    await clock.advance(0.2)
    assert (await store.get(call.call_id)).state is CallState.COMPLETED  # type: ignore[union-attr]
    await restarted.service.stop()


async def test_a_carrier_that_refuses_to_play_leaves_nothing_claimed_as_said() -> None:
    rig = await make_rig(settings=make_settings(outbound=OutboundPolicy(max_concurrent_calls=2)))
    call = await connected(rig, "Opening line.")
    await rig.clock.advance(2.0)
    rig.carrier.unavailable = True
    with pytest.raises(TransientError):
        await rig.service.speak(call.call_id, "Lost in the outage.")
    live = await rig.service.get(call.call_id)
    assert live is not None
    assert [t.text for t in live.transcript if t.speaker is Speaker.BOT] == ["Opening line."]
    assert live.speech.utterances[-1].state is UtteranceState.CUT
    records = [r.type for r in await rig.store.log_since(0)]
    assert "speech.failed" in records
    await rig.service.stop()


async def test_a_stream_that_never_opens_falls_back_to_the_native_voice() -> None:
    from voicecall.adapters.speech.offline import ToneSynthesizer, ToneTranscriber
    from voicecall.services.media import MediaService

    clock = FakeClock()
    attempts: list[str] = []

    async def unreachable(url: str) -> Any:
        attempts.append(url)
        raise ConnectionError("refused")

    carrier = MockTelephony(MockSettings(answer_delay_ms=300), clock, connect_ws=unreachable)
    media = MediaService(clock, ToneSynthesizer(), ToneTranscriber(), b"k" * 32)
    rig = await make_rig(
        clock=clock,
        carrier=carrier,
        settings=make_settings(stream_url="ws://127.0.0.1:3334/voice/stream"),
        media=media,
    )
    call = await rig.service.initiate(CALLEE, "Opening line.", "conversation")
    await clock.advance(0.3)
    for _ in range(10):
        await clock.advance(0.1)
    assert len(attempts) == 4  # the first try and three reconnects
    await clock.advance(2.0)
    live = await rig.service.get(call.call_id)
    assert live is not None and live.is_live
    # Nothing was lost to the failing stream: the opening line was spoken natively, whole.
    assert rig.carrier.heard(live.provider_call_id or "") == ["Opening line."]
    assert [t.text for t in live.transcript if t.speaker is Speaker.BOT] == ["Opening line."]
    types = [r.type for r in await rig.store.log_since(0)]
    assert types.count("stream.stopped") == 4 and "stream.native" in types
    await rig.service.stop()


async def test_continue_right_after_initiate_gets_the_answer_to_its_own_prompt(rig: Rig) -> None:
    # The prompt ("Hm?", 0.2 s) is shorter than the callee's pause before answering (0.3 s):
    # the callee's answer to the opening comes after the prompt, and is not its reply; the
    # callee then answers the prompt too.
    call = await rig.service.initiate(CALLEE, "Opening line.", "conversation")
    turn = asyncio.ensure_future(rig.service.continue_call(call.call_id, "Hm?"))
    for _ in range(40):
        await rig.clock.advance(0.1)
    assert await asyncio.wait_for(turn, 1) == "Sounds good to me."
    live = await rig.service.get(call.call_id)
    assert live is not None
    assert [(t.speaker.value, t.text) for t in live.transcript][:4] == [
        ("bot", "Opening line."),
        ("bot", "Hm?"),  # over before the callee's answer to the opening comes
        ("user", "Hi, this is the simulated callee."),
        ("user", "Sounds good to me."),
    ]
