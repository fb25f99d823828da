"""Telnyx media streams on the wire: the frames of Telnyx's media-streaming reference parsed and
built, the ``streaming_start`` command, the stream webhooks, and the simulator's frames read by
our dialect. No network: REST is faked with respx, the simulator's socket is an in-memory fake.

The frame examples follow
https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from nacl.signing import SigningKey

from voicecall.adapters.telephony.telnyx import (
    TelnyxApiError,
    TelnyxStreamDialect,
    TelnyxTelephony,
    encode_client_state,
)
from voicecall.adapters.telephony.telnyx.documents import streaming_start_command
from voicecall.config import parse_config
from voicecall.domain.call import Call, CallDirection, CallMode, CallState
from voicecall.domain.events import StreamStopped
from voicecall.domain.media import StreamClosed, StreamDtmf, StreamMark, StreamMedia, StreamStart
from voicecall.domain.ports import StreamRequest
from voicecall.domain.webhook import WebhookRequest
from voicecall.testing.clock import FakeClock
from voicecall.testing.simtime import ScaledClock
from voicecall.testing.telnyx_sim import TelnyxSimulator

API = "https://api.telnyx.test/v2"
CALL_ID = "2f7c8a4e-0d0e-4d54-9d0b-6a1b7a8f0c11"
PID = "v3:u5OAKGEPT3Dx8SZSSDRWEMdNH2OripQhO"
STREAM_URL = "wss://voice.example.com/voice/stream"
TOKEN = "Y2FsbHwxNzAwMDAwMDAwfG5vbmNl.c2lnbmF0dXJl"
ULAW = bytes(range(160))

START = {
    "event": "start",
    "sequence_number": "1",
    "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
    "start": {
        "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
        "call_control_id": "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
        "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f",
        "from": "+13122010094",
        "to": "+13122123456",
        "tags": ["TAG1", "TAG2"],
        "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
        "custom_parameters": {"token": TOKEN},
        "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
    },
}


def frame(**fields: Any) -> str:
    return json.dumps(fields)


# ------------------------------------------------------------------------------ the dialect


def test_connected_is_nothing_and_start_names_the_stream_the_call_and_the_token() -> None:
    dialect = TelnyxStreamDialect()
    assert dialect.parse(frame(event="connected", version="1.0.0")) == []
    assert dialect.parse(json.dumps(START)) == [
        StreamStart(
            stream_id="32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
            provider_call_id="v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
            token=TOKEN,
        )
    ]
    assert dialect.stream_id == "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"


def test_a_start_without_our_parameter_carries_no_token() -> None:
    # The older example: no custom_parameters, encoding as a MIME type.
    start = {
        "event": "start",
        "sequence_number": "1",
        "stream_id": "32de0dea-53cb-4b21-89a4-9e1819c043bc",
        "start": {
            "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
            "call_control_id": PID,
            "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
            "media_format": {"encoding": "audio/x-mulaw", "sample_rate": 8000, "channels": 1},
        },
    }
    [parsed] = TelnyxStreamDialect().parse(json.dumps(start))
    assert parsed == StreamStart(
        stream_id="32de0dea-53cb-4b21-89a4-9e1819c043bc", provider_call_id=PID, token=None
    )
    other = json.loads(json.dumps(START))
    other["start"]["custom_parameters"] = {"customer_id": "customer_123"}
    [parsed] = TelnyxStreamDialect().parse(json.dumps(other))
    assert isinstance(parsed, StreamStart) and parsed.token is None


def test_caller_audio_marks_digits_and_stop() -> None:
    dialect = TelnyxStreamDialect()
    payload = base64.b64encode(ULAW).decode()
    inbound = {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": payload}
    assert dialect.parse(
        frame(event="media", sequence_number="4", stream_id="s", media=inbound)
    ) == [StreamMedia(payload=ULAW)]
    # Our own audio, were both tracks streamed, is not the caller's.
    outbound = dict(inbound, track="outbound")
    assert dialect.parse(frame(event="media", stream_id="s", media=outbound)) == []
    assert dialect.parse(frame(event="mark", stream_id="s", mark={"name": "utt-1"})) == [
        StreamMark(name="utt-1")
    ]
    assert dialect.parse(frame(event="dtmf", stream_id="s", dtmf={"digit": "#"})) == [
        StreamDtmf(digits="#")
    ]
    stop = {"user_id": "u", "call_control_id": PID}
    assert dialect.parse(frame(event="stop", stream_id="s", stop=stop)) == [
        StreamClosed(reason="stop")
    ]
    error = {"code": 100002, "title": "unknown_error", "detail": "An unknown error occurred"}
    assert dialect.parse(frame(event="error", stream_id="s", payload=error)) == []
    assert dialect.parse(frame(event="something_new", stream_id="s")) == []


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1, 2]",
        frame(stream_id="s"),
        frame(event="start", start=START["start"]),
        frame(event="start", stream_id="s"),
        frame(event="media", stream_id="s"),
        frame(event="media", stream_id="s", media={"track": "inbound"}),
        frame(event="media", stream_id="s", media={"payload": "not base64!"}),
        frame(event="mark", stream_id="s", mark={}),
        frame(event="dtmf", stream_id="s", dtmf={"digit": ""}),
        json.dumps(START).replace('"encoding": "PCMU"', '"encoding": "L16"'),
    ],
)
def test_malformed_frames_raise(message: str) -> None:
    with pytest.raises(ValueError):
        TelnyxStreamDialect().parse(message)


def test_what_we_send_is_telnyx_media_mark_and_clear() -> None:
    dialect = TelnyxStreamDialect()
    assert json.loads(dialect.media(ULAW)) == {
        "event": "media",
        "media": {"payload": base64.b64encode(ULAW).decode()},
    }
    assert json.loads(dialect.mark("utt-1")) == {"event": "mark", "mark": {"name": "utt-1"}}
    assert json.loads(dialect.clear()) == {"event": "clear"}


# ------------------------------------------------------------------------------ the adapter


@pytest.fixture
async def adapter() -> AsyncIterator[TelnyxTelephony]:
    plugin = {
        "enabled": True,
        "provider": "telnyx",
        "fromNumber": "+15550100000",
        "publicUrl": "https://voice.example.com/voice/webhook",
        "telnyx": {
            "apiKey": "KEY0123456789",
            "connectionId": "1494404757140276705",
            "publicKey": base64.b64encode(bytes(SigningKey(b"\x07" * 32).verify_key)).decode(),
            "apiBaseUrl": API,
        },
    }
    config = parse_config({"plugins": {"entries": {"voice-call": {"config": plugin}}}}, env={})
    telnyx = TelnyxTelephony.from_config(config, FakeClock())
    yield telnyx
    await telnyx.aclose()


def live_call() -> Call:
    return Call(
        call_id=CALL_ID,
        provider="telnyx",
        direction=CallDirection.OUTBOUND,
        from_number="+15550100000",
        to_number="+15557654321",
        mode=CallMode.CONVERSATION,
        started_at=0.0,
        state=CallState.ACTIVE,
        provider_call_id=PID,
    )


@respx.mock
async def test_connect_stream_sends_streaming_start_with_the_token_as_a_custom_parameter(
    adapter: TelnyxTelephony,
) -> None:
    route = respx.post(f"{API}/calls/{PID}/actions/streaming_start").mock(
        return_value=httpx.Response(200, json={"data": {"result": "ok"}})
    )
    await adapter.connect_stream(live_call(), StreamRequest(STREAM_URL, TOKEN))
    body = json.loads(route.calls[0].request.content)
    command_id = body.pop("command_id")
    assert body == {
        "stream_url": STREAM_URL,
        "stream_track": "inbound_track",
        "stream_codec": "PCMU",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
        "custom_parameters": [{"name": "token", "value": TOKEN}],
        "client_state": encode_client_state(CALL_ID),
    }
    # The same token is the same command (a retry opens one stream); a fresh one is new.
    assert command_id == streaming_start_command(CALL_ID, STREAM_URL, TOKEN)["command_id"]
    assert command_id != streaming_start_command(CALL_ID, STREAM_URL, TOKEN + "x")["command_id"]
    assert isinstance(adapter.stream_dialect(), TelnyxStreamDialect)


@respx.mock
async def test_connect_stream_on_an_ended_call_is_refused(adapter: TelnyxTelephony) -> None:
    respx.post(f"{API}/calls/{PID}/actions/streaming_start").mock(
        return_value=httpx.Response(
            422, json={"errors": [{"code": "90018", "title": "Call has already ended"}]}
        )
    )
    with pytest.raises(TelnyxApiError) as caught:
        await adapter.connect_stream(live_call(), StreamRequest(STREAM_URL, TOKEN))
    assert caught.value.call_already_ended


def webhook(event_type: str, payload: dict[str, Any], event_id: str) -> WebhookRequest:
    body = {
        "data": {
            "record_type": "event",
            "event_type": event_type,
            "id": event_id,
            "occurred_at": "2021-12-15T14:11:24.613295Z",
            "payload": {
                "call_control_id": PID,
                "connection_id": "7267xxxxxxxxxxxxxx",
                "call_leg_id": "31f19208-5db0-11ec-9ea7-02420a0d3a69",
                "call_session_id": "31f19208-5db0-11ec-9ea7-02420a0d3a69",
                "client_state": encode_client_state(CALL_ID),
                **payload,
            },
        }
    }
    return WebhookRequest(
        method="POST",
        path="/voice/webhook",
        query="",
        headers=(("content-type", "application/json"),),
        body=json.dumps(body).encode(),
        peer="127.0.0.1",
    )


async def test_streaming_stopped_is_a_stream_to_reopen_and_failed_or_started_change_nothing(
    adapter: TelnyxTelephony,
) -> None:
    [stopped] = await adapter.parse_webhook(
        webhook("streaming.stopped", {"stream_url": STREAM_URL}, "evt-stop")
    )
    assert stopped == StreamStopped(
        call_id=CALL_ID,
        provider_call_id=PID,
        dedupe_key="telnyx:evt-stop",
        reason="streaming.stopped",
    )
    failed = {
        "failure_reason": "connection_failed",
        "stream_id": "1edb94f9-7ef0-4150-b502-e0ebadfd9491",
        "stream_params": {"stream_url": STREAM_URL, "stream_track": "inbound_track"},
        "stream_type": "websocket",
    }
    # A stream that never opened is reported too: the service retries, then goes native.
    assert await adapter.parse_webhook(webhook("streaming.failed", failed, "evt-f")) == [
        StreamStopped(
            call_id=CALL_ID,
            provider_call_id=PID,
            dedupe_key="telnyx:evt-f",
            reason="streaming.failed: connection_failed",
        )
    ]
    started = {"stream_url": STREAM_URL}
    assert await adapter.parse_webhook(webhook("streaming.started", started, "evt-s")) == []


# ------------------------------------------------------------------------------ the simulator


class _Socket:
    """The listener's side of one simulated stream, in memory: what the simulator sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def recv(self) -> str | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.inbox.put_nowait(None)


