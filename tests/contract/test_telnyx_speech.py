"""Telnyx-only contract checks: speak webhooks that arrive late and swapped still settle the
right utterances, and every webhook of a call still names our call id in client_state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicecall.adapters.telephony.telnyx import decode_client_state
from voicecall.domain.call import CallState, Speaker
from voicecall.domain.speech import UtteranceState

from .conftest import CALLEE, Line, open_line
from .harness_telnyx import Harness


@pytest.fixture
async def telnyx_line(tmp_path: Path) -> AsyncIterator[tuple[Line, Harness]]:
    harness = Harness(tmp_path)
    line = await open_line(harness, tmp_path)
    # Each webhook travels up to a simulated second: a line's call.speak.ended and the next
    # line's call.speak.started (emitted together) arrive in either order.
    assert harness.sim is not None
    harness.sim.delivery_jitter_s = 1.0
    yield line, harness
    await line.service.stop()
    await line.webhook.aclose()
    await harness.aclose()


async def test_swapped_speak_webhooks_settle_each_line_in_order(
    telnyx_line: tuple[Line, Harness],
) -> None:
    line, harness = telnyx_line
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")
    await line.wait_state(call.call_id, CallState.LISTENING, within=10)
    await line.service.speak(call.call_id, "First of three.")
    await line.service.speak(call.call_id, "Second of three.")
    await line.service.speak(call.call_id, "Third of three.")

    async def all_played() -> bool:
        live = await line.service.get(call.call_id)
        assert live is not None
        return all(u.state is UtteranceState.PLAYED for u in live.speech)

    await line.wait_for(all_played, within=10)
    live = await line.service.get(call.call_id)
    assert live is not None
    bot = [t.text for t in live.transcript if t.speaker is Speaker.BOT]
    expected = ["Hello there.", "First of three.", "Second of three.", "Third of three."]
    assert bot == expected and not any(t.cut for t in live.transcript)
    heard = [h for h in harness.played(live) if h.whole]
    assert [h.text for h in heard] == expected
    # Each utterance was reported played no earlier than the callee finished hearing it.
    for utterance, played in zip(live.speech, heard, strict=True):
        assert utterance.ended_at is not None and played.ended_at is not None
        assert utterance.ended_at >= played.ended_at - 0.05
    await line.service.end(call.call_id)


async def test_every_webhook_of_a_call_carries_our_call_id(
    telnyx_line: tuple[Line, Harness],
) -> None:
    line, harness = telnyx_line
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")
    await line.wait_state(call.call_id, CallState.LISTENING, within=10)
    await line.service.speak(call.call_id, "One more thing.")
    await line.service.end(call.call_id)
    assert harness.sim is not None
    await harness.sim.idle(timeout_s=10)
    payloads = [json.loads(d.body)["data"]["payload"] for d in harness.sim.deliveries]
    assert payloads
    assert {decode_client_state(p.get("client_state")) for p in payloads} == {call.call_id}
