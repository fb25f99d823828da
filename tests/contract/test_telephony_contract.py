"""One contract for every telephony adapter: the same test functions run against each.

The guard test keeps the fixture's adapter list equal to the container's, so a new adapter
cannot skip the suite.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from voicecall.container import telephony_names
from voicecall.domain.call import Call, CallState, Speaker
from voicecall.domain.ports import CarrierStatusKind, TelephonyProvider
from voicecall.domain.speech import UtteranceState

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
    await _greeted(line, call.call_id)
    await line.wait_for(lambda: line.harness.heard(call))
    assert line.harness.heard(call)[0] == GREETING


async def test_inbound_rejected_is_hung_up_once(line: Line) -> None:
    await line.harness.ring_inbound("+15559990000")
    call = await line.only_call()
    final = await line.wait_state(call.call_id, CallState.HANGUP_BOT)
    assert (final.end_detail or "").startswith("rejected")
    retry = await line.harness.redeliver_last_webhook()
    assert retry.status_code < 500
    # The door answers a retry only after it was handled (here: answered from the replay
    # cache with nothing applied), so the checks below need no wait.
    assert line.harness.rejections(call) == 1
    assert line.harness.heard(call) == []
    assert len(await line.service.list_calls()) == 1


async def test_withheld_caller_is_rejected(line: Line) -> None:
    await line.harness.ring_inbound(None)
    call = await line.only_call()
    final = await line.wait_state(call.call_id, CallState.HANGUP_BOT)
    assert (final.end_detail or "").startswith("rejected")
    assert "withheld" in (final.end_detail or "")
    assert final.from_number is None or not final.from_number.startswith("+")
    assert line.harness.rejections(final) == 1
    assert line.harness.heard(final) == []
    assert final.transcript == []


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
    assert (await line.service.provider.status(live)).kind is CarrierStatusKind.ENDED
    await line.service.provider.hangup(live)  # already ended: success, no error
    assert (await line.service.provider.status(live)).kind is CarrierStatusKind.ENDED
    final = await line.wait_state(
        call.call_id, CallState.HANGUP_BOT, CallState.COMPLETED, CallState.HANGUP_USER
    )
    assert not final.is_live


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
    await _greeted(line, call.call_id)
    before = await line.service.get(call.call_id)
    again = await line.harness.redeliver_last_webhook()
    assert again.status_code == 200
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
    await _greeted(line, call.call_id)
    forged = await line.harness.forge_webhook(call)
    assert forged.status_code == 401
    # A 401 is decided before anything is parsed or applied: nothing to wait for.
    after = await line.service.get(call.call_id)
    assert after is not None
    assert all("FORGED" not in t.text for t in after.transcript)
    assert len(await line.service.list_calls()) == 1


# ---------------------------------------------------------------------------------------------
# Speech that is heard (SPEC §3): every utterance plays whole, in order, and the service knows
# when it was heard. The simulators play speech in simulated time (15 characters a second) and
# abandon documents where the real carriers do; times below are simulated seconds.
# ---------------------------------------------------------------------------------------------

# 80 characters: about five seconds of speech.
LONG = "Your table for four is ready. Please come to the front desk in the next ten min."
OPENING = "Hello there."


async def _greeted(line: Line, call_id: str) -> None:
    """Wait until the inbound greeting has been played (a state would be passed by, as the
    caller answers and the call moves on)."""

    async def played() -> bool:
        call = await line.service.get(call_id)
        return call is not None and any(t.text == GREETING for t in call.transcript)

    await line.wait_for(played, within=10)


GREETING = "Hello! How can I help you today?"


async def _call(line: Line, call_id: str) -> Call:
    call = await line.service.get(call_id)
    assert call is not None
    return call


async def _started_playing(line: Line, call_id: str) -> bool:
    call = await _call(line, call_id)
    return bool(call.provider_call_id and line.harness.played(call))


async def test_notify_is_heard_whole_then_hung_up_after_the_hold(
    harness: CarrierHarness, tmp_path: Path
) -> None:
    line = await open_line(harness, tmp_path, notify_hangup_delay_s=1.0)
    try:
        call = await line.service.initiate(CALLEE, LONG, "notify")
        final = await line.wait_state(call.call_id, CallState.COMPLETED, within=10)
        await line.wait_for(lambda: line.harness.line_dead_at(final) is not None)
        [heard] = line.harness.played(final)
        assert heard.text == LONG and heard.whole
        assert heard.ended_at is not None
        assert heard.ended_at - heard.started_at >= len(LONG) / 15 - 0.2
        dead_at = line.harness.line_dead_at(final)
        assert dead_at is not None
        assert 0.5 <= dead_at - heard.ended_at <= 1.5, dead_at - heard.ended_at
        [said] = final.transcript
        assert said.text == LONG and not said.cut
        [utterance] = list(final.speech)
        assert utterance.state is UtteranceState.PLAYED
    finally:
        await line.service.stop()


async def test_continue_while_the_opening_plays_leaves_it_whole(line: Line) -> None:
    call = await line.service.initiate(CALLEE, LONG, "conversation")
    await line.wait_for(lambda: _started_playing(line, call.call_id))
    reply = await asyncio.wait_for(line.service.continue_call(call.call_id, "Can you talk?"), 10)
    live = await _call(line, call.call_id)
    opening, prompt = line.harness.played(live)[:2]
    assert (opening.text, opening.whole) == (LONG, True)
    assert (prompt.text, prompt.whole) == ("Can you talk?", True)
    assert opening.ended_at is not None and prompt.started_at >= opening.ended_at
    lines = [(t.speaker.value, t.text) for t in live.transcript]
    after_prompt = lines[lines.index(("bot", "Can you talk?")) + 1 :]
    assert reply == next(text for who, text in after_prompt if who == "user")
    await line.service.end(call.call_id)


async def test_two_speaks_close_together_are_both_heard_whole_in_order(line: Line) -> None:
    call = await line.service.initiate(CALLEE, OPENING, "conversation")
    await line.wait_state(call.call_id, CallState.LISTENING, within=10)
    await line.service.speak(call.call_id, "First of two lines.")
    await line.clock.sleep(0.05)
    await line.service.speak(call.call_id, "Second of two lines.")

    async def both_played() -> bool:
        texts = [h.text for h in line.harness.played(await _call(line, call.call_id)) if h.whole]
        return "Second of two lines." in texts

    await line.wait_for(both_played, within=10)
    heard = [h for h in line.harness.played(await _call(line, call.call_id)) if h.whole]
    texts = [h.text for h in heard]
    first, second = texts.index("First of two lines."), texts.index("Second of two lines.")
    assert first < second
    assert heard[second].started_at >= (heard[first].ended_at or 0)
    assert not any(h.endswith("—") for h in line.harness.heard(await _call(line, call.call_id)))


async def test_continue_returns_the_answer_to_its_own_prompt(line: Line) -> None:
    call = await line.service.initiate(CALLEE, OPENING, "conversation")

    async def opening_answered() -> bool:
        said = [t.text for t in (await _call(line, call.call_id)).transcript]
        return REPLIES[0] in said

    await line.wait_for(opening_answered, within=10)
    reply = await asyncio.wait_for(line.service.continue_call(call.call_id, "Lunch at noon?"), 10)
    assert reply == REPLIES[1]
    live = await _call(line, call.call_id)
    lines = [(t.speaker.value, t.text) for t in live.transcript]
    assert lines.index(("user", REPLIES[0])) < lines.index(("bot", "Lunch at noon?"))
    assert lines.index(("bot", "Lunch at noon?")) < lines.index(("user", REPLIES[1]))
    await line.service.end(call.call_id)


async def test_a_hangup_mid_utterance_records_the_line_as_cut(line: Line) -> None:
    call = await line.service.initiate(CALLEE, LONG, "conversation")
    await line.wait_for(lambda: _started_playing(line, call.call_id))
    await line.clock.sleep(1.0)
    await line.service.end(call.call_id)
    final = await line.wait_state(call.call_id, CallState.HANGUP_BOT)
    [bot] = [t for t in final.transcript if t.speaker is Speaker.BOT]
    assert bot.text == LONG and bot.cut
    assert [u.state for u in final.speech] == [UtteranceState.CUT]
    await line.wait_for(lambda: line.harness.heard(final) == [f"{LONG}—"])


async def test_the_caller_hanging_up_ends_the_call_as_hangup_user(line: Line) -> None:
    call = await line.service.initiate(CALLEE, OPENING, "conversation")
    live = await line.wait_state(call.call_id, CallState.LISTENING, within=10)
    await line.harness.caller_hangs_up(live)
    final = await line.wait_state(
        call.call_id, CallState.HANGUP_USER, CallState.COMPLETED, CallState.HANGUP_BOT
    )
    assert final.state is CallState.HANGUP_USER


async def test_a_restart_mid_speech_leaves_every_line_heard_once_in_order(line: Line) -> None:
    """The gateway restarts while the first of three lines plays: the carrier goes on, and
    the restarted gateway knows which line each report is about and plays the rest."""
    call = await line.service.initiate(CALLEE, OPENING, "conversation")
    await line.wait_state(call.call_id, CallState.LISTENING, within=10)
    lines = [LONG, "The second line.", "The third line."]
    for text in lines:
        await line.service.speak(call.call_id, text)
    await line.wait_for(lambda: _is_playing(line, call.call_id, LONG), within=10)
    await line.restart()

    async def all_played() -> bool:
        live = await _call(line, call.call_id)
        return all(u.state is UtteranceState.PLAYED for u in live.speech)

    await line.wait_for(all_played, within=20)
    live = await _call(line, call.call_id)
    assert line.harness.heard(live) == [OPENING, *lines]
    assert [u.text for u in live.speech] == [OPENING, *lines]
    bot = [t.text for t in live.transcript if t.speaker is Speaker.BOT]
    assert bot == [OPENING, *lines]
    played = [h for h in line.harness.played(live) if h.whole]
    for earlier, later in itertools.pairwise(played):
        assert later.started_at >= (earlier.ended_at or 0)  # never two at once
    await line.service.end(call.call_id)


async def _is_playing(line: Line, call_id: str, text: str) -> bool:
    live = await _call(line, call_id)
    return any(u.text == text and u.state is UtteranceState.PLAYING for u in live.speech)
