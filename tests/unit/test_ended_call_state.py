"""After many ended calls, the service and the mock carrier hold no per-call state for them
beyond what retention requires (issue 13: the soak's RSS grew with every call placed).

These count the entries of the structures that used to grow, not time or bytes.
"""

from __future__ import annotations

from pathlib import Path

from voicecall.adapters.telephony import mock as mock_module
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.domain.call import CallState
from voicecall.domain.events import CallDtmf, CallEnded, SpeechPlayed
from voicecall.domain.policy import OutboundPolicy
from voicecall.testing.clock import FakeClock

from .conftest import CALLEE, make_rig, make_settings

MANY = 30


def _many_calls() -> object:
    return make_settings(outbound=OutboundPolicy(max_concurrent_calls=MANY + 5))


async def test_ended_calls_leave_no_runtime_behind_even_when_news_arrives_late() -> None:
    rig = await make_rig(settings=_many_calls())  # type: ignore[arg-type]
    try:
        ended = []
        for n in range(MANY):
            call = await rig.service.initiate(CALLEE, "Hello there.", "conversation")
            await rig.clock.advance(0.3)
            if n % 2:
                await rig.service.end(call.call_id)  # the carrier reports it a tick later
            else:
                await rig.carrier.caller_hangs_up(call.provider_call_id or "")
            ended.append(call)
        await rig.clock.advance(1.0)
        # Late and repeated news about calls long over: it changes nothing and keeps nothing.
        for call in ended:
            pid = call.provider_call_id
            await rig.service.apply_events(
                [
                    CallDtmf(call_id=call.call_id, digits="5", dedupe_key=f"{pid}:late-dtmf"),
                    SpeechPlayed(call_id=call.call_id, provider_call_id=pid, utterance_id="u0"),
                    CallEnded(
                        call_id=call.call_id,
                        provider_call_id=pid,
                        reason=CallState.COMPLETED,
                        dedupe_key=f"{pid}:late-end",
                    ),
                ]
            )
        assert rig.service._runtime == {}
        assert rig.service._live == set()
        # And a call still live keeps its own.
        live = await rig.service.initiate(CALLEE, "Still here?", "conversation")
        await rig.clock.advance(0.3)
        assert set(rig.service._runtime) == {live.call_id}
    finally:
        await rig.service.stop()


async def test_the_mock_forgets_ended_calls_beyond_what_it_keeps(monkeypatch: object) -> None:
    monkeypatch.setattr(mock_module, "_KEEP_ENDED", 5)  # type: ignore[attr-defined]
    monkeypatch.setattr(mock_module, "_KEEP_DIALS", 4)  # type: ignore[attr-defined]
    clock = FakeClock()
    carrier = MockTelephony(MockSettings(answer_delay_ms=300), clock)
    rig = await make_rig(settings=_many_calls(), carrier=carrier, clock=clock)  # type: ignore[arg-type]
    try:
        calls = []
        for n in range(MANY):
            call = await rig.service.initiate(CALLEE, "Hello there.", "conversation")
            await clock.advance(0.3)
            if n % 2:
                await rig.service.end(call.call_id)
            else:
                await carrier.caller_hangs_up(call.provider_call_id or "")
            calls.append(call)
        await clock.advance(1.0)
        assert len(carrier._calls) == 5
        assert len(carrier._ended) == 5
        assert carrier._queues == {} and carrier._playing == {}
        assert carrier._awaiting_answer == {}
        assert len(carrier.dials) <= 2 * 4
        # The newest ended calls are still there to be asked about.
        newest = calls[-1].provider_call_id or ""
        assert carrier.heard(newest) == ["Hello there.—"]  # cut by the hang-up
        assert carrier.heard(calls[0].provider_call_id or "") == []
    finally:
        await rig.service.stop()


async def test_the_mock_state_file_holds_live_calls_and_the_kept_ended_ones(
    tmp_path: Path, monkeypatch: object
) -> None:
    monkeypatch.setattr(mock_module, "_KEEP_ENDED", 3)  # type: ignore[attr-defined]
    clock = FakeClock()
    state = tmp_path / "mock-carrier.json"
    carrier = MockTelephony(MockSettings(answer_delay_ms=300), clock, state)
    rig = await make_rig(settings=_many_calls(), carrier=carrier, clock=clock)  # type: ignore[arg-type]
    try:
        for _ in range(8):
            call = await rig.service.initiate(CALLEE, "Hello there.", "conversation")
            await clock.advance(0.3)
            await rig.service.end(call.call_id)
        live = await rig.service.initiate(CALLEE, "Still here?", "conversation")
        await clock.advance(0.3)
    finally:
        await rig.service.stop()
    reloaded = MockTelephony(MockSettings(), FakeClock(), state)
    assert len(reloaded._calls) == 4
    assert list(reloaded._ended) == list(carrier._ended)
    assert reloaded._calls[live.provider_call_id or ""].status == "live"
