"""Plivo-specific speech rules, through the simulated Plivo on the suite's simulated clock.

The shared contract covers what every carrier must do; these cover how Plivo's XML makes it
so: a silent ``<GetInput>`` falls through to the next element (we listen again there), a
transfer abandons the running document (so we only transfer when nothing plays), and a
voicemail machine never answers. Times are simulated seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicecall.domain.call import CallState, Speaker

from .conftest import CALLEE, Line, open_line
from .harness_plivo import Harness

OPENING = "Hello there."


@pytest.fixture
def plivo(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


@pytest.fixture
async def line(plivo: Harness, tmp_path: Path) -> AsyncIterator[Line]:
    opened = await open_line(plivo, tmp_path)
    yield opened
    await opened.service.stop()
    await opened.webhook.aclose()
    await plivo.aclose()


async def test_a_silent_caller_is_listened_to_again_and_the_reply_still_counts(
    plivo: Harness, line: Line
) -> None:
    assert plivo.sim is not None
    # The callee says nothing to the opening (GetInput times out and falls through to our
    # Redirect, which listens again), then answers.
    plivo.sim.replies = ("", "Sorry, yes.")
    call = await line.service.initiate(CALLEE, OPENING, "conversation")
    reply = await asyncio.wait_for(line.service.continue_call(call.call_id, "Can you hear me?"), 10)
    assert reply == "Sorry, yes."
    live = await line.service.get(call.call_id)
    assert live is not None
    assert plivo.heard(live) == [OPENING, "Can you hear me?"]
    # Listening again needed no transfer: the silence Redirect was the fetch.
    sim_call = plivo.sim.find(live.provider_call_id)
    assert sim_call is not None and sim_call.transfers == 0
    await line.service.end(call.call_id)


async def test_speech_while_parked_is_sent_with_one_transfer_and_heard_whole(
    plivo: Harness, line: Line
) -> None:
    assert plivo.sim is not None
    call = await line.service.initiate(CALLEE, OPENING, "conversation")
    await line.wait_state(call.call_id, CallState.LISTENING, within=10)

    async def answered() -> bool:
        live = await line.service.get(call.call_id)
        return live is not None and any(t.speaker is Speaker.USER for t in live.transcript)

    await line.wait_for(answered, within=10)  # parked in <Wait> now
    await line.service.speak(call.call_id, "First of two lines.")
    await line.service.speak(call.call_id, "Second of two lines.")
    live = await line.service.get(call.call_id)
    assert live is not None
    sim_call = plivo.sim.find(live.provider_call_id)
    assert sim_call is not None

    async def both_heard() -> bool:
        return "Second of two lines." in plivo.heard(live)

    await line.wait_for(both_heard, within=10)
    assert sim_call.transfers == 1  # the second line waited for Plivo's next fetch
    assert all(h.whole for h in plivo.played(live))
    heard = plivo.heard(live)
    assert heard.index("First of two lines.") < heard.index("Second of two lines.")
    await line.service.end(call.call_id)


async def test_a_transfer_cuts_a_speak_in_the_simulator(plivo: Harness, line: Line) -> None:
    # The carrier rule the adapter avoids: "fetch and execute XML from a different URL"
    # abandons what was running. Driven through the REST API directly.
    assert plivo.sim is not None and plivo.rest is not None
    long = "This sentence takes a few seconds to say in full, at fifteen characters a second."
    call = await line.service.initiate(CALLEE, long, "conversation")

    async def playing() -> bool:
        fresh = await line.service.get(call.call_id)
        return fresh is not None and bool(fresh.provider_call_id and plivo.played(fresh))

    await line.wait_for(playing, within=10)
    live = await line.service.get(call.call_id)
    assert live is not None
    await line.clock.sleep(1.0)
    response = await plivo.rest.post(
        f"http://plivo.sim/v1/Account/MAPLIVOCONTRACT00001/Call/{live.provider_call_id}/",
        json={"legs": "aleg", "aleg_url": "http://127.0.0.1:3334/voice/webhook?kind=xml"},
        auth=("MAPLIVOCONTRACT00001", "contract-plivo-token"),
    )
    assert response.status_code == 202
    first = plivo.played(live)[0]
    assert first.text == long and not first.whole
    assert first.ended_at is not None and first.ended_at - first.started_at < len(long) / 15
    assert plivo.heard(live)[0] == f"{long}—"
    await line.service.end(call.call_id)


async def test_voicemail_hears_the_notify_whole_and_is_hung_up(
    plivo: Harness, tmp_path: Path
) -> None:
    line = await open_line(plivo, tmp_path, "voicemail", notify_hangup_delay_s=1.0)
    try:
        call = await line.service.initiate(CALLEE, "Your parcel arrives tomorrow.", "notify")
        final = await line.wait_state(call.call_id, CallState.COMPLETED, within=10)
        [heard] = plivo.played(final)
        assert heard.whole and heard.text == "Your parcel arrives tomorrow."
    finally:
        await line.service.stop()
        await plivo.aclose()
