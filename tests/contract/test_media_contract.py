"""Media streams (SPEC §5) through the real webhook listener, in simulated time.

The carrier opens a WebSocket to our listener (in-process ASGI), says ``start`` with the
stream token, and puts a simulated handset on its end: it plays what we send at 8 kHz,
echoes marks only when the audio before them was played, honours ``clear``, and talks back
in the offline tone "voice". Times are simulated seconds on the shared ``ScaledClock``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from voicecall.adapters.agent.rules import RuleBasedResponder
from voicecall.adapters.speech.offline import ToneSynthesizer, ToneTranscriber
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.adapters.telephony.handset import SimulatedHandset
from voicecall.config import parse_config
from voicecall.container import call_settings
from voicecall.domain.call import Call, CallState, Speaker
from voicecall.domain.ports import SpeechSynthesizer, Transcriber
from voicecall.domain.speech import UtteranceState
from voicecall.entrypoints.webhook_app import create_webhook_app
from voicecall.services.calls import CallService
from voicecall.services.events import EventFeed
from voicecall.services.media import MediaService
from voicecall.testing.asgi import asgi_websocket_connector
from voicecall.testing.simtime import ScaledClock

from .conftest import (
    CALLEE,
    HARNESSES,
    REPLIES,
    STREAM_ADAPTERS,
    TELEPHONY_ADAPTERS,
    MockHarness,
    StreamHarness,
    _LateApp,
)

SPEED = 4.0
LONG = "Your table for four is ready. Please come to the front desk in the next ten min."


@attrs.define
class StreamLine:
    harness: StreamHarness
    clock: ScaledClock
    service: CallService
    media: MediaService
    app: _LateApp
    webhook: httpx.AsyncClient

    async def wait(self, predicate: Any, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.005)

    async def call(self, call_id: str) -> Call:
        call = await self.service.get(call_id)
        assert call is not None
        return call

    async def wait_state(self, call_id: str, *states: CallState) -> Call:
        async def reached() -> bool:
            return (await self.call(call_id)).state in states

        await self.wait(reached)
        return await self.call(call_id)

    async def handset(self, call_id: str) -> SimulatedHandset:
        async def opened() -> bool:
            return self.harness.handset(await self.call(call_id)) is not None

        await self.wait(opened)
        handset = self.harness.handset(await self.call(call_id))
        assert handset is not None
        return handset

    async def close(self) -> None:
        await self.service.stop()
        await self.webhook.aclose()
        await self.harness.aclose()


async def open_stream_line(
    harness: StreamHarness,
    tmp: Path,
    *,
    barge_in_after_s: float | None = None,
    notify_hold_s: float = 1.0,
    synthesizer: SpeechSynthesizer | None = None,
    transcriber: Transcriber | None = None,
    extra_config: dict[str, Any] | None = None,
) -> StreamLine:
    plugin: dict[str, Any] = {
        "enabled": True,
        "fromNumber": "+15550100000",
        "inboundPolicy": "allowlist",
        "allowFrom": ["+15551230001"],
        "maxConcurrentCalls": 2,
        "outbound": {"notifyHangupDelaySec": notify_hold_s},
        "ringTimeoutMs": 30000,
        "transcriptTimeoutMs": 60000,
        "store": str(tmp / "store"),
        "serve": {"bind": "127.0.0.1", "port": 3334, "path": "/voice/webhook"},
        "streaming": {"enabled": True},
    }
    plugin.update(harness.plugin_config())
    plugin.update(extra_config or {})
    config = parse_config({"plugins": {"entries": {"voice-call": {"config": plugin}}}}, env={})
    clock = ScaledClock(SPEED)
    app = _LateApp()
    webhook = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40123)),
        base_url="http://127.0.0.1:3334",
    )
    harness.enable_streams(asgi_websocket_connector(app), barge_in_after_s)
    provider = harness.build(config, clock, "answer", webhook)
    store = SqliteCallStore(tmp / "store")
    media = MediaService(
        clock,
        synthesizer or ToneSynthesizer(15.0),
        transcriber or ToneTranscriber(silence_ms=300),
        b"k" * 32,
        lead_ms=200,
    )
    service = CallService(
        provider=provider,
        store=store,
        clock=clock,
        responder=RuleBasedResponder(),
        feed=EventFeed(store),
        settings=call_settings(config),
        media=media,
    )
    assert service.media is media, f"{harness.name} does not implement MediaStreaming"
    app.app = create_webhook_app(service, config)
    await service.start()
    return StreamLine(harness, clock, service, media, app, webhook)


@pytest.fixture(params=STREAM_ADAPTERS)
def stream_harness(request: pytest.FixtureRequest, tmp_path: Path) -> StreamHarness:
    harness: StreamHarness = HARNESSES[request.param](tmp_path)
    return harness


@pytest.fixture
async def stream_line(stream_harness: StreamHarness, tmp_path: Path) -> AsyncIterator[StreamLine]:
    line = await open_stream_line(stream_harness, tmp_path)
    yield line
    await line.close()


def test_guard_every_adapter_streams() -> None:
    assert STREAM_ADAPTERS == TELEPHONY_ADAPTERS


async def test_a_notify_over_a_stream_is_heard_whole_then_hung_up(
    stream_harness: StreamHarness, tmp_path: Path
) -> None:
    line = await open_stream_line(stream_harness, tmp_path, notify_hold_s=1.0)
    try:
        call = await line.service.initiate(CALLEE, "Your parcel is at the door.", "notify")
        final = await line.wait_state(call.call_id, CallState.COMPLETED, CallState.HANGUP_USER)
        assert final.state is CallState.COMPLETED
        handset = line.harness.handset(final)
        assert handset is not None
        [heard] = handset.heard
        assert (heard.text, heard.whole) == ("Your parcel is at the door.", True)
        assert heard.ended_at is not None
        assert heard.ended_at - heard.started_at >= 27 / 15 - 0.1  # it took the time to say
        await line.wait(lambda: line.harness.line_dead_at(final) is not None)
        ended_at = line.harness.line_dead_at(final)
        assert ended_at is not None and 0.5 <= ended_at - heard.ended_at <= 1.5
        [utterance] = list(final.speech)
        assert utterance.state is UtteranceState.PLAYED
        # "played" came from the carrier's mark, which came after the audio was played.
        [(mark, marked_at)] = handset.marks_echoed
        assert mark == utterance.utterance_id and marked_at >= heard.ended_at - 0.05
        assert handset.underruns == 0
    finally:
        await line.close()


async def test_marks_come_back_in_order_and_every_line_is_whole(stream_line: StreamLine) -> None:
    line = stream_line
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")
    handset = await line.handset(call.call_id)
    await line.service.speak(call.call_id, "First of two lines.")
    await line.clock.sleep(0.05)
    await line.service.speak(call.call_id, "Second of two lines.")

    async def all_played() -> bool:
        speech = list((await line.call(call.call_id)).speech)
        return len(speech) >= 3 and all(u.state is UtteranceState.PLAYED for u in speech[:3])

    await line.wait(all_played)
    ids = [u.utterance_id for u in (await line.call(call.call_id)).speech][:3]
    assert [name for name, _ in handset.marks_echoed][:3] == ids
    whole = [h.text for h in handset.heard if h.whole][:3]
    assert whole == ["Hello there.", "First of two lines.", "Second of two lines."]
    assert handset.underruns == 0
    await line.service.end(call.call_id)


async def test_barge_in_clears_playback_and_cuts_the_line(
    stream_harness: StreamHarness, tmp_path: Path
) -> None:
    line = await open_stream_line(stream_harness, tmp_path, barge_in_after_s=1.5)
    try:
        call = await line.service.initiate(CALLEE, LONG, "conversation")
        handset = await line.handset(call.call_id)
        await line.wait(lambda: handset.clears)
        (said, said_at) = handset.said[0]
        assert said == REPLIES[0]
        # The caller's first tone starts one 20 ms frame after it begins to talk.
        assert handset.clears[0] - (said_at + 0.02) <= 0.1, handset.clears[0] - said_at

        async def cut_recorded() -> bool:
            return any(t.cut for t in (await line.call(call.call_id)).transcript)

        await line.wait(cut_recorded)
        after = await line.call(call.call_id)
        [bot] = [t for t in after.transcript if t.speaker is Speaker.BOT][:1]
        assert bot.text == LONG and bot.cut
        assert after.speech.utterances[0].state is UtteranceState.CUT
        cut_line = handset.heard[0]
        assert not cut_line.whole and LONG.startswith(cut_line.text[:10])
        assert len(cut_line.text) < len(LONG)

        async def reply_heard() -> bool:
            lines = (await line.call(call.call_id)).transcript
            return any(t.speaker is Speaker.USER and t.text == REPLIES[0] for t in lines)

        await line.wait(reply_heard)
    finally:
        await line.close()


async def test_continue_over_a_stream_returns_the_callers_reply(stream_line: StreamLine) -> None:
    line = stream_line
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")

    async def opening_answered() -> bool:
        said = [t.text for t in (await line.call(call.call_id)).transcript]
        return REPLIES[0] in said

    await line.wait(opening_answered)
    reply = await asyncio.wait_for(line.service.continue_call(call.call_id, "Lunch at noon?"), 20)
    assert reply == REPLIES[1]
    await line.service.end(call.call_id)


async def test_the_stream_closes_when_the_call_ends(stream_line: StreamLine) -> None:
    line = stream_line
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")
    await line.wait(lambda: line.media.connected(call.call_id))
    handset = await line.handset(call.call_id)
    await line.service.end(call.call_id)
    assert not line.media.connected(call.call_id)
    assert not line.media.handles(call.call_id)
    frames = handset.frames_played
    await line.clock.sleep(1.0)
    assert handset.frames_played == frames  # nothing more reaches the caller


async def test_a_dropped_stream_is_recovered_and_the_call_lives_on(
    stream_line: StreamLine,
) -> None:
    line = stream_line
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")
    await line.wait(lambda: line.media.connected(call.call_id))
    live = await line.call(call.call_id)
    await line.harness.drop_stream(live)

    async def reconnected() -> bool:
        current = await line.call(call.call_id)
        return line.harness.stream_connections(current) == 2 and line.media.connected(call.call_id)

    await line.wait(reconnected)
    assert (await line.call(call.call_id)).is_live
    reply = await asyncio.wait_for(line.service.continue_call(call.call_id, "Still there?"), 20)
    assert reply in REPLIES
    await line.service.end(call.call_id)


# ------------------------------------------------------------------------- stream security
# The token rules are the service's, whatever the carrier: checked once, through the real
# listener, with the mock carrier's message format.


@pytest.fixture
async def mock_line(tmp_path: Path) -> AsyncIterator[StreamLine]:
    line = await open_stream_line(MockHarness(tmp_path), tmp_path)
    yield line
    await line.close()


async def _open_raw(line: StreamLine, token: str | None, call: Call | None = None) -> Any:
    connect = asgi_websocket_connector(line.app)
    socket = await connect("ws://127.0.0.1:3334/voice/stream")
    start: dict[str, Any] = {"event": "start", "streamId": "MZtest", "callId": "x"}
    if token is not None:
        start["token"] = token
    await socket.send(json.dumps(start))
    await socket.send(json.dumps({"event": "media", "payload": ""}))
    return socket


async def _refused(socket: Any) -> bool:
    """The server closes without sending anything."""
    return await asyncio.wait_for(socket.recv(), 5) is None


@pytest.mark.parametrize("case", ["none", "garbage", "forged"])
async def test_a_stream_without_a_valid_token_is_refused(mock_line: StreamLine, case: str) -> None:
    token = {"none": None, "garbage": "not-a-token", "forged": "YWJj.ZGVm"}[case]
    assert await _refused(await _open_raw(mock_line, token))


async def test_a_second_stream_an_ended_call_or_an_expired_token_is_refused(
    stream_line: StreamLine,
) -> None:
    line = stream_line
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")
    await line.wait(lambda: line.media.connected(call.call_id))
    # A second stream for a call that has one: refused.
    token = line.media.expect(call.call_id)
    assert await _refused(await _open_raw(line, token))
    # A token for a call that has since ended: refused.
    await line.service.end(call.call_id)
    assert await _refused(await _open_raw(line, token))
    # Expired: minted for a live call, presented after its lifetime.
    other = await line.service.initiate(CALLEE, "Hello again.", "conversation")
    await line.wait(lambda: line.media.connected(other.call_id))
    line.media.token_ttl_s = -1.0
    expired = line.media.expect(other.call_id)
    assert await _refused(await _open_raw(line, expired))
    await line.service.end(other.call_id)