async def test_the_simulator_speaks_the_dialect_and_reports_a_dropped_stream() -> None:
    sockets: list[_Socket] = []
    opened: list[str] = []

    async def connect(url: str) -> _Socket:
        opened.append(url)
        sockets.append(_Socket())
        return sockets[-1]

    webhooks: list[dict[str, Any]] = []

    def receive(request: httpx.Request) -> httpx.Response:
        webhooks.append(json.loads(request.content)["data"])
        return httpx.Response(200)

    clock = ScaledClock(50.0)
    sim = TelnyxSimulator(
        httpx.AsyncClient(transport=httpx.MockTransport(receive)),
        SigningKey.generate(),
        "http://127.0.0.1:3334/voice/webhook",
        clock=clock,
        answer_delay_s=0.0,
        delivery_jitter_s=0.0,
        connect_ws=connect,
        replies=("Hello.",),
    )
    rest = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim")
    try:
        pid = await sim.ring_inbound("+15551230001", "+15550100000")
        auth = {"authorization": "Bearer k"}
        await rest.post(f"/v2/calls/{pid}/actions/answer", json={}, headers=auth)
        bad = dict(streaming_start_command(CALL_ID, "https://not-a-socket", TOKEN))
        refused = await rest.post(
            f"/v2/calls/{pid}/actions/streaming_start", json=bad, headers=auth
        )
        assert refused.status_code == 422 and not opened
        command = streaming_start_command(CALL_ID, STREAM_URL, TOKEN)
        started = await rest.post(
            f"/v2/calls/{pid}/actions/streaming_start", json=command, headers=auth
        )
        assert started.status_code == 200

        async def frames(count: int) -> list[str]:
            for _ in range(1000):
                if sockets and len(sockets[0].sent) >= count:
                    break
                await asyncio.sleep(0.005)
            return sockets[0].sent[:count]

        connected, start, media = await frames(3)
        dialect = TelnyxStreamDialect()
        assert opened == [STREAM_URL]
        assert dialect.parse(connected) == []
        [parsed_start] = dialect.parse(start)
        assert parsed_start == StreamStart(
            stream_id=json.loads(start)["stream_id"], provider_call_id=pid, token=TOKEN
        )
        assert json.loads(start)["start"]["client_state"] == encode_client_state(CALL_ID)
        [audio] = dialect.parse(media)
        assert isinstance(audio, StreamMedia) and len(audio.payload) == 160
        assert sim.stream_connections(pid) == 1 and sim.handset(pid) is not None

        await sim.drop_stream(pid)
        for _ in range(1000):
            if webhooks[-1]["event_type"] == "streaming.stopped":
                break
            await asyncio.sleep(0.005)
        kinds = [event["event_type"] for event in webhooks]
        assert kinds.count("streaming.started") == 1 and kinds[-1] == "streaming.stopped"
        assert sim.calls[pid].status == "live"
    finally:
        await sim.aclose()
        await rest.aclose()
        await sim.webhook.aclose()
