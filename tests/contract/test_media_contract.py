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
import pytest

from voicecall.adapters.agent.rules import RuleBasedResponder
from voicecall.adapters.speech.offline import ToneSynthesizer, ToneTranscriber
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.config import parse_config
from voicecall.container import call_settings
from voicecall.domain.call import Call, CallState, Speaker
from voicecall.domain.speech import UtteranceState
from voicecall.entrypoints.webhook_app import create_webhook_app
from voicecall.services.calls import CallService
from voicecall.services.events import EventFeed
from voicecall.services.media import MediaService
from voicecall.testing.asgi import asgi_websocket_connector
from voicecall.testing.simtime import ScaledClock

from .conftest import CALLEE, _LateApp

SPEED = 4.0
REPLIES = ("Yes, I can talk.", "Noon works.", "Bye now.")
LONG = "Your table for four is ready. Please come to the front desk in the next ten min."


@attrs.define
class StreamLine:
    clock: ScaledClock
    carrier: MockTelephony
    service: CallService
    media: MediaService
    app: _LateApp

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


async def open_stream_line(
    tmp: Path, *, barge_in_after_s: float | None = None, notify_hold_s: float = 1.0
) -> StreamLine:
    plugin = {
        "enabled": True,
        "fromNumber": "+15550100000",
        "maxConcurrentCalls": 2,
        "outbound": {"notifyHangupDelaySec": notify_hold_s},
        "ringTimeoutMs": 30000,
        "transcriptTimeoutMs": 60000,
        "store": str(tmp / "store"),
        "serve": {"bind": "127.0.0.1", "port": 3334, "path": "/voice/webhook"},
        "streaming": {"enabled": True},
        "provider": "mock",
    }
    config = parse_config({"plugins": {"entries": {"voice-call": {"config": plugin}}}}, env={})
    clock = ScaledClock(SPEED)
    app = _LateApp()
    carrier = MockTelephony(
        MockSettings(answer_delay_ms=300, replies=REPLIES, barge_in_after_s=barge_in_after_s),
        clock,
        connect_ws=asgi_websocket_connector(app),
    )
    store = SqliteCallStore(tmp / "store")
    media = MediaService(
        clock, ToneSynthesizer(15.0), ToneTranscriber(silence_ms=300), b"k" * 32, lead_ms=200
    )
    service = CallService(
        provider=carrier,
        store=store,
        clock=clock,
        responder=RuleBasedResponder(),
        feed=EventFeed(store),
        settings=call_settings(config),
        media=media,
    )
    app.app = create_webhook_app(service, config)
    await service.start()
    return StreamLine(clock, carrier, service, media, app)


@pytest.fixture
async def stream_line(tmp_path: Path) -> AsyncIterator[StreamLine]:
    line = await open_stream_line(tmp_path)
    yield line
    await line.service.stop()


def _handset(line: StreamLine, call: Call) -> Any:
    stream = line.carrier.stream_line(call.provider_call_id or "")
    assert stream is not None, "the carrier never opened a stream"
    return stream.handset


async def test_a_notify_over_a_stream_is_heard_whole_then_hung_up(tmp_path: Path) -> None:
    line = await open_stream_line(tmp_path, notify_hold_s=1.0)
    try:
        call = await line.service.initiate(CALLEE, "Your parcel is at the door.", "notify")
        final = await line.wait_state(call.call_id, CallState.COMPLETED, CallState.HANGUP_USER)
        assert final.state is CallState.COMPLETED
        handset = _handset(line, final)
        [heard] = handset.heard
        assert (heard.text, heard.whole) == ("Your parcel is at the door.", True)
        assert heard.ended_at - heard.started_at >= 27 / 15 - 0.1  # it took the time to say
        ended_at = line.carrier.ended_at(final.provider_call_id or "")
        assert ended_at is not None and 0.5 <= ended_at - heard.ended_at <= 1.5
        [utterance] = list(final.speech)
        assert utterance.state is UtteranceState.PLAYED
        # "played" came from the carrier's mark, which came after the audio was played.
        [(mark, marked_at)] = handset.marks_echoed
        assert mark == utterance.utterance_id and marked_at >= heard.ended_at - 0.05
        assert handset.underruns == 0
    finally:
        await line.service.stop()


async def test_marks_come_back_in_order_and_every_line_is_whole(stream_line: StreamLine) -> None:
    line = stream_line
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")
    live = await line.wait_state(call.call_id, CallState.SPEAKING, CallState.LISTENING)
    await line.service.speak(call.call_id, "First of two lines.")
    await line.clock.sleep(0.05)
    await line.service.speak(call.call_id, "Second of two lines.")

    async def all_played() -> bool:
        speech = list((await line.call(call.call_id)).speech)
        return len(speech) >= 3 and all(u.state is UtteranceState.PLAYED for u in speech[:3])

    await line.wait(all_played)
    handset = _handset(line, live)
    ids = [u.utterance_id for u in (await line.call(call.call_id)).speech][:3]
    assert [name for name, _ in handset.marks_echoed][:3] == ids
    whole = [h.text for h in handset.heard if h.whole][:3]
    assert whole == ["Hello there.", "First of two lines.", "Second of two lines."]
    assert handset.underruns == 0
    await line.service.end(call.call_id)


async def test_barge_in_clears_playback_and_cuts_the_line(tmp_path: Path) -> None:
    line = await open_stream_line(tmp_path, barge_in_after_s=1.5)
    try:
        call = await line.service.initiate(CALLEE, LONG, "conversation")
        await line.wait(lambda: line.carrier.stream_line(_pid_sync(line, call)) is not None)
        live = await line.call(call.call_id)
        handset = _handset(line, live)
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
        await line.service.stop()


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
    live = await line.call(call.call_id)
    await line.service.end(call.call_id)
    assert not line.media.connected(call.call_id)
    stream = line.carrier.stream_line(live.provider_call_id or "")
    assert stream is not None
    await line.wait(lambda: stream._socket is None)
    assert not line.media.handles(call.call_id)


async def test_a_dropped_stream_is_recovered_and_the_call_lives_on(
    stream_line: StreamLine,
) -> None:
    line = stream_line
    call = await line.service.initiate(CALLEE, "Hello there.", "conversation")
    await line.wait(lambda: line.media.connected(call.call_id))
    live = await line.call(call.call_id)
    stream = line.carrier.stream_line(live.provider_call_id or "")
    assert stream is not None
    await stream.drop()
    await line.wait(lambda: stream.connections == 2 and line.media.connected(call.call_id))
    assert (await line.call(call.call_id)).is_live
    reply = await asyncio.wait_for(line.service.continue_call(call.call_id, "Still there?"), 20)
    assert reply in REPLIES
    await line.service.end(call.call_id)


def _pid_sync(line: StreamLine, call: Call) -> str:
    # The provider id is set once the dial returns; the call object from initiate has it.
    return call.provider_call_id or ""


# ------------------------------------------------------------------------- stream security


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
async def test_a_stream_without_a_valid_token_is_refused(
    stream_line: StreamLine, case: str
) -> None:
    token = {"none": None, "garbage": "not-a-token", "forged": "YWJj.ZGVm"}[case]
    assert await _refused(await _open_raw(stream_line, token))


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
