"""One contract for every telephony adapter: the same test functions run against each.

The guard test keeps the fixture's adapter list equal to the container's, so a new adapter
cannot skip the suite.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from voicecall.container import telephony_names
from voicecall.domain.call import CallState
from voicecall.domain.ports import CarrierStatusKind, TelephonyProvider

from .conftest import ALLOWED, CALLEE, REPLIES, TELEPHONY_ADAPTERS, CarrierHarness, Line, open_line


def test_guard_every_container_adapter_is_under_contract() -> None:
    assert set(TELEPHONY_ADAPTERS) == set(telephony_names())


async def test_adapter_satisfies_the_port(line: Line) -> None:
    provider = line.service.provider
    assert isinstance(provider, TelephonyProvider)
    assert provider.name == line.harness.name


async def test_notify_lifecycle_reaches_completed_with_the_message_heard(line: Line) -> None:
    call = await line.service.initiate(CALLEE, "The build is green.", "notify")
    final = await line.wait_state(call.call_id, CallState.COMPLETED)
    assert line.harness.heard(final) == ["The build is green."]
    assert final.answered_at is not None and final.ended_at is not None
    assert [t.text for t in final.transcript] == ["The build is green."]


async def test_conversation_turn_returns_the_callers_speech(line: Line) -> None:
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")
    reply = await asyncio.wait_for(line.service.continue_call(call.call_id, "Can you talk?"), 5)
    reply2 = await asyncio.wait_for(line.service.continue_call(call.call_id, "Lunch at noon?"), 5)
    live = await line.service.get(call.call_id)
    assert live is not None
    assert line.harness.heard(live) == ["Hello there.", "Can you talk?", "Lunch at noon?"]
    # Each turn returns the caller's first final line after its prompt. (Whether the callee's
    # answer to the opening lands before or after the first prompt depends on timing.)
    lines = [(t.speaker.value, t.text) for t in live.transcript]
    for prompt, returned in (("Can you talk?", reply), ("Lunch at noon?", reply2)):
        after = lines[lines.index(("bot", prompt)) + 1 :]
        assert returned == next(text for who, text in after if who == "user")
    said = [text for who, text in lines if who == "user"]
    assert said == list(REPLIES[: len(said)])  # in the callee's order, none lost or repeated
    assert reply != reply2
    await line.service.end(call.call_id)


async def test_inbound_accepted_hears_the_greeting(line: Line) -> None:
    await line.harness.ring_inbound(ALLOWED)
    call = await line.only_call()
    assert call.direction.value == "inbound" and call.from_number == ALLOWED
    await line.wait_state(call.call_id, CallState.LISTENING)
    await line.wait_for(lambda: line.harness.heard(call))
    assert line.harness.heard(call)[0] == "Hello! How can I help you today?"


async def test_inbound_rejected_is_hung_up_once(line: Line) -> None:
    await line.harness.ring_inbound("+15559990000")
    call = await line.only_call()
    final = await line.wait_state(call.call_id, CallState.HANGUP_BOT)
    assert (final.end_detail or "").startswith("rejected")
    retry = await line.harness.redeliver_last_webhook()
    assert retry.status_code < 500
    await asyncio.sleep(0.1)
    assert line.harness.rejections(call) == 1
    assert line.harness.heard(call) == []
    assert len(await line.service.list_calls()) == 1


async def test_withheld_caller_is_rejected(line: Line) -> None:
    await line.harness.ring_inbound(None)
    call = await line.only_call()
    await line.wait_state(call.call_id, CallState.HANGUP_BOT)


@pytest.mark.parametrize(
    ("outcome", "state"),
    [("busy", CallState.BUSY), ("no-answer", CallState.NO_ANSWER), ("fail", CallState.FAILED)],
)
async def test_unanswered_outcomes(
    harness: CarrierHarness, tmp_path: Path, outcome: str, state: CallState
) -> None:
    line = await open_line(harness, tmp_path, outcome)
    try:
        call = await line.service.initiate(CALLEE, "hi", "notify")
        final = await line.wait_state(call.call_id, state)
        assert line.harness.heard(final) == []
    finally:
        await line.service.stop()


async def test_hangup_twice_is_fine(line: Line) -> None:
    call = await line.service.initiate(CALLEE, "hi", "conversation")
    live = await line.wait_state(call.call_id, CallState.LISTENING)
    await line.service.provider.hangup(live)
    await line.service.provider.hangup(live)  # already ended: success, no error


async def test_status_is_unknown_when_the_carrier_is_down(line: Line) -> None:
    call = await line.service.initiate(CALLEE, "hi", "conversation")
    live = await line.wait_state(call.call_id, CallState.LISTENING)
    assert (await line.service.provider.status(live)).kind is CarrierStatusKind.LIVE
    line.harness.break_carrier()
    status = await line.service.provider.status(live)
    assert status.kind is CarrierStatusKind.UNKNOWN


async def test_status_after_the_end(line: Line) -> None:
    call = await line.service.initiate(CALLEE, "hi", "conversation")
    await line.wait_state(call.call_id, CallState.LISTENING)
    ended = await line.service.end(call.call_id)
    status = await line.service.provider.status(ended)
    assert status.kind is CarrierStatusKind.ENDED


async def test_a_duplicated_webhook_changes_nothing(line: Line) -> None:
    await line.harness.ring_inbound(ALLOWED)
    call = await line.only_call()
    await line.wait_state(call.call_id, CallState.LISTENING)
    before = await line.service.get(call.call_id)
    again = await line.harness.redeliver_last_webhook()
    assert again.status_code == 200
    await asyncio.sleep(0.1)
    assert len(await line.service.list_calls()) == 1
    after = await line.service.get(call.call_id)
    assert after is not None and before is not None
    assert after.transcript[: len(before.transcript)] == before.transcript
    assert [t.text for t in after.transcript].count("Hello! How can I help you today?") == 1


async def test_a_forged_webhook_is_refused_and_changes_nothing(line: Line) -> None:
    if not line.service.provider.signs_webhooks:
        pytest.skip("the offline mock carrier signs nothing by design (SPEC §4)")
    await line.harness.ring_inbound(ALLOWED)
    call = await line.only_call()
    await line.wait_state(call.call_id, CallState.LISTENING)
    forged = await line.harness.forge_webhook(call)
    assert forged.status_code == 401
    await asyncio.sleep(0.1)
    after = await line.service.get(call.call_id)
    assert after is not None
    assert all("FORGED" not in t.text for t in after.transcript)
    assert len(await line.service.list_calls()) == 1
